"""Feldkamp-Davis-Kress (FDK) reconstruction for circular cone-beam scans.

Steps: cosine (Feldkamp) weighting, short-scan Parker weighting, a ramp filter along
detector rows (applied by FFT with zero padding, in the spatial-domain discretisation of
Kak & Slaney so the DC gain is exact), and a voxel-driven backprojection with distance
weight ``(dso / U)^2`` and bilinear interpolation on the detector. Views are looped with
``lax.scan`` (pipelined: one view is filtered and its detector profiles interpolated
while the previous view's are accumulated), so memory holds the intermediates of two
views besides the input projections and the output volume.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite_array, is_concrete
from ._conebeam import (
    _lerp_index,
    _pair_index,
    _profile_length,
    _take_pairs,
    detector_coordinates,
)
from ._conebeam_geometry import ConeBeamGeometry, VolumeGeometry, check_volume_fits

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")
# Views filtered at once: enough to amortise the FFT calls, few enough that their
# spectra stay small next to the projections.
_FILTER_BATCH = 16


def ramp_filter(n_u: int, spacing, filter: str, dtype) -> jax.Array:
    """Frequency response ``(P,)`` of the windowed ramp filter for rows of ``n_u``.

    ``P`` is the next power of two >= ``2 n_u`` (zero padding against wrap-around).
    Multiplying a row's FFT by it and inverting gives ``spacing * (h * p)``, the
    discrete convolution with the band-limited ramp ``h``.
    """
    size = 1 << int(math.ceil(math.log2(2 * n_u)))
    n = np.fft.fftfreq(size) * size  # integer lags in FFT order
    h = np.zeros(size)
    h[n == 0] = 0.25
    odd = (np.abs(n) % 2) == 1
    h[odd] = -1.0 / (np.pi * n[odd]) ** 2
    response = np.real(np.fft.fft(h))  # unitless; divide by spacing below
    f = np.fft.fftfreq(size)  # cycles per sample, |f| <= 0.5
    window = {
        "ram-lak": np.ones_like(f),
        "shepp-logan": np.sinc(f),
        "cosine": np.cos(np.pi * f),
        "hann": 0.5 * (1.0 + np.cos(2.0 * np.pi * f)),
    }[filter]
    return jnp.asarray(response * window, dtype) / spacing


def _fan_half_angle(geom: ConeBeamGeometry) -> float:
    u_edge = geom.n_u / 2 * float(geom.du)
    u_max = u_edge + abs(float(geom.offset_u))
    return math.atan(u_max / float(geom.dsd))


def _scan_kind(geom: ConeBeamGeometry, short_scan: bool | None) -> bool:
    """Decide (eagerly) whether the scan is short; raise if it is too short."""
    if short_scan is not None:
        return bool(short_scan)
    if not is_concrete(geom.angles):
        return False
    angles = np.asarray(geom.angles, np.float64)
    n = angles.size
    if n < 2:
        raise ValueError(f"fdk needs at least 2 angles; got {n}")
    step = (angles[-1] - angles[0]) / (n - 1)
    if abs(step) * n >= 2 * np.pi * (1 - 1e-6):
        return False
    needed = np.pi + 2 * _fan_half_angle(geom)
    covered = abs(step) * (n - 1)
    if step <= 0 or covered < needed * (1 - 1e-6):
        raise ValueError(
            f"angles must cover a full scan (2*pi) or, increasing, a short scan of at "
            f"least pi + fan angle = {needed:.6g} rad; they cover {covered:.6g} rad "
            f"(step {step:.6g})"
        )
    return True


def parker_weights(geom: ConeBeamGeometry, dtype) -> jax.Array:
    """Parker's short-scan weights ``(n_angles, n_u)`` (conjugate rays sum to 1).

    In this frame a ray at (``beta``, fan angle ``gamma = atan(u / dsd)``) meets its
    conjugate at (``beta + pi - 2 gamma``, ``-gamma``), so Parker's formula is used
    with ``-gamma``. The overscan half-angle is ``(range - pi) / 2``.
    """
    angles = jnp.asarray(geom.angles, dtype)
    beta = angles - angles[0]
    delta = (beta[-1] - jnp.pi) / 2
    u_det, _ = detector_coordinates(geom, dtype)
    g = -jnp.arctan(u_det / geom.dsd)[None, :]
    b = beta[:, None]
    rise = jnp.sin(jnp.pi / 4 * b / (delta - g)) ** 2
    fall = jnp.sin(jnp.pi / 4 * (jnp.pi + 2 * delta - b) / (delta + g)) ** 2
    w = jnp.where(b < 2 * (delta - g), rise, 1.0)
    w = jnp.where(b > jnp.pi - 2 * g, fall, w)
    return jnp.clip(w, 0.0, 1.0)


def _view_weights(geom: ConeBeamGeometry, short: bool, dtype) -> jax.Array:
    """Angular quadrature times redundancy weight, ``(n_angles, n_u)``."""
    n = geom.n_angles
    if not short:
        return jnp.full((n, geom.n_u), jnp.pi / n, dtype)  # (2 pi / n) / 2
    angles = jnp.asarray(geom.angles, dtype)
    step = (angles[-1] - angles[0]) / (n - 1)
    return parker_weights(geom, dtype) * step


def _view_filter(geom, filter, dtype):
    """The per-view filter: ``view (n_v, n_u), weights (n_u,) -> filtered view``.

    Cosine (Feldkamp) weighting, the view's quadrature/redundancy weights, then the
    ramp filter along rows by FFT (zero padded). Applied one view at a time inside
    the backprojection loop, so memory never holds all filtered views.
    """
    u_det, v_det = detector_coordinates(geom, dtype)
    cosine = geom.dsd / jnp.sqrt(geom.dsd**2 + u_det**2 + v_det[:, None] ** 2)
    response = ramp_filter(geom.n_u, geom.du * geom.dso / geom.dsd, filter, dtype)
    size = response.shape[0]
    half = response[: size // 2 + 1]

    def apply(view, weights):
        spectrum = jnp.fft.rfft(view * cosine * weights, n=size, axis=-1) * half
        return jnp.fft.irfft(spectrum, n=size, axis=-1)[..., : geom.n_u]

    return apply


def _voxel_detector(cos_t, sin_t, vol_geom, geom, dtype):
    """Where the voxel columns of one view land on the detector.

    Returns:
        ``(c0, c1, a, mag, weight)``: padded detector columns ``(ny, nx)`` either
        side of each voxel column's ``u`` and the weight of ``c1``; the
        magnification ``dsd / U`` ``(ny, nx)``; the distance weight
        ``(dso / U)^2`` ``(ny, nx)``.
    """
    nz, ny, nx = vol_geom.shape
    _, sy, sx = (jnp.asarray(s, dtype) for s in vol_geom.spacing)
    ox, oy, _ = (jnp.asarray(o, dtype) for o in vol_geom.offset)
    x = (jnp.arange(nx, dtype=dtype) - (nx - 1) / 2) * sx + ox
    y = (jnp.arange(ny, dtype=dtype) - (ny - 1) / 2) * sy + oy
    depth = geom.dso - (x[None, :] * cos_t + y[:, None] * sin_t)  # U, (ny, nx)
    mag = geom.dsd / depth
    u = (y[:, None] * cos_t - x[None, :] * sin_t) * mag
    iu = (u - geom.offset_u) / geom.du + (geom.n_u - 1) / 2
    c0, c1, a = _lerp_index(iu, geom.n_u)
    return c0, c1, a, mag, (geom.dso / depth) ** 2


def _view_profiles(view, cos_t, sin_t, vol_geom, geom):
    """Detector columns interpolated at each voxel column's ``u``: ``(ny, nx, L)``.

    Each profile runs along ``v`` with one zero in front and at least two behind
    (``L`` = :func:`_profile_length` of ``n_v``), the layout :func:`_pair_index`
    expects.
    """
    length = _profile_length(geom.n_v)
    c0, c1, a, _, _ = _voxel_detector(cos_t, sin_t, vol_geom, geom, view.dtype)
    columns = jnp.pad(view.T, ((1, 1), (1, length - geom.n_v - 1)))  # (n_u + 2, L)
    a = a[..., None]
    return columns[c0] * (1 - a) + columns[c1] * a


def _add_view(volume, prof, cos_t, sin_t, vol_geom, geom):
    """Add one view's profiles ``(ny, nx, L)`` to ``volume`` ``(ny, nx, nz)``."""
    nz, ny, nx = vol_geom.shape
    dtype = volume.dtype
    sz = jnp.asarray(vol_geom.spacing[0], dtype)
    oz = jnp.asarray(vol_geom.offset[2], dtype)
    z = (jnp.arange(nz, dtype=dtype) - (nz - 1) / 2) * sz + oz
    _, _, _, mag, weight = _voxel_detector(cos_t, sin_t, vol_geom, geom, dtype)
    iv = (z * mag[..., None] - geom.offset_v) / geom.dv + (geom.n_v - 1) / 2
    k, b = _pair_index(iv, geom.n_v)
    base = jnp.arange(ny * nx, dtype=jnp.int32).reshape(ny, nx, 1) * prof.shape[-1]
    s = _take_pairs(prof.reshape(-1), base + k)
    return volume + (s[..., 0] * (1 - b) + s[..., 1] * b) * weight[..., None]


