"""Random smooth fields over an image grid: B0 off-resonance and receive bias."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.random import stream

__all__ = ["smooth_field", "b0_map", "apply_bias"]


def smooth_field(key, shape, std, dtype=None):
    """A random smooth (degree-2 polynomial) field over a grid, zero mean.

    The field is ``std * sqrt(3) * sum_b c_b basis_b`` over the eight monomials
    ``x, y, z, xy, x^2 - 1/3, y^2 - 1/3, xz, yz`` of coordinates spanning [-1, 1],
    with ``c_b ~ N(0, 1/8)``: its spatial standard deviation is about ``std``.

    Args:
        key: PRNG key.
        shape: ``(nz, ny, nx)`` static grid shape.
        std: scalar strength (may be traced; 0 gives a zero field).
        dtype: float dtype (default: JAX's default float).

    Returns:
        ``(nz, ny, nx)`` field in the units of ``std``.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    nz, ny, nx = shape
    z, y, x = jnp.meshgrid(
        jnp.linspace(-1, 1, nz, dtype=dtype),
        jnp.linspace(-1, 1, ny, dtype=dtype),
        jnp.linspace(-1, 1, nx, dtype=dtype),
        indexing="ij",
    )
    basis = jnp.stack([x, y, z, x * y, x * x - 1 / 3, y * y - 1 / 3, x * z, y * z])
    coeffs = jax.random.normal(key, (basis.shape[0],), dtype) / np.sqrt(basis.shape[0])
    return std * jnp.tensordot(coeffs, basis, axes=1) * np.sqrt(3.0)


def b0_map(key, shape, acquisition, dtype=None):
    """The acquisition's random B0 field map ``(nz, ny, nx)`` in Hz (stream
    ``"mr.b0"``), or ``None`` when ``acquisition.b0_std`` is ``None``."""
    if acquisition.b0_std is None:
        return None
    return smooth_field(stream(key, "mr.b0"), shape, acquisition.b0_std, dtype)


def apply_bias(key, images, acquisition):
    """``images (..., nz, ny, nx)`` times the acquisition's random smooth receive
    bias ``exp(field)`` (stream ``"mr.bias"``); unchanged without ``bias_std``."""
    if acquisition.bias_std is None:
        return images
    shape, dtype = images.shape[-3:], jnp.real(images).dtype
    bias = smooth_field(stream(key, "mr.bias"), shape, acquisition.bias_std, dtype)
    return images * jnp.exp(bias)
