"""Geometry pytrees of circular cone-beam CT: the scanner and the voxel grid.

The frame (fixed in DESIGN.md): the rotation axis is world z. At angle ``theta`` the
source sits at ``(dso cos theta, dso sin theta, 0)``; the flat detector is perpendicular
to the central ray at distance ``dsd`` from the source, centred at
``-(dsd - dso) (cos theta, sin theta, 0)`` plus the offsets, with its ``u`` axis along
``(-sin theta, cos theta, 0)`` and its ``v`` axis along ``(0, 0, 1)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import jax
import numpy as np

from ._checks import check_range, is_concrete


def _is_number_like(value) -> bool:
    """True for concrete numbers and arrays (not tracers, sentinels or None)."""
    if isinstance(value, numbers.Number):
        return True
    return isinstance(value, np.ndarray | jax.Array) and is_concrete(value)


def _as_float(value):
    """Python ints become floats so every physical leaf has a float dtype."""
    if isinstance(value, numbers.Integral):
        return float(value)
    if isinstance(value, np.ndarray) and not np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float64)
    return value


def _check_triple(name: str, value) -> None:
    if len(value) != 3:
        raise ValueError(f"{name} must have 3 entries; got {len(value)}")


@dataclasses.dataclass(frozen=True)
class VolumeGeometry:
    """Placement of a voxel grid ``(nz, ny, nx)`` in the scanner frame.

    Voxel ``(k, j, i)`` is centred at world
    ``((i - (nx-1)/2) sx, (j - (ny-1)/2) sy, (k - (nz-1)/2) sz) + offset`` (mm).

    Attributes:
        shape: ``(nz, ny, nx)`` voxel counts (static).
        spacing: ``(sz, sy, sx)`` voxel size in mm, array order like ``shape``.
        offset: world ``(x, y, z)`` position of the grid centre in mm. Note the world
            order, as in the frame formula above (unlike ``shape`` and ``spacing``).

    Raises:
        ValueError: a non-positive size or spacing, or a non-finite offset.
    """

    shape: tuple[int, int, int]
    spacing: Any = (1.0, 1.0, 1.0)
    offset: Any = (0.0, 0.0, 0.0)

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        object.__setattr__(self, "shape", shape)
        for name in ("spacing", "offset"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                object.__setattr__(self, name, tuple(_as_float(v) for v in value))
        _check_triple("shape", shape)
        if min(shape) < 1:
            raise ValueError(f"shape must hold positive voxel counts; got {shape}")
        _check_triple("spacing", self.spacing)
        _check_triple("offset", self.offset)
        for axis, s in zip("zyx", self.spacing, strict=True):
            if _is_number_like(s):
                check_range(f"spacing[{axis}]", s, low=0.0, unit="mm")
        for axis, o in zip("xyz", self.offset, strict=True):
            if _is_number_like(o):
                check_range(f"offset[{axis}]", o, unit="mm")

    @property
    def radius(self) -> float:
        """Distance (mm) from the z axis to the farthest grid corner (concrete only)."""
        nz, ny, nx = self.shape
        _, sy, sx = (float(s) for s in self.spacing)
        ox, oy, _ = (float(o) for o in self.offset)
        hx, hy = nx * sx / 2, ny * sy / 2
        return math.hypot(abs(ox) + hx, abs(oy) + hy)


jax.tree_util.register_dataclass(
    VolumeGeometry, data_fields=["spacing", "offset"], meta_fields=["shape"]
)


@dataclasses.dataclass(frozen=True)
class ConeBeamGeometry:
    """A circular cone-beam scan with a flat detector.

    Attributes:
        dso: source-to-rotation-axis distance, mm.
        dsd: source-to-detector distance, mm (> ``dso``).
        n_u, n_v: detector columns and rows (static).
        du, dv: detector pixel pitch along u and v, mm.
        angles: source angles ``theta``, rad, shape ``(n_angles,)``; a leaf, so a
            jitted function compiles once per number of views. (Leading batch axes
            appear when a geometry is returned from ``jax.vmap``; the operators
            take one scan.)
        offset_u, offset_v: detector centre shift along u and v, mm.

    Raises:
        ValueError: non-positive distances or pitches, ``dsd <= dso``, no angles or a
            non-finite angle.
    """

    dso: Any
    dsd: Any
    n_u: int
    n_v: int
    du: Any
    dv: Any
    angles: Any
    offset_u: Any = 0.0
    offset_v: Any = 0.0

    def __post_init__(self):
        object.__setattr__(self, "n_u", int(self.n_u))
        object.__setattr__(self, "n_v", int(self.n_v))
        if isinstance(self.angles, list | tuple | numbers.Number):
            object.__setattr__(
                self, "angles", np.atleast_1d(np.asarray(self.angles, np.float64))
            )
        for name in ("dso", "dsd", "du", "dv", "offset_u", "offset_v", "angles"):
            object.__setattr__(self, name, _as_float(getattr(self, name)))
        for name in ("n_u", "n_v"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("dso", "dsd", "du", "dv"):
            if _is_number_like(getattr(self, name)):
                check_range(name, getattr(self, name), low=0.0, unit="mm")
        for name in ("offset_u", "offset_v"):
            if _is_number_like(getattr(self, name)):
                check_range(name, getattr(self, name), unit="mm")
        if _is_number_like(self.angles):
            if np.ndim(self.angles) < 1 or np.size(self.angles) == 0:
                raise ValueError(
                    "angles must be a non-empty 1D array of radians; got shape "
                    f"{np.shape(self.angles)}"
                )
            check_range("angles", self.angles, unit="rad")
        if _is_number_like(self.dso) and _is_number_like(self.dsd):
            dso, dsd = np.asarray(self.dso), np.asarray(self.dsd)
            if not np.all(dsd > dso):
                raise ValueError(
                    f"dsd must exceed dso (the detector lies beyond the rotation axis);"
                    f" got dsd={np.min(dsd):g} mm, dso={np.max(dso):g} mm"
                )

    @property
    def n_angles(self) -> int:
        """Number of views (the last axis of ``angles``)."""
        return int(np.shape(self.angles)[-1])


jax.tree_util.register_dataclass(
    ConeBeamGeometry,
    data_fields=["dso", "dsd", "du", "dv", "angles", "offset_u", "offset_v"],
    meta_fields=["n_u", "n_v"],
)


def check_volume_fits(vol_geom: VolumeGeometry, geom: ConeBeamGeometry) -> None:
    """Raise ValueError if the grid reaches the source circle (concrete values only).

    Args:
        vol_geom: the voxel grid.
        geom: the scan.
    """
    leaves = (*vol_geom.spacing, *vol_geom.offset, geom.dso)
    if not all(_is_number_like(v) for v in leaves):
        return
    radius = vol_geom.radius
    if not radius < float(geom.dso):
        raise ValueError(
            f"the volume must lie inside the source circle: its corners reach "
            f"{radius:g} mm from the rotation axis, but dso={float(geom.dso):g} mm"
        )