def fdk(
    projections: jax.Array,
    vol_geom: VolumeGeometry,
    geom: ConeBeamGeometry,
    *,
    filter: str = "ram-lak",
    short_scan: bool | None = None,
) -> jax.Array:
    """Feldkamp (FDK) reconstruction of cone-beam line integrals.

    Args:
        projections: line integrals ``(n_angles, n_v, n_u)``, float (dimensionless for
            attenuation in 1/mm).
        vol_geom: the reconstruction grid.
        geom: the scan; angles evenly spaced, either a full circle (``n`` views over
            ``2 pi``) or, increasing, a short scan of at least ``pi`` + fan angle.
        filter: ramp window, one of ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``,
            ``"hann"``.
        short_scan: force Parker short-scan weighting on or off; ``None`` decides from
            concrete angles (traced angles are taken as a full scan).

    Returns:
        Reconstruction ``(nz, ny, nx)`` in the projections' units per mm (1/mm for
        line integrals of attenuation), dtype of ``projections``.

    Raises:
        ValueError: wrong shape, NaN or inf in concrete projections, unknown filter,
            angles covering neither a full nor a short scan, or a grid reaching the
            source circle.
    """
    projections = jnp.asarray(projections)
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}; got {filter!r}")
    expected = (geom.n_angles, geom.n_v, geom.n_u)
    if tuple(projections.shape) != expected:
        raise ValueError(
            f"projections must have shape {expected}; got {projections.shape}"
        )
    if not jnp.issubdtype(projections.dtype, jnp.floating):
        raise TypeError(f"projections must be float; got dtype {projections.dtype}")
    check_finite_array("projections", projections)
    check_volume_fits(vol_geom, geom)
    short = _scan_kind(geom, short_scan)
    return _fdk_jit(projections, vol_geom, geom, filter, short)


