"""CT acquisition of a tissue-fraction volume: projections, noise, FDK, HU, labels."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels import (
    ConeBeamGeometry,
    VolumeGeometry,
    cone_beam_project,
    fdk,
)
from jaxsim.kernels.checks import is_concrete

from ._materials import attenuation, monochromatic, spectrum
from ._noise import detected_counts, log_transform
from ._physics import (
    basis_attenuation,
    basis_matrix,
    transmission,
    water_correction,
    water_reference,
)

# Rank kept from the material attenuation curves (relative singular-value cut-off).
_BASIS_TOLERANCE = 1e-6


def scanner_geometry(
    vol_geom: VolumeGeometry,
    *,
    n_angles: int = 360,
    dso: float = 595.0,
    dsd: float = 1085.6,
    pixel: float | None = None,
    start_angle: float = 0.0,
) -> ConeBeamGeometry:
    """A full-rotation scan whose flat detector just covers the grid.

    Args:
        vol_geom: the grid to image (its centre on the rotation axis is best).
        n_angles: views over 2 pi.
        dso, dsd: source-axis and source-detector distances, mm (defaults from a
            clinical scanner's geometry).
        pixel: detector pitch, mm; default the in-plane voxel size magnified to the
            detector.
        start_angle: angle of the first view, rad.

    Returns:
        The :class:`~jaxsim.kernels.ConeBeamGeometry`.
    """
    nz, _, _ = vol_geom.shape
    sz, sy, sx = (float(s) for s in vol_geom.spacing)
    radius = vol_geom.radius
    if not radius < dso:
        raise ValueError(f"the grid (radius {radius:g} mm) must fit inside dso={dso}")
    mag = dsd / dso
    pixel = min(sx, sy) * mag if pixel is None else float(pixel)
    u_max = dsd * radius / math.sqrt(dso**2 - radius**2)
    v_max = dsd * (nz * sz / 2 + abs(float(vol_geom.offset[2]))) / (dso - radius)
    n_u = 2 * math.ceil(u_max / pixel) + 2
    n_v = 2 * math.ceil(v_max / pixel) + 2
    angles = start_angle + np.arange(n_angles) * (2 * np.pi / n_angles)
    return ConeBeamGeometry(dso, dsd, n_u, n_v, pixel, pixel, angles)


def to_hu(mu: jax.Array, mu_water: float, mu_air: float = 0.0) -> jax.Array:
    """Hounsfield units ``1000 (mu - mu_water) / (mu_water - mu_air)``."""
    return 1000.0 * (mu - mu_water) / (mu_water - mu_air)


@dataclasses.dataclass(frozen=True)
class CTResult:
    """A simulated CT acquisition.

    Attributes:
        projections: ``(n_angles, n_v, n_u)`` measured line integrals (noisy, before
            beam-hardening correction), float.
        image: ``(nz, ny, nx)`` FDK reconstruction in HU, float.
        labels: ``(nz, ny, nx)`` uint8 tissue labels on the reconstruction grid.
        geom: the scan geometry.
        mu_water: effective water attenuation used for HU, 1/mm.
    """

    projections: jax.Array
    image: jax.Array
    labels: jax.Array
    geom: ConeBeamGeometry
    mu_water: float


def _reduced_basis(names, energies, weights):
    """Exact-to-rounding low-rank factor ``mu = coeffs @ curves`` of the basis."""
    mu = basis_attenuation(names, np.asarray(energies, np.float64))
    active = np.asarray(weights) > 0
    u, s, vt = np.linalg.svd(mu[:, active], full_matrices=False)
    rank = int(np.sum(s > _BASIS_TOLERANCE * s[0]))
    coeffs = u[:, :rank] * s[:rank]
    curves = np.zeros((rank, mu.shape[1]))
    curves[:, active] = vt[:rank]
    return coeffs, curves


def _beam(beam, dtype):
    """``(energies, weights)`` of a beam, without the energy bins of zero weight
    (above the tube voltage: they add exactly nothing to any spectrum sum)."""
    if isinstance(beam, str):
        energies, weights = spectrum(beam, dtype=dtype)
    elif isinstance(beam, int | float):
        energies, weights = monochromatic(float(beam), dtype=dtype)
    else:
        energies, weights = beam
        energies, weights = jnp.asarray(energies, dtype), jnp.asarray(weights, dtype)
    if is_concrete(weights):
        keep = np.flatnonzero(np.asarray(weights) != 0)
        if 0 < keep.size < weights.shape[-1]:
            energies, weights = energies[keep], weights[keep]
    return energies, weights


def simulate_ct_from_fractions(
    key: jax.Array,
    fractions: jax.Array,
    vol_geom: VolumeGeometry,
    *,
    tissues: tuple[str, ...] | None = None,
    geom: ConeBeamGeometry | None = None,
    beam: str | float | tuple = "120kVp",
    i0: float = 1e5,
    noise: str = "poisson",
    electronic_sigma: float = 0.0,
    tissue_materials: Mapping[str, tuple[Mapping[str, float], float]] | None = None,
    filter: str = "shepp-logan",
    beam_hardening_correction: bool = True,
) -> CTResult:
    """Simulate a cone-beam CT scan of a partial-volume tissue map.

    Tissues become basis materials (ICRU-44 compositions plus dissolved iodine,
    :data:`~jaxsim.ct.DEFAULT_TISSUE_MATERIALS`); the basis is projected once per
    independent attenuation curve; Beer-Lambert over the beam's energy bins gives the
    transmission; the detector adds Poisson (or Gaussian) and electronic noise; the
    log transform, a water beam-hardening correction and FDK give the image in HU.

    Args:
        key: PRNG key for the noise.
        fractions: ``(n_tissues, nz, ny, nx)`` float fractions summing to 1 per voxel,
            channels ordered as ``tissues``.
        vol_geom: placement of the grid in the scanner (also the reconstruction grid).
        tissues: channel names; default :data:`jaxsim.phantoms.TISSUES`.
        geom: the scan; default :func:`scanner_geometry` with 360 views.
        beam: a shipped spectrum name (``"80kVp"`` ... ``"140kVp"``), a
            monochromatic energy in keV, or ``(energies_keV, weights)``.
        i0: unattenuated photons per detector pixel per view.
        noise: ``"poisson"``, ``"gaussian"`` or ``"none"``.
        electronic_sigma: electronic noise standard deviation, counts.
        tissue_materials: tissue -> (material volume fractions, iodine mg/mL).
        filter: FDK ramp window.
        beam_hardening_correction: apply the water pre-correction before FDK.

    Returns:
        A :class:`CTResult`.
    """
    if tissues is None:
        from jaxsim.phantoms import TISSUES as tissues
    fractions = jnp.asarray(fractions)
    if fractions.shape != (len(tissues), *vol_geom.shape):
        raise ValueError(
            f"fractions must have shape {(len(tissues), *vol_geom.shape)}; "
            f"got {fractions.shape}"
        )
    dtype = fractions.dtype
    geom = scanner_geometry(vol_geom) if geom is None else geom
    energies, weights = _beam(beam, dtype)
    names, mixing = basis_matrix(tuple(tissues), tissue_materials)
    coeffs, curves = _reduced_basis(names, energies, weights)
    maps = jnp.tensordot(jnp.asarray((mixing.T @ coeffs).T, dtype), fractions, axes=1)
    basis_line = jax.lax.map(lambda m: cone_beam_project(m, vol_geom, geom), maps)
    trans = transmission(basis_line, jnp.asarray(curves, dtype), weights)
    counts = detected_counts(
        trans, key=key, i0=i0, noise=noise, electronic_sigma=electronic_sigma
    )
    measured = log_transform(counts, i0=i0)
    corrected = measured
    if beam_hardening_correction:
        corrected = water_correction(measured, weights, energies)
    mu_water, mu_air = water_reference(weights, energies)
    image = to_hu(fdk(corrected, vol_geom, geom, filter=filter), mu_water, mu_air)
    labels = jnp.argmax(fractions, axis=0).astype(jnp.uint8)
    return CTResult(measured, image, labels, geom, mu_water)


def nominal_hu(
    beam: str | float | tuple = "120kVp",
    *,
    tissues: tuple[str, ...] | None = None,
    tissue_materials: Mapping[str, tuple[Mapping[str, float], float]] | None = None,
    water_mm: float = 0.0,
) -> dict[str, float]:
    """Noise- and artefact-free HU of each tissue for a beam (spectrum-mean mu).

    Args:
        beam: as in :func:`simulate_ct_from_fractions`.
        water_mm: harden the spectrum by this much water first (a body's own
            filtration: iodine and bone contrast drop as the beam hardens).
        tissues: tissue names; default :data:`jaxsim.phantoms.TISSUES`.
        tissue_materials: tissue -> (material volume fractions, iodine mg/mL).

    Returns:
        ``{tissue: HU}`` using the spectrum-weighted mean attenuation.
    """
    if tissues is None:
        from jaxsim.phantoms import TISSUES as tissues
    energies, weights = _beam(beam, jnp.float32)
    e = np.asarray(energies, np.float64)
    w = np.asarray(weights, np.float64) * np.exp(-attenuation("water", e) * water_mm)
    w = w / w.sum()
    names, mixing = basis_matrix(tuple(tissues), tissue_materials)
    mu = basis_attenuation(names, e) @ w  # (n_basis,)
    mu_water, mu_air = water_reference(w, e)
    values = 1000.0 * (mu @ mixing - mu_water) / (mu_water - mu_air)
    return {t: float(v) for t, v in zip(tissues, values, strict=True)}


def simulate_ct(
    key: jax.Array,
    subject,
    *,
    geometry=None,
    cardiac_phase: float = 0.0,
    n_angles: int = 360,
    supersample=2,
    **options,
) -> CTResult:
    """Cone-beam CT of a virtual subject: projections, FDK image in HU, labels.

    The phantom is rasterised on ``geometry`` (an ``ImageGeometry``) and scanned in
    that grid's own frame: the rotation axis is the grid's ``k`` axis through its
    centre, so an axial grid gives an axial scan.

    Args:
        key: PRNG key for the noise.
        subject: one :class:`jaxsim.phantoms.Subject`.
        geometry: the reconstruction grid; default an axial chest grid of
            ``(48, 160, 160)`` voxels of 2.5 mm centred on the heart.
        cardiac_phase: in [0, 1); 0 is end-diastole.
        n_angles: views over 2 pi (used when ``options`` has no ``geom``).
        supersample: phantom sub-samples per voxel.
        **options: passed to :func:`simulate_ct_from_fractions` (``beam``, ``i0``,
            ``noise``, ``electronic_sigma``, ``tissue_materials``, ``filter``,
            ``geom`` ...).

    Returns:
        A :class:`CTResult` whose ``labels`` are the phantom's tissue labels on the
        reconstruction grid.
    """
    from jaxsim.phantoms import TISSUES, axial_geometry, tissue_fractions

    if geometry is None:
        geometry = axial_geometry(
            subject, spacing=(2.5, 2.5, 2.5), shape=(48, 160, 160)
        )
    fractions = tissue_fractions(
        subject, geometry, cardiac_phase=cardiac_phase, supersample=supersample
    )
    spacing = tuple(float(s) for s in np.asarray(geometry.spacing))
    vol_geom = VolumeGeometry(geometry.shape, spacing)
    if "geom" not in options:
        options["geom"] = scanner_geometry(vol_geom, n_angles=n_angles)
    return simulate_ct_from_fractions(
        key, fractions, vol_geom, tissues=TISSUES, **options
    )
