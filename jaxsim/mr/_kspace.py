"""Cartesian k-space: centred orthonormal FFTs, cropping, windows and sampling masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels.checks import check_range

__all__ = [
    "fft2c",
    "ifft2c",
    "crop_kspace",
    "tukey_window",
    "cartesian_mask",
]


def fft2c(image: jax.Array) -> jax.Array:
    """Centred, orthonormal 2D FFT over the last two axes (y, x)."""
    axes = (-2, -1)
    shifted = jnp.fft.ifftshift(image, axes=axes)
    return jnp.fft.fftshift(jnp.fft.fft2(shifted, norm="ortho"), axes=axes)


def ifft2c(kspace: jax.Array) -> jax.Array:
    """Inverse of :func:`fft2c`."""
    axes = (-2, -1)
    shifted = jnp.fft.ifftshift(kspace, axes=axes)
    return jnp.fft.fftshift(jnp.fft.ifft2(shifted, norm="ortho"), axes=axes)


def crop_kspace(kspace: jax.Array, shape: tuple[int, int], *, shift=(0.0, 0.0)):
    """Central ``shape`` of a centred k-space, rescaled to keep image intensities.

    Cropping an ``N``-point spectrum to ``M`` points and transforming back with an
    orthonormal FFT scales intensities by ``sqrt(N/M)`` per axis; the result is
    multiplied by ``sqrt(M/N)`` per axis to undo that. ``shift`` (in output pixels,
    ``(dy, dx)``) applies a linear phase so the output samples sit ``shift`` pixels
    further along each axis (used to align a refined grid with its coarse grid).

    Args:
        kspace: ``(..., N_y, N_x)`` centred k-space (from :func:`fft2c`).
        shape: ``(M_y, M_x)`` with ``M <= N``.
        shift: sub-pixel shift of the output grid, output pixels.

    Returns:
        ``(..., M_y, M_x)`` centred k-space.
    """
    ny, nx = kspace.shape[-2:]
    my, mx = shape
    if my > ny or mx > nx:
        raise ValueError(f"shape {shape} must not exceed the k-space size {(ny, nx)}")
    y0, x0 = ny // 2 - my // 2, nx // 2 - mx // 2
    out = kspace[..., y0 : y0 + my, x0 : x0 + mx] * np.sqrt(my * mx / (ny * nx))
    ky = jnp.arange(my) - my // 2
    kx = jnp.arange(mx) - mx // 2
    phase = 2 * jnp.pi * (ky[:, None] * shift[0] / my + kx[None, :] * shift[1] / mx)
    return out * jnp.exp(1j * phase).astype(out.dtype)


def tukey_window(n: int, alpha) -> jax.Array:
    """Tukey (tapered cosine) window of length ``n``; ``alpha`` in [0, 1] tapers.

    ``alpha = 0`` is rectangular, ``alpha = 1`` a Hann window. ``alpha`` may be
    traced (one compiled window serves every taper); ``n`` is static.
    """
    check_range("alpha", alpha, low=0.0, high=1.0, low_inclusive=True)
    alpha = jnp.asarray(alpha)
    dtype = jnp.result_type(float, alpha)
    x = jnp.linspace(0.0, 1.0, n, dtype=dtype)
    edge = alpha / 2
    safe = jnp.where(edge > 0, edge, 1.0)  # no 0/0 in the unused branches
    lo = 0.5 * (1 + jnp.cos(jnp.pi * (x / safe - 1)))
    hi = 0.5 * (1 + jnp.cos(jnp.pi * ((x - 1) / safe + 1)))
    return jnp.where(x < edge, lo, jnp.where(x > 1 - edge, hi, 1.0))


def cartesian_mask(
    key: jax.Array, n_lines: int, acceleration, *, center_lines: int = 16
) -> jax.Array:
    """Random Cartesian phase-encoding mask with a fully sampled centre.

    Args:
        key: PRNG key.
        n_lines: number of phase-encoding lines (the y size, static).
        acceleration: undersampling factor >= 1 (1 keeps every line); may be
            traced.
        center_lines: lines kept around k = 0 (clipped to ``n_lines``, static).

    Returns:
        ``(n_lines,)`` bool mask with ``max(round(n_lines / acceleration),
        center lines)`` lines.
    """
    check_range("acceleration", acceleration, low=1.0, low_inclusive=True)
    n_centre = min(int(center_lines), n_lines)
    n_keep = jnp.maximum(jnp.round(n_lines / jnp.asarray(acceleration)), n_centre)
    n_keep = jnp.clip(n_keep, 1, n_lines).astype(jnp.int32)
    centre = np.zeros(n_lines, bool)
    c0 = n_lines // 2 - n_centre // 2
    centre[c0 : c0 + n_centre] = True
    scores = jax.random.uniform(key, (n_lines,))
    scores = jnp.where(jnp.asarray(centre), 2.0, scores)
    threshold = jnp.sort(scores)[n_lines - n_keep]
    return scores >= threshold
