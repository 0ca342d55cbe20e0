"""Cartesian k-space: centred orthonormal FFTs, cropping, windows and sampling masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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


def tukey_window(n: int, alpha: float) -> np.ndarray:
    """Tukey (tapered cosine) window of length ``n``; ``alpha`` in [0, 1] tapers.

    ``alpha = 0`` is rectangular, ``alpha = 1`` a Hann window.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}")
    x = np.linspace(0.0, 1.0, n)
    w = np.ones(n)
    if alpha > 0:
        edge = alpha / 2
        lo, hi = x < edge, x > 1 - edge
        w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / edge - 1)))
        w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / edge + 1)))
    return w


def cartesian_mask(
    key: jax.Array, n_lines: int, acceleration: float, *, center_lines: int = 16
) -> jax.Array:
    """Random Cartesian phase-encoding mask with a fully sampled centre.

    Args:
        key: PRNG key.
        n_lines: number of phase-encoding lines (the y size).
        acceleration: undersampling factor >= 1 (1 keeps every line).
        center_lines: lines kept around k = 0 (clipped to ``n_lines``).

    Returns:
        ``(n_lines,)`` bool mask with ``round(n_lines / acceleration)`` lines (at
        least the centre).
    """
    if not acceleration >= 1.0:
        raise ValueError(f"acceleration must be >= 1; got {acceleration}")
    n_keep = max(int(round(n_lines / acceleration)), min(center_lines, n_lines))
    centre = np.zeros(n_lines, bool)
    c0 = n_lines // 2 - min(center_lines, n_lines) // 2
    centre[c0 : c0 + min(center_lines, n_lines)] = True
    scores = jax.random.uniform(key, (n_lines,))
    scores = jnp.where(jnp.asarray(centre), 2.0, scores)
    threshold = jnp.sort(scores)[n_lines - n_keep]
    return scores >= threshold
