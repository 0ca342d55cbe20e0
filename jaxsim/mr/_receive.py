"""The receive chain shared by every MR contrast (cine, tagged, fitted renders).

Fine-grid complex magnetization -> Cartesian k-space cropped to the target matrix
(Gibbs ringing and partial volume come from the crop) -> optional Tukey window ->
coil sensitivities -> complex Gaussian noise -> optional Cartesian undersampling
with zero filling -> coil combination -> magnitude.

SNR follows MRXCAT: every coil channel receives complex white Gaussian noise whose
real and imaginary parts each have standard deviation

    sigma = mean(|noise-free combined image| over LV myocardium) / snr,

the myocardium taken from the first frame. With one uniform coil the realised
image SNR in the myocardium is therefore ``snr``. With several coils combined by
sensitivity weighting, ``sum_c conj(s_c) y_c / sum_c |s_c|^2``, the noise per
component at a voxel is ``sigma / sqrt(sum_c |s_c|^2)``; root-sum-of-squares
combination keeps ``sigma`` per channel at high SNR. ``noise_std`` sets sigma
directly instead. Coil sensitivities are applied at the target resolution (they
are smooth on the scale of a voxel), after the k-space crop.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxsim.random import stream

from ._acquisition import MRAcquisition
from ._kspace import cartesian_mask, crop_kspace, fft2c, ifft2c, tukey_window

__all__ = ["acquire_images", "combine_coils"]


def combine_coils(coil_images, coil_maps, combination: str):
    """Root sum of squares, or sensitivity-weighted (Roemer) combination, over the
    coil axis (-4) of ``(..., C, nz, ny, nx)`` images; magnitude."""
    if combination == "rss":
        return jnp.sqrt(jnp.sum(jnp.abs(coil_images) ** 2, axis=-4))
    weights = jnp.sum(jnp.abs(coil_maps) ** 2, axis=-4)
    return jnp.abs(jnp.sum(jnp.conj(coil_maps) * coil_images, axis=-4) / weights)


def _noise_sigma(clean_coils, myo_mask, coil_maps, acq: MRAcquisition):
    if acq.noise_std is not None:
        return jnp.asarray(acq.noise_std, jnp.real(clean_coils).dtype)
    clean = combine_coils(clean_coils[0], coil_maps, acq.coil_combination)
    return jnp.sum(jnp.where(myo_mask, clean, 0.0)) / jnp.sum(myo_mask) / acq.snr


@partial(jax.jit, static_argnames=("return_coils",))
def acquire_images(
    key,
    images,
    myo_mask,
    coil_maps,
    acquisition: MRAcquisition,
    *,
    return_coils: bool = False,
):
    """Receive fine-grid magnetization images as the scanner would.

    Args:
        key: PRNG key (streams ``"mr.noise"`` and ``"mr.mask"``).
        images: ``(P, nz, ny*o, nx*o)`` complex magnetization on the refined grid
            (``o = acquisition.oversample``), one per frame.
        myo_mask: ``(nz, ny, nx)`` bool, LV myocardium at target resolution (the
            SNR reference; unused with ``noise_std``).
        coil_maps: ``(n_coils, nz, ny, nx)`` complex sensitivities.
        acquisition: the :class:`MRAcquisition`.
        return_coils: also return the complex coil images.

    Returns:
        ``(image (P, nz, ny, nx), sigma, coil_images (P, C, nz, ny, nx) or None)``;
        ``sigma`` is the noise standard deviation per channel and component (0
        without noise).
    """
    acq = acquisition
    o = acq.oversample
    ny, nx = images.shape[-2] // o, images.shape[-1] // o
    shift = (o - 1) / (2 * o)
    kspace = crop_kspace(fft2c(images), (ny, nx), shift=(shift, shift))
    if acq.tukey_alpha is not None:
        window = jnp.outer(
            tukey_window(ny, acq.tukey_alpha), tukey_window(nx, acq.tukey_alpha)
        )
        kspace = kspace * window.astype(kspace.dtype)
    single = ifft2c(kspace)  # (P, nz, ny, nx)
    clean_coils = single[:, None] * coil_maps[None]  # (P, C, nz, ny, nx)
    if acq.with_noise:
        sigma = _noise_sigma(clean_coils, myo_mask, coil_maps, acq)
        dtype = jnp.real(clean_coils).dtype
        noise = jax.random.normal(
            stream(key, "mr.noise"), (2, *clean_coils.shape), dtype
        )
        noise = sigma * jax.lax.complex(noise[0], noise[1])
    else:
        sigma = jnp.zeros((), jnp.real(single).dtype)
        noise = None
    if acq.acceleration is None:
        # White Gaussian noise is white with the same sigma in either domain (the
        # FFT is orthonormal), so without undersampling it is added to the coil
        # images directly and the per-coil FFTs are skipped.
        coils = clean_coils if noise is None else clean_coils + noise
    else:
        mask = cartesian_mask(
            stream(key, "mr.mask"),
            ny,
            acq.acceleration,
            center_lines=acq.center_lines,
        )
        kspace = fft2c(clean_coils) if noise is None else fft2c(clean_coils) + noise
        coils = ifft2c(kspace * mask[:, None])
    image = combine_coils(coils, coil_maps[None], acq.coil_combination)
    return image, sigma, (coils if return_coils else None)
