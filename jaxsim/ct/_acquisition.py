"""The CT acquisition: one frozen pytree for the scan, the beam and the detector.

Counts, modes and shapes (views, detector pixels, beam energy grid, noise model,
FDK filter, beam-hardening correction) are static fields: changing them compiles
new code. Physical magnitudes (photons per pixel, electronic noise, spectrum
weights, source distances, detector pitch, start angle) are leaves: a jitted
simulator traced once serves every value, so a domain-randomised run compiles once.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels import ConeBeamGeometry, VolumeGeometry
from jaxsim.kernels.checks import check_range, is_concrete

from ._materials import _table, spectrum_names
from ._materials import energies as table_energies
from ._noise import NOISE_MODELS

__all__ = [
    "CTAcquisition",
    "ACQUISITION_RANGES",
    "MAX_VIEWS",
    "FILTERS",
    "check_acquisition",
    "scanner_geometry",
]

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")
#: Most views per rotation accepted (clinical scanners take ~1000-2500).
MAX_VIEWS = 100_000
#: Most detector rows or columns accepted.
MAX_DETECTOR = 16_384

#: Allowed magnitudes: ``(low, high, low_inclusive)``; units in the field docs.
#: ``dsd`` must also exceed ``dso``.
ACQUISITION_RANGES: dict[str, tuple[float, float, bool]] = {
    "i0": (0.0, 1e12, False),
    "electronic_sigma": (0.0, 1e6, True),
    "dso": (0.0, 1e5, False),
    "dsd": (0.0, 2e5, False),
    "pixel": (0.0, 100.0, False),
    "start_angle": (-1e3, 1e3, True),
}


def _static_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or int(value) != value or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    return int(value)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CTAcquisition:
    """How a circular cone-beam CT scan is acquired and reconstructed.

    Attributes:
        i0: unattenuated photons per detector pixel per view (> 0); leaf.
        electronic_sigma: standard deviation of additive electronic noise, counts
            (>= 0); leaf.
        spectrum_weights: ``(n_energies,)`` relative photon fluence per bin of
            :meth:`energies` (>= 0, normalised to sum 1 internally); leaf, or
            ``None`` for the beam's own spectrum.
        dso: source-to-rotation-axis distance, mm; leaf.
        dsd: source-to-detector distance, mm (> ``dso``); leaf.
        pixel: detector pitch, mm; leaf, or ``None`` for the in-plane voxel size
            magnified to the detector (``dsd / dso``).
        start_angle: angle of the first view, rad; leaf.
        n_views: static; views over one full rotation, in [2, :data:`MAX_VIEWS`].
        detector: static; ``(n_v, n_u)`` detector rows and columns, or ``None`` to
            size the detector to cover the grid (needs concrete ``dso``, ``dsd``,
            ``pixel`` and grid spacing: see :meth:`planned`).
        beam: static; a shipped spectrum name (``"80kVp"`` ... ``"140kVp"``), a
            monochromatic energy in keV, or a tuple of energies (keV) for
            ``spectrum_weights``.
        noise: static; ``"poisson"`` (photon counting, not differentiable),
            ``"gaussian"`` (``I0 T + sqrt(I0 T) eps``, reparameterised, so
            differentiable) or ``"none"``.
        filter: static; FDK ramp window (``"ram-lak"``, ``"shepp-logan"``,
            ``"cosine"``, ``"hann"``).
        beam_hardening_correction: static; water pre-correction before FDK.

    Leaves may carry leading batch axes (one acquisition per item under ``vmap``).

    Example:
        >>> acq = CTAcquisition(i0=5e4, n_views=180, beam="100kVp", noise="gaussian")
    """

    i0: jax.Array = 1e5
    electronic_sigma: jax.Array = 0.0
    spectrum_weights: jax.Array | None = None
    dso: jax.Array = 595.0
    dsd: jax.Array = 1085.6
    pixel: jax.Array | None = None
    start_angle: jax.Array = 0.0
    n_views: int = dataclasses.field(default=360, metadata=dict(static=True))
    detector: tuple[int, int] | None = dataclasses.field(
        default=None, metadata=dict(static=True)
    )
    beam: str | float | tuple[float, ...] = dataclasses.field(
        default="120kVp", metadata=dict(static=True)
    )
    noise: str = dataclasses.field(default="poisson", metadata=dict(static=True))
    filter: str = dataclasses.field(default="shepp-logan", metadata=dict(static=True))
    beam_hardening_correction: bool = dataclasses.field(
        default=True, metadata=dict(static=True)
    )

    def __post_init__(self):
        # Static fields only: leaves may be tracers or placeholders here.
        set_ = object.__setattr__
        set_(self, "n_views", _static_int("n_views", self.n_views, 2, MAX_VIEWS))
        if self.detector is not None:
            if len(tuple(self.detector)) != 2:
                raise ValueError(
                    f"detector must be (n_v, n_u) pixel counts; got {self.detector!r}"
                )
            n_v, n_u = self.detector
            set_(
                self,
                "detector",
                (
                    _static_int("detector n_v", n_v, 1, MAX_DETECTOR),
                    _static_int("detector n_u", n_u, 1, MAX_DETECTOR),
                ),
            )
        set_(self, "beam", _normalise_beam(self.beam))
        if self.noise not in NOISE_MODELS:
            raise ValueError(f"noise must be one of {NOISE_MODELS}; got {self.noise!r}")
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}; got {self.filter!r}")
        if not isinstance(self.beam_hardening_correction, bool):
            raise TypeError(
                "beam_hardening_correction must be a bool; got "
                f"{self.beam_hardening_correction!r}"
            )

    def energies(self) -> np.ndarray:
        """The beam's energy grid, keV, float64 ``(n_energies,)`` (static).

        A shipped spectrum keeps the table bins its tube voltage reaches (bins of
        zero fluence add nothing to any spectrum sum).
        """
        return _beam_grid(self.beam)[0]

    def weights(self, dtype=None) -> jax.Array:
        """Spectrum weights ``(..., n_energies)`` summing to 1, of ``dtype``."""
        dtype = dtype or jnp.zeros(()).dtype
        if self.spectrum_weights is None:
            default = _beam_grid(self.beam)[1]
            if default is None:
                raise ValueError(
                    "spectrum_weights must be given for a beam of explicit energies"
                )
            return jnp.asarray(default, dtype)
        w = jnp.asarray(self.spectrum_weights, dtype)
        return w / jnp.sum(w, axis=-1, keepdims=True)

    def planned(self, vol_geom: VolumeGeometry) -> CTAcquisition:
        """A copy whose :attr:`detector` is sized to cover ``vol_geom`` (concrete
        distances, pitch and spacing needed); use it to jit over the magnitudes."""
        geom = scanner_geometry(vol_geom, self)
        return self.replace(detector=(geom.n_v, geom.n_u))

    def replace(self, **changes) -> CTAcquisition:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _normalise_beam(beam):
    if isinstance(beam, str):
        if beam not in spectrum_names():
            raise ValueError(
                f"beam must be one of {spectrum_names()}, an energy in keV or a tuple "
                f"of energies; got {beam!r}"
            )
        return beam
    grid = table_energies()
    values = np.atleast_1d(np.asarray(beam, np.float64))
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"beam energies must be finite keV; got {beam!r}")
    if np.any(values < grid[0]) or np.any(values > grid[-1]):
        raise ValueError(
            f"beam energies must lie in [{grid[0]:g}, {grid[-1]:g}] keV; got {beam!r}"
        )
    if np.ndim(beam) == 0:
        return float(values[0])
    return tuple(float(v) for v in values)


def _beam_grid(beam) -> tuple[np.ndarray, np.ndarray | None]:
    """Static energies (keV) of a normalised beam and its default weights."""
    if isinstance(beam, str):
        grid = table_energies()
        weights = np.asarray(_table("spectra.json")["spectra"][beam], np.float64)
        nonzero = np.flatnonzero(weights > 0)
        keep = slice(nonzero[0], nonzero[-1] + 1)
        return grid[keep], weights[keep] / weights[keep].sum()
    if isinstance(beam, float):
        return np.asarray([beam]), np.ones(1)
    return np.asarray(beam, np.float64), None


def check_acquisition(acq: CTAcquisition, name: str = "acquisition") -> None:
    """Raise ``ValueError`` for invalid concrete magnitudes (tracers are skipped)."""
    if not isinstance(acq, CTAcquisition):
        raise TypeError(f"{name} must be a CTAcquisition; got {type(acq).__name__}")
    units = dict(dso="mm", dsd="mm", pixel="mm", start_angle="rad", i0="photons")
    for field, (low, high, low_inclusive) in ACQUISITION_RANGES.items():
        value = getattr(acq, field)
        if value is not None:
            check_range(
                f"{name}.{field}",
                value,
                low=low,
                high=high,
                low_inclusive=low_inclusive,
                unit=units.get(field, ""),
            )
    if is_concrete(acq.dso, acq.dsd) and not np.all(
        np.asarray(acq.dsd) > np.asarray(acq.dso)
    ):
        raise ValueError(
            f"{name}.dsd must exceed {name}.dso; got dsd={np.min(acq.dsd):g} mm, "
            f"dso={np.max(acq.dso):g} mm"
        )
    n_energies = acq.energies().size
    if acq.spectrum_weights is not None:
        shape = jnp.shape(acq.spectrum_weights)
        if shape[-1:] != (n_energies,):
            raise ValueError(
                f"{name}.spectrum_weights must have a last axis of {n_energies} (the "
                f"energies of beam {acq.beam!r}); got shape {shape}"
            )
        w = acq.spectrum_weights
        check_range(f"{name}.spectrum_weights", w, low=0.0, low_inclusive=True)
        if is_concrete(w) and not np.all(np.sum(np.asarray(w), axis=-1) > 0):
            raise ValueError(f"{name}.spectrum_weights must not all be zero")
    elif not isinstance(acq.beam, str | float):
        raise ValueError(
            f"{name}.spectrum_weights must be given for a beam of explicit energies"
        )


def _angles(acq: CTAcquisition):
    steps = np.arange(acq.n_views) * (2 * np.pi / acq.n_views)
    if is_concrete(acq.start_angle):
        return np.asarray(acq.start_angle, np.float64) + steps
    return jnp.asarray(acq.start_angle)[..., None] + steps


def scanner_geometry(
    vol_geom: VolumeGeometry, acquisition: CTAcquisition | None = None
) -> ConeBeamGeometry:
    """The full-rotation scan of an acquisition, its flat detector covering the grid.

    Args:
        vol_geom: the grid to image (its centre on the rotation axis is best).
        acquisition: the scan (default :class:`CTAcquisition`). Its ``detector``,
            when given, fixes the pixel counts; otherwise they are planned here
            from concrete ``dso``, ``dsd``, ``pixel`` and grid spacing so that
            every ray through the grid meets the detector.

    Returns:
        The :class:`~jaxsim.kernels.ConeBeamGeometry`: ``n_views`` views over
        2 pi from ``start_angle``; pitch ``pixel`` or the in-plane voxel size times
        ``dsd / dso``.

    Raises:
        ValueError: the grid reaches the source circle, or the detector must be
            planned from traced values.
    """
    acq = CTAcquisition() if acquisition is None else acquisition
    _, sy, sx = vol_geom.spacing
    if acq.pixel is None:
        pixel = jnp.minimum(sx, sy) * acq.dsd / acq.dso
        if is_concrete(sx, sy, acq.dsd, acq.dso):
            pixel = float(min(float(sx), float(sy)) * float(acq.dsd) / float(acq.dso))
    else:
        pixel = acq.pixel
    leaves = (*vol_geom.spacing, *vol_geom.offset, acq.dso, acq.dsd, pixel)
    concrete = is_concrete(*leaves) and all(np.ndim(v) == 0 for v in leaves)
    if concrete:
        radius, dso = vol_geom.radius, float(acq.dso)
        if not radius < dso:
            raise ValueError(
                f"the grid (radius {radius:g} mm) must fit inside dso={dso:g} mm"
            )
    if acq.detector is not None:
        n_v, n_u = acq.detector
    elif concrete:
        n_v, n_u = _plan_detector(vol_geom, float(acq.dso), float(acq.dsd), pixel)
    else:
        raise ValueError(
            "acquisition.detector=(n_v, n_u) must be given when the scan distances, "
            "the detector pitch or the grid spacing are traced (or call "
            "CTAcquisition.planned(vol_geom) with concrete values first)"
        )
    return ConeBeamGeometry(acq.dso, acq.dsd, n_u, n_v, pixel, pixel, _angles(acq))


def _plan_detector(vol_geom, dso, dsd, pixel) -> tuple[int, int]:
    """Rows and columns (even) whose rays cover every voxel of the grid."""
    nz = vol_geom.shape[0]
    sz = float(vol_geom.spacing[0])
    radius = vol_geom.radius
    u_max = dsd * radius / math.sqrt(dso**2 - radius**2)
    v_max = dsd * (nz * sz / 2 + abs(float(vol_geom.offset[2]))) / (dso - radius)
    n_u = 2 * math.ceil(u_max / float(pixel)) + 2
    n_v = 2 * math.ceil(v_max / float(pixel)) + 2
    if max(n_u, n_v) > MAX_DETECTOR:
        raise ValueError(
            f"the detector covering this grid needs {n_v} x {n_u} pixels, more than "
            f"{MAX_DETECTOR} per side: use a larger pixel or a smaller grid"
        )
    return n_v, n_u
