"""Cine bSSFP images of the phantom: MRXCAT's acquisition model, differentiable.

Pipeline (per cardiac phase): tissue fractions on a grid refined in-plane by
``oversample`` -> per-tissue bSSFP echo (steady state or transient) mixed by the
fractions -> optional smooth B0 field map (per-voxel off-resonance, so real banding)
and receive bias field -> Cartesian k-space cropped to the target matrix (Gibbs
ringing and partial volume come from the crop), optional Tukey window -> coil
sensitivities (Biot-Savart loops) -> complex Gaussian noise -> optional Cartesian
undersampling with zero filling -> coil combination -> magnitude.

SNR follows MRXCAT: every coil channel receives complex white Gaussian noise whose
real and imaginary parts each have standard deviation

    sigma = mean(|noise-free combined image| over LV myocardium) / snr,

the myocardium taken from the first requested cardiac phase's label map. With one
uniform coil the realised image SNR in the myocardium is therefore ``snr``. With
several coils combined by sensitivity weighting, ``sum_c conj(s_c) y_c / sum_c
|s_c|^2``, the noise per component at a voxel is ``sigma / sqrt(sum_c |s_c|^2)``;
root-sum-of-squares combination keeps ``sigma`` per channel at high SNR.
Coil sensitivities are applied at the target resolution (they are smooth on the
scale of a voxel), after the k-space crop of the single-channel image.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.geometry import ImageGeometry
from jaxsim.kernels._checks import check_range, is_concrete
from jaxsim.phantoms import TISSUE_INDEX, label_map, tissue_fractions

from ._coils import coil_sensitivities
from ._kspace import cartesian_mask, crop_kspace, fft2c, ifft2c, tukey_window
from ._sequence import BSSFPSequence, tissue_signals
from ._tissues import TissueProperties, default_tissue_properties

__all__ = [
    "CineResult",
    "refine_in_plane",
    "acquire_cine",
    "simulate_cine",
    "simulate_cine_contrasts",
    "prepare_anatomy",
    "acquire_images",
]

_COMBINATIONS = ("rss", "sensitivity")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CineResult:
    """Output of :func:`simulate_cine`.

    Attributes:
        image: ``(n_phases, nz, ny, nx)`` float32 magnitude images.
        labels: ``(n_phases, nz, ny, nx)`` uint8 label maps (indices into TISSUES).
        noise_std: scalar, the per-channel, per-component noise sigma (0 without
            noise).
        coil_images: ``(n_phases, n_coils, nz, ny, nx)`` complex coil images, or
            ``None`` unless requested.
        coil_maps: ``(n_coils, nz, ny, nx)`` complex sensitivities, or ``None``.
    """

    image: jax.Array
    labels: jax.Array
    noise_std: jax.Array
    coil_images: jax.Array | None = None
    coil_maps: jax.Array | None = None


def refine_in_plane(geometry: ImageGeometry, factor: int) -> ImageGeometry:
    """The same field of view sampled ``factor`` times finer along y and x.

    Voxel centres of the fine grid are placed so that the fine grid's voxels tile
    the coarse grid's voxels exactly.
    """
    if factor == 1:
        return geometry
    a = geometry.affine
    scale = jnp.diag(jnp.asarray([1.0 / factor, 1.0 / factor, 1.0, 1.0], a.dtype))
    shift = -(factor - 1) / (2 * factor)
    offset = jnp.asarray([shift, shift, 0.0, 1.0], a.dtype)
    affine = (a @ scale).at[:, 3].set(a @ offset)
    nz, ny, nx = geometry.shape
    return ImageGeometry(affine=affine, shape=(nz, ny * factor, nx * factor))


def _smooth_field(key, shape, std):
    """Random smooth (quadratic) field over a grid, std ~ ``std``, zero mean."""
    nz, ny, nx = shape
    z, y, x = jnp.meshgrid(
        jnp.linspace(-1, 1, nz),
        jnp.linspace(-1, 1, ny),
        jnp.linspace(-1, 1, nx),
        indexing="ij",
    )
    basis = jnp.stack([x, y, z, x * y, x * x - 1 / 3, y * y - 1 / 3, x * z, y * z])
    coeffs = jax.random.normal(key, (basis.shape[0],)) / np.sqrt(basis.shape[0])
    return std * jnp.tensordot(coeffs, basis, axes=1) * np.sqrt(3.0)


def _combine(coil_images, coil_maps, combination):
    if combination == "rss":
        return jnp.sqrt(jnp.sum(jnp.abs(coil_images) ** 2, axis=-4))
    weights = jnp.sum(jnp.abs(coil_maps) ** 2, axis=-4)
    return jnp.abs(jnp.sum(jnp.conj(coil_maps) * coil_images, axis=-4) / weights)


@partial(
    jax.jit,
    static_argnames=(
        "oversample",
        "tukey_alpha",
        "combination",
        "with_noise",
        "b0_std",
        "bias_std",
        "return_coils",
    ),
)
def acquire_cine(
    key,
    fractions,
    myo_mask,
    coil_maps,
    tissue: TissueProperties,
    sequence: BSSFPSequence,
    snr,
    mask=None,
    *,
    oversample: int = 2,
    tukey_alpha: float | None = None,
    combination: str = "rss",
    with_noise: bool = True,
    b0_std: float = 0.0,
    bias_std: float = 0.0,
    return_coils: bool = False,
):
    """Acquisition of cine frames from precomputed tissue fractions (jit, vmap-able).

    This is the differentiable core of :func:`simulate_cine`; ``vmap`` it over
    ``tissue``/``sequence``/``snr``/``key`` for many contrasts of one anatomy.

    Args:
        key: PRNG key (noise, random field maps).
        fractions: ``(n_phases, n_tissues, nz, ny*oversample, nx*oversample)``.
        myo_mask: ``(nz, ny, nx)`` bool, LV myocardium at target resolution.
        coil_maps: ``(n_coils, nz, ny, nx)`` complex sensitivities.
        tissue: :class:`TissueProperties` with ``(n_tissues,)`` arrays.
        sequence: :class:`BSSFPSequence`.
        snr: target myocardial SNR (ignored when ``with_noise`` is False).
        mask: optional ``(ny,)`` bool phase-encoding mask (zero-filled recon).
        oversample, tukey_alpha, combination, b0_std, bias_std, return_coils: see
            :func:`simulate_cine`.

    Returns:
        ``(image (n_phases, nz, ny, nx), sigma, coil_images or None)``.
    """
    n_phases, _, nz, fy, fx = fractions.shape
    k_b0, k_bias, k_noise = jax.random.split(key, 3)
    if b0_std > 0:
        df = _smooth_field(k_b0, (nz, fy, fx), b0_std)
        bcast = jax.tree_util.tree_map(lambda a: a[:, None, None, None], tissue)
        signals = tissue_signals(bcast, sequence, df[None])  # (T, nz, fy, fx)
        images = jnp.sum(fractions * signals[None], axis=1)
    else:
        signals = tissue_signals(tissue, sequence)
        images = jnp.einsum("t,ptzyx->pzyx", signals, fractions.astype(signals.dtype))
    if bias_std > 0:
        images = images * jnp.exp(_smooth_field(k_bias, (nz, fy, fx), bias_std))
    return acquire_images(
        k_noise,
        images,
        myo_mask,
        coil_maps,
        snr,
        mask,
        oversample=oversample,
        tukey_alpha=tukey_alpha,
        combination=combination,
        with_noise=with_noise,
        return_coils=return_coils,
    )


@partial(
    jax.jit,
    static_argnames=(
        "oversample",
        "tukey_alpha",
        "combination",
        "with_noise",
        "return_coils",
    ),
)
def acquire_images(
    key,
    images,
    myo_mask,
    coil_maps,
    snr,
    mask=None,
    *,
    oversample: int = 2,
    tukey_alpha: float | None = None,
    combination: str = "rss",
    with_noise: bool = True,
    return_coils: bool = False,
):
    """The receive chain shared by every MR contrast: fine-grid complex images ->
    k-space crop and window -> coil sensitivities -> noise -> undersampling ->
    coil combination (see the module docstring for the SNR definition).

    Args:
        key: PRNG key (noise).
        images: ``(P, nz, ny*oversample, nx*oversample)`` complex magnetization on
            the refined grid (one per frame).
        myo_mask: ``(nz, ny, nx)`` bool, LV myocardium at target resolution.
        coil_maps: ``(n_coils, nz, ny, nx)`` complex sensitivities.
        snr: target myocardial SNR of the first frame (ignored without noise).
        mask: optional ``(ny,)`` bool phase-encoding mask (zero-filled recon).
        oversample, tukey_alpha, combination, with_noise, return_coils: see
            :func:`simulate_cine`.

    Returns:
        ``(image (P, nz, ny, nx), sigma, coil_images (P, C, nz, ny, nx) or None)``.
    """
    ny, nx = images.shape[-2] // oversample, images.shape[-1] // oversample
    shift = (oversample - 1) / (2 * oversample)
    kspace = crop_kspace(fft2c(images), (ny, nx), shift=(shift, shift))
    if tukey_alpha is not None:
        window = np.outer(tukey_window(ny, tukey_alpha), tukey_window(nx, tukey_alpha))
        kspace = kspace * window
    single = ifft2c(kspace)  # (P, nz, ny, nx)
    clean_coils = single[:, None] * coil_maps[None]  # (P, C, nz, ny, nx)
    if with_noise:
        clean = _combine(clean_coils[0], coil_maps, combination)
        sigma = jnp.sum(jnp.where(myo_mask, clean, 0.0)) / jnp.sum(myo_mask) / snr
        noise = jax.random.normal(key, (2, *clean_coils.shape), clean.dtype)
        noise = sigma * jax.lax.complex(noise[0], noise[1])
    else:
        sigma = jnp.zeros((), jnp.real(single).dtype)
        noise = None
    if mask is None:
        # White Gaussian noise is white with the same sigma in either domain (the
        # FFT is orthonormal), so without undersampling it is added to the coil
        # images directly and the per-coil FFTs are skipped.
        coils = clean_coils if noise is None else clean_coils + noise
    else:
        kspace = fft2c(clean_coils) if noise is None else fft2c(clean_coils) + noise
        coils = ifft2c(kspace * mask[:, None])
    image = _combine(coils, coil_maps[None], combination)
    return image, sigma, (coils if return_coils else None)


def _check_options(
    snr,
    n_coils,
    oversample,
    tukey_alpha,
    acceleration,
    combination,
    b0_std,
    bias_std,
    cardiac_phases,
):
    if snr is not None:
        check_range("snr", snr, low=0.0, high=None)
    if int(n_coils) != n_coils or n_coils < 1:
        raise ValueError(f"n_coils must be a positive integer; got {n_coils}")
    if int(oversample) != oversample or not 1 <= oversample <= 8:
        raise ValueError(f"oversample must be an integer in [1, 8]; got {oversample}")
    if tukey_alpha is not None and not 0.0 <= tukey_alpha <= 1.0:
        raise ValueError(
            f"tukey_alpha must lie in [0, 1] or be None; got {tukey_alpha}"
        )
    if not acceleration >= 1.0:
        raise ValueError(f"acceleration must be >= 1; got {acceleration}")
    if combination not in _COMBINATIONS:
        raise ValueError(
            f"coil_combination must be one of {_COMBINATIONS}; got {combination!r}"
        )
    if not b0_std >= 0.0:
        raise ValueError(f"b0_std must be >= 0 Hz; got {b0_std}")
    if not bias_std >= 0.0:
        raise ValueError(f"bias_std must be >= 0; got {bias_std}")
    phases = np.atleast_1d(np.asarray(cardiac_phases, dtype=np.float64))
    if phases.ndim != 1 or phases.size == 0:
        raise ValueError("cardiac_phases must be a non-empty 1D sequence of phases")
    check_range(
        "cardiac_phases",
        phases,
        low=0.0,
        high=1.0,
        low_inclusive=True,
        high_inclusive=False,
    )
    return tuple(float(p) for p in phases)


def prepare_anatomy(
    key,
    subject,
    geometry,
    phases,
    n_coils,
    oversample=2,
    acceleration=1.0,
    center_lines=16,
    supersample=None,
    need_myo=True,
):
    """Rasterise a subject once for many acquisitions with :func:`acquire_cine`.

    Args:
        key: PRNG key (only the undersampling mask uses it, via ``fold_in(key, 1)``).
        subject, geometry: as in :func:`simulate_cine`.
        phases: tuple of cardiac phases in [0, 1).
        n_coils, oversample, acceleration, center_lines, supersample: as in
            :func:`simulate_cine`.
        need_myo: raise if the first phase's label map has no LV myocardium.

    Returns:
        ``(fractions (P, T, nz, ny*o, nx*o), labels (P, nz, ny, nx) uint8,
        myo_mask (nz, ny, nx) bool, coil_maps (C, nz, ny, nx), mask (ny,) or None)``.
    """
    kwargs = {} if supersample is None else {"supersample": supersample}
    fine = refine_in_plane(geometry, oversample)
    fractions = jnp.stack(
        [tissue_fractions(subject, fine, cardiac_phase=p, **kwargs) for p in phases]
    )
    labels = jnp.stack(
        [label_map(subject, geometry, cardiac_phase=p, **kwargs) for p in phases]
    )
    myo = labels[0] == TISSUE_INDEX["lv_myocardium"]
    if need_myo and is_concrete(myo) and not bool(jnp.any(myo)):
        raise ValueError(
            "snr needs LV myocardium in the first phase's image to set "
            "the noise level; the grid contains none"
        )
    maps = coil_sensitivities(geometry, n_coils)
    mask = None
    if acceleration > 1.0:
        mask = cartesian_mask(
            jax.random.fold_in(key, 1),
            geometry.shape[1],
            acceleration,
            center_lines=center_lines,
        )
    return fractions, labels, myo, maps, mask


def simulate_cine(
    key,
    subject,
    geometry: ImageGeometry,
    *,
    cardiac_phases=(0.0,),
    tissue: TissueProperties | None = None,
    sequence: BSSFPSequence | None = None,
    snr: float | None = None,
    n_coils: int = 1,
    coil_combination: str = "rss",
    oversample: int = 2,
    tukey_alpha: float | None = None,
    acceleration: float = 1.0,
    center_lines: int = 16,
    b0_std: float = 0.0,
    bias_std: float = 0.0,
    field: float = 1.5,
    supersample=None,
    return_coils: bool = False,
) -> CineResult:
    """Simulate cine bSSFP frames of one phantom subject on any (oblique) grid.

    Args:
        key: PRNG key (noise, field maps, undersampling mask).
        subject: a :class:`~jaxsim.phantoms.Subject` (scalar leaves).
        geometry: target image grid ``(nz, ny, nx)``, e.g. from
            :func:`~jaxsim.phantoms.short_axis_geometry`.
        cardiac_phases: phases in [0, 1) (0 is end-diastole).
        tissue: per-tissue PD/T1/T2; default the literature means at ``field``.
        sequence: :class:`BSSFPSequence`; default TR 3.1 ms, TE 1.55 ms, 60 deg.
        snr: target myocardial SNR (MRXCAT's definition, module docstring); ``None``
            for no noise.
        n_coils: receive coils; 1 is a uniform coil, more are Biot-Savart loops.
        coil_combination: ``"rss"`` or ``"sensitivity"`` (Roemer with known maps).
        oversample: in-plane refinement of the simulation grid whose k-space is
            cropped to the target matrix (1: no crop).
        tukey_alpha: Tukey window taper on the cropped k-space, or ``None``.
        acceleration: Cartesian undersampling factor (>= 1) with ``center_lines``
            fully sampled lines; zero-filled reconstruction.
        b0_std: standard deviation (Hz) of a random smooth B0 field map (0: none).
        bias_std: standard deviation of the log of a random smooth receive bias.
        field: 1.5 or 3 (tesla), for the default tissue properties.
        supersample: phantom sub-samples per fine voxel (default: the phantom's).
        return_coils: also return complex coil images and coil maps.

    Returns:
        :class:`CineResult`.

    Raises:
        ValueError: for invalid options, or ``snr`` set when the first phase's
            label map has no LV myocardium (the SNR reference is undefined).
    """
    phases = _check_options(
        snr,
        n_coils,
        oversample,
        tukey_alpha,
        acceleration,
        coil_combination,
        b0_std,
        bias_std,
        cardiac_phases,
    )
    tissue = default_tissue_properties(field) if tissue is None else tissue
    sequence = BSSFPSequence() if sequence is None else sequence
    tissue_signals(tissue, sequence)  # eager validation through the kernel's checks
    fractions, labels, myo, maps, mask = prepare_anatomy(
        key,
        subject,
        geometry,
        phases,
        n_coils,
        oversample,
        acceleration,
        center_lines,
        supersample,
        snr is not None,
    )
    image, sigma, coils = acquire_cine(
        jax.random.fold_in(key, 0),
        fractions,
        myo,
        maps,
        tissue,
        sequence,
        1.0 if snr is None else snr,
        mask,
        oversample=oversample,
        tukey_alpha=tukey_alpha,
        combination=coil_combination,
        with_noise=snr is not None,
        b0_std=float(b0_std),
        bias_std=float(bias_std),
        return_coils=return_coils,
    )
    return CineResult(
        image=image.astype(jnp.float32),
        labels=labels,
        noise_std=sigma,
        coil_images=coils,
        coil_maps=maps if return_coils else None,
    )


def simulate_cine_contrasts(
    key,
    subject,
    geometry: ImageGeometry,
    *,
    tissue: TissueProperties,
    sequence: BSSFPSequence,
    snr,
    cardiac_phases=(0.0,),
    n_coils: int = 1,
    coil_combination: str = "rss",
    oversample: int = 2,
    tukey_alpha: float | None = None,
    acceleration: float = 1.0,
    center_lines: int = 16,
    b0_std: float = 0.0,
    bias_std: float = 0.0,
    supersample=None,
) -> CineResult:
    """Many contrasts of one anatomy: the phantom is rasterised once, then the
    acquisition is ``vmap``-ed over contrasts.

    Args:
        tissue: :class:`TissueProperties` with arrays ``(n_contrasts, n_tissues)``.
        sequence: :class:`BSSFPSequence` whose leaves have shape ``(n_contrasts,)``.
        snr: ``(n_contrasts,)`` target SNRs (noise is always added).
        Other arguments as in :func:`simulate_cine`. Contrast ``c`` gets the noise
        that ``simulate_cine(jax.random.fold_in(key, c), ...)`` would draw; the
        undersampling mask (if any) is shared by all contrasts.

    Returns:
        :class:`CineResult` whose ``image`` is ``(n_contrasts, n_phases, nz, ny,
        nx)``, ``labels`` ``(n_phases, nz, ny, nx)`` and ``noise_std``
        ``(n_contrasts,)``.
    """
    snr = jnp.asarray(snr)
    phases = _check_options(
        snr,
        n_coils,
        oversample,
        tukey_alpha,
        acceleration,
        coil_combination,
        b0_std,
        bias_std,
        cardiac_phases,
    )
    n = snr.shape[0] if snr.ndim else 1
    if tissue.pd.ndim != 2 or tissue.pd.shape[0] != n:
        raise ValueError(
            f"tissue must have shape (n_contrasts={n}, n_tissues); got "
            f"{tissue.pd.shape}"
        )
    if jnp.ndim(sequence.tr) != 1 or jnp.shape(sequence.tr)[0] != n:
        raise ValueError(f"sequence leaves must have shape (n_contrasts={n},)")
    # Eager validation through the kernel checks (contrast axis first).
    tissue_signals(tissue, jax.tree_util.tree_map(lambda x: x[:, None], sequence))
    fractions, labels, myo, maps, mask = prepare_anatomy(
        key,
        subject,
        geometry,
        phases,
        n_coils,
        oversample,
        acceleration,
        center_lines,
        supersample,
        True,
    )
    # Contrast c gets exactly the noise of simulate_cine(fold_in(key, c), ...).
    keys = jax.vmap(lambda c: jax.random.fold_in(jax.random.fold_in(key, c), 0))(
        jnp.arange(n)
    )

    def one(k, t, s, r):
        return acquire_cine(
            k,
            fractions,
            myo,
            maps,
            t,
            s,
            r,
            mask,
            oversample=oversample,
            tukey_alpha=tukey_alpha,
            combination=coil_combination,
            b0_std=float(b0_std),
            bias_std=float(bias_std),
        )[:2]

    image, sigma = jax.vmap(one)(keys, tissue, sequence, snr.reshape(n))
    return CineResult(image=image.astype(jnp.float32), labels=labels, noise_std=sigma)
