"""Float64 NumPy references for the cone-beam tests: ellipsoids and line integrals."""

from __future__ import annotations

import numpy as np


def rotation(yaw: float, pitch: float) -> np.ndarray:
    """Rotation about z by ``yaw`` then about the new y by ``pitch`` (3x3)."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cy, sy = np.cos(pitch), np.sin(pitch)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ ry


def voxel_centres(shape, spacing, offset):
    """World ``x, y, z`` (mm) of voxel centres, each ``(nz, ny, nx)``."""
    nz, ny, nx = shape
    sz, sy, sx = spacing
    ox, oy, oz = offset
    z = (np.arange(nz) - (nz - 1) / 2) * sz + oz
    y = (np.arange(ny) - (ny - 1) / 2) * sy + oy
    x = (np.arange(nx) - (nx - 1) / 2) * sx + ox
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return xx, yy, zz


def ellipsoid_volume(shape, spacing, offset, centre, axes, rot, supersample=4):
    """Partial-volume fraction ``(nz, ny, nx)`` of an ellipsoid, float64."""
    xx, yy, zz = voxel_centres(shape, spacing, offset)
    sz, sy, sx = spacing
    out = np.zeros(shape)
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    for dz in sub:
        for dy in sub:
            for dx in sub:
                p = np.stack([xx + dx * sx, yy + dy * sy, zz + dz * sz], -1) - centre
                q = p @ rot / np.asarray(axes)
                out += (q**2).sum(-1) <= 1.0
    return out / supersample**3


def ellipsoid_line_integrals(sources, targets, centre, axes, rot):
    """Chord lengths (mm) of the lines ``sources -> targets`` through an ellipsoid."""
    d = targets - sources
    q = (sources - centre) @ rot / np.asarray(axes)
    e = d @ rot / np.asarray(axes)
    a = (e**2).sum(-1)
    b = (q * e).sum(-1)
    c = (q**2).sum(-1) - 1.0
    disc = np.maximum(b**2 - a * c, 0.0)
    return 2.0 * np.sqrt(disc) / a * np.linalg.norm(d, axis=-1)


def ray_endpoints(dso, dsd, n_u, n_v, du, dv, angles, offset_u=0.0, offset_v=0.0):
    """Source ``(A, 1, 1, 3)`` and detector-pixel ``(A, n_v, n_u, 3)`` positions."""
    angles = np.asarray(angles, np.float64)
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    u = (np.arange(n_u) - (n_u - 1) / 2) * du + offset_u
    v = (np.arange(n_v) - (n_v - 1) / 2) * dv + offset_v
    vv, uu = np.meshgrid(v, u, indexing="ij")
    src = np.stack([dso * c, dso * s, 0 * c], -1)
    det = np.stack(
        [-(dsd - dso) * c - uu * s, -(dsd - dso) * s + uu * c, vv + 0 * c], -1
    )
    return src, det
