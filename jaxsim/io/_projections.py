"""Cone-beam projections on disk: one HDF5 file with the scan geometry."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxsim.kernels import ConeBeamGeometry

from ._files import atomic_path

__all__ = ["save_projections", "load_projections"]

_GEOMETRY = ("dso", "dsd", "du", "dv", "offset_u", "offset_v")
_UNITS = "line integrals (dimensionless); lengths in mm; angles in rad"


def save_projections(
    path: str | os.PathLike,
    projections,
    geom: ConeBeamGeometry,
    *,
    attrs: Mapping[str, float | int | str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write projections and their scan geometry to an HDF5 file, atomically.

    Layout: dataset ``projections`` (float32 ``(n_views, n_v, n_u)``), dataset
    ``angles`` (float64 ``(n_views,)``, rad), attributes ``dso``, ``dsd``, ``du``,
    ``dv``, ``offset_u``, ``offset_v`` (mm), ``units``, and ``attrs``.

    Args:
        path: the ``.h5`` file to write.
        projections: ``(n_views, n_v, n_u)`` line integrals (NumPy or JAX).
        geom: the scan (concrete; one scan, not a batch).
        attrs: extra scalar or string attributes (e.g. ``mu_water_per_mm``,
            ``beam``, ``i0``).
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        ValueError: shapes that do not match the geometry.
        FileExistsError: the file exists and ``overwrite`` is false.
    """
    data = np.asarray(projections, np.float32)
    angles = np.asarray(geom.angles, np.float64)
    expected = (geom.n_angles, geom.n_v, geom.n_u)
    if data.shape != expected or angles.ndim != 1:
        raise ValueError(
            f"projections must have shape {expected} (one scan); got {data.shape}"
        )
    import h5py

    with atomic_path(path, overwrite=overwrite, what="projections file") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("projections", data=data)
            f.create_dataset("angles", data=angles)
            for name in _GEOMETRY:
                f.attrs[name] = float(np.asarray(getattr(geom, name)))
            f.attrs["units"] = _UNITS
            for name, value in (attrs or {}).items():
                f.attrs[name] = value
    return Path(path)


def load_projections(
    path: str | os.PathLike,
) -> tuple[np.ndarray, ConeBeamGeometry, dict]:
    """Read a file written by :func:`save_projections`.

    Returns:
        ``(projections, geom, attrs)``: float32 ``(n_views, n_v, n_u)``, the
        :class:`~jaxsim.kernels.ConeBeamGeometry` and the other attributes.
    """
    import h5py

    with h5py.File(path, "r") as f:
        data = f["projections"][()]
        angles = f["angles"][()]
        values = {name: float(f.attrs[name]) for name in _GEOMETRY}
        extra = {
            k: (v.decode() if isinstance(v, bytes) else v)
            for k, v in f.attrs.items()
            if k not in _GEOMETRY
        }
    n_views, n_v, n_u = data.shape
    geom = ConeBeamGeometry(n_u=n_u, n_v=n_v, angles=angles, **values)
    return (
        data,
        geom,
        {k: (v.item() if hasattr(v, "item") else v) for k, v in extra.items()},
    )