@partial(jax.jit, static_argnums=(3, 4))
def _fdk_jit(projections, vol_geom, geom, filter, short):
    dtype = projections.dtype
    n = geom.n_angles
    angles = jnp.asarray(geom.angles, dtype)
    weights = _view_weights(geom, short, dtype)  # (n_angles, n_u)
    view_filter = jax.vmap(_view_filter(geom, filter, dtype))
    nz, ny, nx = vol_geom.shape
    size = min(_FILTER_BATCH, n)
    length = _profile_length(geom.n_v)

    # Views in blocks: a block's views are filtered together (a few FFTs in
    # flight, never all views' spectra), then swept one by one, pipelined: step j
    # interpolates the columns of view j and samples those of the view before,
    # received through the carry. That keeps the profiles a materialised array;
    # otherwise XLA fuses their interpolation into the per-voxel gather and redoes
    # it for every voxel. The last block is slid back to end at the last view
    # (views are read by index: the projections are never copied), and its views
    # already swept get zero weight.
    def block(carry, b):
        first = jnp.minimum(b * size, n - size)
        index = first + jnp.arange(size)
        fresh = (index >= b * size)[:, None].astype(dtype)
        views = jax.lax.dynamic_slice_in_dim(projections, first, size)
        filtered = view_filter(views, weights[index] * fresh)

        def step(carry, j):
            volume, prof, angle_prev = carry
            volume = _add_view(
                volume, prof, jnp.cos(angle_prev), jnp.sin(angle_prev), vol_geom, geom
            )
            angle = angles[index[j]]
            c, s = jnp.cos(angle), jnp.sin(angle)
            return (
                volume,
                _view_profiles(filtered[j], c, s, vol_geom, geom),
                angle,
            ), None

        carry, _ = jax.lax.scan(step, carry, jnp.arange(size))
        return carry, None

    init = (
        jnp.zeros((ny, nx, nz), dtype),
        jnp.zeros((ny, nx, length), dtype),  # adds nothing on the first step
        angles[0],
    )
    n_blocks = -(-n // size)
    (volume, prof, angle), _ = jax.lax.scan(block, init, jnp.arange(n_blocks))
    volume = _add_view(volume, prof, jnp.cos(angle), jnp.sin(angle), vol_geom, geom)
    return jnp.transpose(volume, (2, 0, 1))
