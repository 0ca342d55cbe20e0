"""Receive-coil sensitivities of circular loops by the Biot-Savart law (MRXCAT's model).

Coil elements are circular wire loops whose centres sit on rings (a cylinder around
the body axis, world z) and whose normals point at the axis, as in MRXCAT. The
sensitivity of a loop is the transverse part of the field it makes per unit current,
``Bx + i By``, integrated numerically over straight wire segments.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["coil_layout", "loop_field", "coil_sensitivities"]


def coil_layout(
    n_coils: int,
    *,
    ring_radius: float = 250.0,
    coils_per_ring: int = 8,
    center=(0.0, 0.0, 0.0),
):
    """Centres, inward normals and loop radius of an MRXCAT-style coil array.

    Coils fill rings of at most ``coils_per_ring`` elements, equally spaced in angle
    around world z; the loop radius is half the arc between neighbours on the
    fullest ring (so neighbouring loops touch) and rings are stacked along z one
    loop diameter apart, centred on ``center``.

    Args:
        n_coils: number of elements, >= 1.
        ring_radius: distance of the loop centres from the axis, mm.
        coils_per_ring: maximum elements per ring, >= 1.
        center: world (x, y, z) mm of the array's centre.

    Returns:
        ``(centres (n, 3), normals (n, 3), loop_radius)`` as NumPy float64.
    """
    if int(n_coils) != n_coils or n_coils < 1:
        raise ValueError(f"n_coils must be a positive integer; got {n_coils}")
    if int(coils_per_ring) != coils_per_ring or coils_per_ring < 1:
        raise ValueError(
            f"coils_per_ring must be a positive integer; got {coils_per_ring}"
        )
    if not ring_radius > 0:
        raise ValueError(f"ring_radius must be > 0 mm; got {ring_radius}")
    n_rings = math.ceil(n_coils / coils_per_ring)
    per_ring = [n_coils // n_rings + (r < n_coils % n_rings) for r in range(n_rings)]
    loop_radius = (
        ring_radius * math.pi / max(per_ring)
        if max(per_ring) > 1
        else (0.5 * ring_radius)
    )
    loop_radius = min(loop_radius, 0.5 * ring_radius)
    centres, normals = [], []
    for r, n in enumerate(per_ring):
        z = (r - (n_rings - 1) / 2) * 2 * loop_radius
        for c in range(n):
            # Start anterior (+y) and go round; offset alternate rings by half a step.
            phi = math.pi / 2 + 2 * math.pi * (c + 0.5 * (r % 2)) / n
            direction = np.array([math.cos(phi), math.sin(phi), 0.0])
            centres.append(
                np.asarray(center, float)
                + ring_radius * direction
                + np.array([0.0, 0.0, z])
            )
            normals.append(-direction)
    return np.array(centres), np.array(normals), loop_radius


def loop_field(points, centre, normal, radius, n_segments: int = 64):
    """Magnetic field of a unit-current circular loop (units of mu0 I / 4 pi per mm).

    Args:
        points: ``(..., 3)`` world mm where the field is evaluated.
        centre, normal: ``(3,)`` loop centre (mm) and unit normal.
        radius: loop radius, mm.
        n_segments: straight segments the loop is split into (midpoint rule).

    Returns:
        ``(..., 3)`` field vectors; on the axis at distance ``h`` the exact value is
        ``2 pi R^2 / (R^2 + h^2)^(3/2)`` along the normal.
    """
    normal = jnp.asarray(normal, points.dtype)
    normal = normal / jnp.linalg.norm(normal)
    helper = jnp.where(
        jnp.abs(normal[2]) < 0.9, jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0])
    ).astype(points.dtype)
    u = jnp.cross(normal, helper)
    u = u / jnp.linalg.norm(u)
    v = jnp.cross(normal, u)
    angles = (
        2 * jnp.pi * (jnp.arange(n_segments, dtype=points.dtype) + 0.5) / n_segments
    )
    dphi = 2 * jnp.pi / n_segments
    centre = jnp.asarray(centre, points.dtype)

    def segment(field, phi):
        position = centre + radius * (jnp.cos(phi) * u + jnp.sin(phi) * v)
        dl = radius * dphi * (-jnp.sin(phi) * u + jnp.cos(phi) * v)
        r = points - position
        dist3 = jnp.sum(r * r, axis=-1, keepdims=True) ** 1.5
        return field + jnp.cross(dl, r) / dist3, None

    field, _ = jax.lax.scan(segment, jnp.zeros_like(points), angles)
    return field


@partial(jax.jit, static_argnames=("n_segments",))
def _loop_maps(points, centres, normals, radius, n_segments):
    centres, normals = centres.astype(points.dtype), normals.astype(points.dtype)

    def one(centre, normal):
        b = loop_field(points, centre, normal, radius, n_segments)
        return jax.lax.complex(b[..., 0], b[..., 1])

    return jax.lax.map(lambda cn: one(*cn), (centres, normals))


def _linear_weights(n: int, m: int) -> np.ndarray:
    """``(n, m)`` weights of linear interpolation from ``m`` lattice points spanning
    indices ``[0, n - 1]`` to the ``n`` integer indices."""
    x = np.linspace(0.0, m - 1.0, n)
    lo = np.minimum(np.floor(x).astype(int), m - 2)
    frac = x - lo
    w = np.zeros((n, m))
    w[np.arange(n), lo] = 1.0 - frac
    w[np.arange(n), lo + 1] += frac
    return w


def _interpolate(coarse, shape):
    """Bilinear interpolation of ``(C, nz, my, mx)`` maps onto ``(C, nz, ny, nx)``,
    as two small matrix products (bilinear interpolation is separable)."""
    _, _, my, mx = coarse.shape
    ny, nx = shape
    dtype = jnp.real(coarse).dtype
    wy = jnp.asarray(_linear_weights(ny, my), dtype)
    wx = jnp.asarray(_linear_weights(nx, mx), dtype)
    return jnp.einsum("yi,czij,xj->czyx", wy, coarse, wx.astype(coarse.dtype))


def coil_sensitivities(
    geometry,
    n_coils: int,
    *,
    ring_radius: float = 250.0,
    coils_per_ring: int = 8,
    center=None,
    n_segments: int = 64,
    grid_step: float = 4.0,
    lattice: tuple[int, int] | None = None,
):
    """Complex receive sensitivities of an MRXCAT-style loop array on a grid.

    Args:
        geometry: :class:`~jaxsim.geometry.ImageGeometry` of shape ``(nz, ny, nx)``.
        n_coils: number of elements; 1 gives a uniform coil (sensitivity 1).
        ring_radius: distance of loop centres from the body axis, mm.
        coils_per_ring: elements per ring.
        center: world (x, y, z) of the array; default ``(0, 0, z of the grid centre)``
            (the body axis is world z through the origin).
        n_segments: wire segments per loop.
        grid_step: in-plane spacing (mm) of the lattice on which the field is
            evaluated before linear interpolation to the voxels.
        lattice: static ``(my, mx)`` lattice size, overriding ``grid_step``; needed
            for a grid whose spacing is traced (otherwise the field is evaluated at
            every voxel).

    Returns:
        ``(n_coils, nz, ny, nx)`` complex maps, normalised so that the root sum of
        squares over coils has mean 1 over the grid.
    """
    if n_coils == 1:
        return jnp.ones(
            (1, *geometry.shape), jnp.result_type(geometry.affine.dtype, jnp.complex64)
        )
    dtype = geometry.affine.dtype
    if center is None:  # on the body axis at the grid's height (traceable)
        center = jnp.zeros(3, dtype).at[2].set(geometry.center[2])
    centres, normals, loop_radius = coil_layout(
        n_coils, ring_radius=ring_radius, coils_per_ring=coils_per_ring
    )
    centres = jnp.asarray(centres, dtype) + jnp.asarray(center, dtype)
    # The field varies on the scale of the loop radius: evaluate it on a coarse
    # in-plane lattice (<= grid_step mm) and interpolate linearly to every voxel.
    # The lattice size must be static: it comes from the planned spacing; a grid
    # whose spacing is only known traced is evaluated at every voxel.
    nz, ny, nx = geometry.shape
    spacing = geometry.static_spacing()
    if lattice is not None:
        my, mx = (
            min(n, max(2, int(m))) for n, m in zip((ny, nx), lattice, strict=True)
        )
    elif spacing is None:
        my, mx = ny, nx
    else:
        my = min(ny, max(2, math.ceil((ny - 1) * spacing[1] / grid_step) + 1))
        mx = min(nx, max(2, math.ceil((nx - 1) * spacing[2] / grid_step) + 1))
    jj, ii = np.linspace(0, ny - 1, my), np.linspace(0, nx - 1, mx)
    kk = np.arange(nz, dtype=float)
    index = np.stack(np.meshgrid(ii, jj, kk, indexing="xy"), axis=-1)
    points = geometry.world_coordinates(np.moveaxis(index, 2, 0))  # (nz, my, mx, 3)
    maps = _loop_maps(points, centres, jnp.asarray(normals), loop_radius, n_segments)
    if (my, mx) != (ny, nx):
        maps = _interpolate(maps, (ny, nx))
    rss = jnp.sqrt(jnp.sum(jnp.abs(maps) ** 2, axis=0))
    return maps / jnp.mean(rss)
