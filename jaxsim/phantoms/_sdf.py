"""Smooth implicit primitives: approximate signed distances in mm (negative inside).

Only the zero level set of each function is exact; near it the gradient has unit
length, which is what soft occupancy ``sigmoid(-d / w)`` needs (its volume is then the
shape's volume to second order in ``w``). Every function is safe to differentiate at
every point (no division by zero at centres or on axes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_TINY = (
    1e-20  # keeps (r)sqrt finite and differentiable at 0 (float32 normals reach 1e-38)
)


def safe_norm(*components):
    """Euclidean norm of broadcastable components, with a finite gradient at 0."""
    return jnp.sqrt(sum(c * c for c in components) + _TINY)


def ellipsoid(x, y, z, rx, ry, rz):
    """Approximate signed distance to an axis-aligned ellipsoid centred at the origin.

    Uses ``(k0^2 - 1) / (2 k1)`` with ``k0 = |p / r|`` and ``k1 = |p / r^2|``: zero
    exactly on the surface with unit gradient there, and only one reciprocal square
    root per point (this is the inner loop of the rasteriser).
    """
    # scalar reciprocals first: the per-point work is multiplications only
    ix, iy, iz = 1.0 / rx, 1.0 / ry, 1.0 / rz
    u, v, w = x * ix, y * iy, z * iz
    k0_sq = u * u + v * v + w * w
    inv_k1 = jax.lax.rsqrt((u * ix) ** 2 + (v * iy) ** 2 + (w * iz) ** 2 + _TINY)
    return 0.5 * (k0_sq - 1.0) * inv_k1


def ellipse(x, y, rx, ry):
    """Approximate 2D signed distance to an axis-aligned ellipse (a cylinder in 3D)."""
    ix, iy = 1.0 / rx, 1.0 / ry
    u, v = x * ix, y * iy
    inv_k1 = jax.lax.rsqrt((u * ix) ** 2 + (v * iy) ** 2 + _TINY)
    return 0.5 * (u * u + v * v - 1.0) * inv_k1


def capsule(p, a, b, radius):
    """Distance to the segment ``a``–``b`` minus ``radius``.

    Args:
        p: tuple ``(x, y, z)`` of broadcastable arrays (mm).
        a, b: ``(3,)`` end points (mm).
        radius: scalar radius (mm).
    """
    x, y, z = p
    ba = b - a
    pax, pay, paz = x - a[0], y - a[1], z - a[2]
    inv_len_sq = 1.0 / jnp.sum(ba * ba)
    t = (pax * ba[0] + pay * ba[1] + paz * ba[2]) * inv_len_sq
    t = jnp.clip(t, 0.0, 1.0)
    return safe_norm(pax - t * ba[0], pay - t * ba[1], paz - t * ba[2]) - radius


def intersect(*distances):
    """Hard intersection (``max``); differentiable almost everywhere."""
    out = distances[0]
    for d in distances[1:]:
        out = jnp.maximum(out, d)
    return out


def union(*distances):
    """Hard union (``min``)."""
    out = distances[0]
    for d in distances[1:]:
        out = jnp.minimum(out, d)
    return out


def rotate(p, rot, origin):
    """Express world points in a local frame.

    Args:
        p: tuple ``(x, y, z)`` of broadcastable world arrays (mm).
        rot: ``(3, 3)`` matrix whose *columns* are the local axes in world coordinates.
        origin: ``(3,)`` world position of the local origin (mm).

    Returns:
        Tuple of local coordinates ``(q1, q2, q3)`` (mm).
    """
    dx, dy, dz = p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]
    return tuple(dx * rot[0, c] + dy * rot[1, c] + dz * rot[2, c] for c in range(3))
