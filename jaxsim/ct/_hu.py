"""Hounsfield units: the nominal HU of each tissue, and HU statistics of an image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.labels import TISSUES

from ._acquisition import CTAcquisition, _beam_grid
from ._materials import attenuation
from ._physics import basis_attenuation
from ._tissue_materials import CTMaterials, as_ct_materials, check_materials

__all__ = ["nominal_hu", "hu_statistics"]


def nominal_hu(
    beam: str | float | tuple = "120kVp",
    *,
    materials: CTMaterials | None = None,
    water_mm: float = 0.0,
) -> dict[str, jax.Array]:
    """Noise- and artefact-free HU of each tissue for a beam (spectrum-mean mu).

    Differentiable in ``materials`` (its leaves may be traced).

    Args:
        beam: a shipped spectrum name, a monochromatic energy in keV (as
            :class:`~jaxsim.ct.CTAcquisition`'s ``beam``).
        materials: :class:`~jaxsim.ct.CTMaterials` or a table ``tissue ->
            (fractions, iodine mg/mL)``; default the built-in table.
        water_mm: harden the spectrum by this much water first (a body's own
            filtration: iodine and bone contrast drop as the beam hardens), mm.

    Returns:
        ``{tissue: HU}``, 0-d arrays of the materials' dtype, using the
        spectrum-weighted mean attenuation.

    Example:
        >>> float(nominal_hu(70.0)["air"])
        -1000.0
    """
    materials = as_ct_materials(materials)
    check_materials(materials)
    e, w = _beam_grid(CTAcquisition(beam=beam).beam)
    if w is None:
        raise ValueError(
            f"beam must be a spectrum name or one energy in keV; got {beam!r}"
        )
    w = w * np.exp(-attenuation("water", e) * float(water_mm))
    w = w / w.sum()
    mu_basis = basis_attenuation(materials.basis, e) @ w  # (n_basis,)
    mu_water = float(w @ attenuation("water", e))
    mu_air = float(w @ attenuation("air", e))
    mixing = materials.mixing()
    mu = jnp.asarray(mu_basis, mixing.dtype) @ mixing
    values = 1000.0 * (mu - mu_water) / (mu_water - mu_air)
    return {t: values[..., i] for i, t in enumerate(materials.tissues)}


def hu_statistics(
    image, labels, *, tissues: tuple[str, ...] = TISSUES
) -> dict[str, dict[str, float]]:
    """HU summary of each tissue present in a labelled CT image.

    Args:
        image: ``(nz, ny, nx)`` HU image (NumPy or JAX, concrete).
        labels: ``(nz, ny, nx)`` integer labels indexing ``tissues``.
        tissues: the label names (default :data:`jaxsim.labels.TISSUES`).

    Returns:
        ``{tissue: {"voxels", "mean", "std", "p5", "median", "p95"}}`` (HU; Python
        numbers), for every tissue with at least one voxel, in label order.

    Raises:
        ValueError: shapes differ.
    """
    image, labels = np.asarray(image, np.float64), np.asarray(labels)
    if image.shape != labels.shape:
        raise ValueError(
            f"image and labels must have the same shape; got {image.shape} and "
            f"{labels.shape}"
        )
    out = {}
    for i, name in enumerate(tissues):
        values = image[labels == i]
        if values.size:
            p5, median, p95 = np.percentile(values, [5, 50, 95])
            out[name] = dict(
                voxels=int(values.size),
                mean=float(values.mean()),
                std=float(values.std()),
                p5=float(p5),
                median=float(median),
                p95=float(p95),
            )
    return out
