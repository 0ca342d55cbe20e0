"""Exact Euclidean distance transforms in JAX (separable, spacing-aware).

The squared Euclidean distance to the nearest feature voxel separates over the axes
(Saito and Toriwaki 1994; Felzenszwalb and Huttenlocher 2012): with ``f`` the
result of the passes over the earlier axes, one pass along an axis of spacing ``s``
computes ``g[i] = min_j f[j] + s**2 (i - j)**2`` on every line. Here each pass is a
scan over the offsets ``d = i - j`` (``O(n)`` steps, each a vectorised minimum over
the whole array), so the work is ``O(N n)`` per axis with ``O(N)`` memory and static
shapes: it runs under ``jit`` and ``vmap``. It is exact: every offset is visited.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["squared_distance_transform", "signed_distance_map"]


def _min_plus_pass(f: jax.Array, axis: int, step2: jax.Array) -> jax.Array:
    """``g[i] = min_j f[j] + step2 * (i - j)**2`` along ``axis``."""
    f = jnp.moveaxis(f, axis, -1)
    n = f.shape[-1]
    if n == 1:
        return jnp.moveaxis(f, -1, axis)
    idx = jnp.arange(n)
    inf = jnp.asarray(jnp.inf, f.dtype)

    def body(g, d):
        cost = step2 * (d * d).astype(f.dtype)
        # j = i - d (source before i) and j = i + d (source after i); rolled
        # values that wrapped around the line are masked out.
        before = jnp.where(idx >= d, jnp.roll(f, d, axis=-1), inf)
        after = jnp.where(idx < n - d, jnp.roll(f, -d, axis=-1), inf)
        return jnp.minimum(g, jnp.minimum(before, after) + cost), None

    g, _ = jax.lax.scan(body, f, jnp.arange(1, n))
    return jnp.moveaxis(g, -1, axis)


def squared_distance_transform(features, spacing) -> jax.Array:
    """Squared Euclidean distance (mm²) from every voxel to the nearest feature voxel.

    Distances are between voxel centres, with ``spacing`` in the array's axis order,
    exactly as ``scipy.ndimage.distance_transform_edt(~features, sampling=spacing)**2``.

    Args:
        features: boolean array ``(..., *spatial)``; the last ``len(spacing)`` axes
            are spatial, leading axes are a batch (each item transformed alone).
        spacing: voxel size in mm per spatial axis (static tuple of floats > 0).

    Returns:
        Float array of ``features``' shape (default float dtype): 0 on feature
        voxels, ``inf`` everywhere in an item that has no feature voxel.

    Example:
        >>> squared_distance_transform(jnp.array([True, False, False]), (2.0,))
        Array([ 0.,  4., 16.], dtype=float32)
    """
    spacing = tuple(float(s) for s in spacing)
    if jnp.ndim(features) < len(spacing):
        raise ValueError(
            f"features must have at least len(spacing)={len(spacing)} axes; got "
            f"shape {jnp.shape(features)}"
        )
    return _squared_distance_transform(features, spacing)


@functools.partial(jax.jit, static_argnames="spacing")
def _squared_distance_transform(features, spacing):
    features = jnp.asarray(features, bool)
    ndim = len(spacing)
    dtype = jnp.result_type(float)
    g = jnp.where(features, jnp.zeros((), dtype), jnp.asarray(jnp.inf, dtype))
    for k, s in enumerate(spacing):
        axis = features.ndim - ndim + k
        g = _min_plus_pass(g, axis, jnp.asarray(float(s) ** 2, dtype))
    return g


def signed_distance_map(mask, spacing) -> jax.Array:
    """Signed normalised Euclidean distance map of a binary mask (seed 003's phi).

    Inside the mask: the distance (mm) from each voxel centre to the nearest voxel
    centre outside, divided by its maximum over the mask, so values lie in (0, 1]
    (1 on the innermost voxels, ``min(spacing)/max`` on the boundary layer).
    Outside: minus the distance to the nearest mask voxel divided by its maximum
    over the outside, in [-1, 0). The map is undefined for an empty mask (no
    inside to measure from) and for a mask that fills its array (no outside): both
    get 0 everywhere.

    Args:
        mask: boolean ``(..., *spatial)``; leading axes are a batch.
        spacing: voxel size in mm per spatial axis (static).

    Returns:
        Float array of ``mask``'s shape.
    """
    spacing = tuple(float(s) for s in spacing)
    if jnp.ndim(mask) < len(spacing):
        raise ValueError(
            f"mask must have at least len(spacing)={len(spacing)} axes; got shape "
            f"{jnp.shape(mask)}"
        )
    return _signed_distance_map(mask, spacing)


@functools.partial(jax.jit, static_argnames="spacing")
def _signed_distance_map(mask, spacing):
    mask = jnp.asarray(mask, bool)
    ndim = len(spacing)
    axes = tuple(range(mask.ndim - ndim, mask.ndim))
    d_in = jnp.sqrt(_squared_distance_transform(~mask, spacing))
    d_out = jnp.sqrt(_squared_distance_transform(mask, spacing))
    # Items without an outside (or without an inside) have infinite distances.
    d_in = jnp.where(jnp.isfinite(d_in) & mask, d_in, 0.0)
    d_out = jnp.where(jnp.isfinite(d_out) & ~mask, d_out, 0.0)
    max_in = jnp.max(d_in, axis=axes, keepdims=True)
    max_out = jnp.max(d_out, axis=axes, keepdims=True)
    phi_in = d_in / jnp.where(max_in > 0, max_in, 1.0)
    phi_out = d_out / jnp.where(max_out > 0, max_out, 1.0)
    return jnp.where(mask, phi_in, -phi_out)
