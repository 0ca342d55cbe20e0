"""Surfaces of binary masks, in the two conventions of the surface-distance metrics.

``"deepmind"`` (google-deepmind/surface-distance): the surface lives on the grid
of voxel *corners*. A corner is a surface element ("surfel") when the ``2**ndim``
voxels around it are neither all inside nor all outside the mask. Its weight is
the area (3D, mm²) or length (2D, mm) of the marching-cubes (marching-squares)
surface inside the cell of those voxels, with vertices at the midpoints between
voxel centres. The table of areas per neighbourhood code is generated here:

* each face of the cell contributes segments joining the midpoints of its edges
  whose two corners differ; a face with two diagonal inside corners cuts each of
  them off separately;
* a cell with more than half of its corners inside uses the surface of its
  complement (marching cubes' complement symmetry, so ambiguous faces are
  resolved towards the minority corners);
* the segments close into polygons, each triangulated as a fan from the vertex
  that gives the largest total area at unit spacing; anisotropic spacing scales
  each triangle's normal by ``(s1 s2, s0 s2, s0 s1)``.

This reproduces surface-distance's lookup table for all 256 codes (checked at
three spacings, among them an anisotropic one). ``"monai"``: the surface is the
set of mask voxels with at least one face neighbour outside (the mask minus its
erosion by the cross-shaped structuring element, voxels on the array's border
included), every voxel weighted 1.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

__all__ = ["corner_surfels", "boundary_voxels"]


def _offsets(ndim: int) -> list[tuple[int, ...]]:
    return list(itertools.product((0, 1), repeat=ndim))


def _faces(ndim: int) -> list[list[tuple[int, ...]]]:
    """The square faces of the unit cell, corners in cyclic order."""
    cycle = [(0, 0), (0, 1), (1, 1), (1, 0)]
    if ndim == 2:
        return [cycle]
    faces = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for side in (0, 1):
            face = []
            for p, q in cycle:
                corner = [0, 0, 0]
                corner[axis], corner[others[0]], corner[others[1]] = side, p, q
                face.append(tuple(corner))
            faces.append(face)
    return faces


def _segments(face, inside) -> list[tuple]:
    """Segments (pairs of cut cell edges) of the surface on one face."""
    edges = [(face[i], face[(i + 1) % 4]) for i in range(4)]
    cut = [i for i, (a, b) in enumerate(edges) if inside[a] != inside[b]]
    key = [tuple(sorted(e)) for e in edges]
    if len(cut) == 2:
        return [(key[cut[0]], key[cut[1]])]
    if len(cut) == 4:  # diagonal corners: cut each inside corner off
        return [(key[i - 1], key[i]) for i in range(4) if inside[face[i]]]
    return []


def _polygons(code: int, ndim: int) -> list[np.ndarray]:
    """Closed polygons (vertices at edge midpoints) of a neighbourhood code."""
    offsets = _offsets(ndim)
    if bin(code).count("1") > len(offsets) // 2:
        code = (1 << len(offsets)) - 1 - code
    inside = {o: bool(code >> k & 1) for k, o in enumerate(offsets)}
    links: dict = {}
    for face in _faces(ndim):
        for a, b in _segments(face, inside):
            links.setdefault(a, []).append(b)
            links.setdefault(b, []).append(a)
    polygons, seen = [], set()
    for start in links:
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [e for e in links[cur] if e != prev and e not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            loop.append(cur)
            seen.add(cur)
        polygons.append(np.array([np.add(*e) / 2.0 for e in loop]))
    return polygons


def _fan(poly: np.ndarray, apex: int) -> np.ndarray:
    p = np.roll(poly, -apex, axis=0)
    return np.cross(p[1:-1] - p[0], p[2:] - p[0]) / 2.0


@functools.cache
def _normals(ndim: int) -> tuple[np.ndarray, ...]:
    """Per code: triangle normals (3D, area-scaled) or segment vectors (2D)."""
    out = []
    for code in range(1 << (1 << ndim)):
        parts = []
        for poly in _polygons(code, ndim):
            if ndim == 2:
                # an open chain of two vertices: one segment per polygon
                parts.append(poly[1:] - poly[:-1])
                continue
            fans = [_fan(poly, a) for a in range(len(poly))]
            areas = [np.linalg.norm(f, axis=1).sum() for f in fans]
            parts.append(fans[int(np.argmax(areas))])
        out.append(np.concatenate(parts) if parts else np.zeros((0, ndim)))
    return tuple(out)


@functools.cache
def surfel_weights(spacing: tuple[float, ...]) -> np.ndarray:
    """Area (3D, mm²) or length (2D, mm) of the surface per neighbourhood code."""
    ndim = len(spacing)
    s = np.asarray(spacing, np.float64)
    if ndim == 3:
        scale = np.array([s[1] * s[2], s[0] * s[2], s[0] * s[1]])
    else:
        scale = s
    return np.array([np.linalg.norm(n * scale, axis=1).sum() for n in _normals(ndim)])


def corner_surfels(mask: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Surfels of a mask on the corner grid.

    Args:
        mask: boolean ``(n0, n1[, n2])``, already padded with one background voxel
            on every side (so every corner of the object is interior).
        spacing: voxel size in mm per axis.

    Returns:
        ``(surface, weight)``: boolean corner-grid array of shape ``n - 1`` per
        axis (corner ``c`` sits between voxels ``c`` and ``c + 1``) marking surfels,
        and the float64 area/length of each corner (0 off the surface).
    """
    ndim = mask.ndim
    code = np.zeros(tuple(n - 1 for n in mask.shape), np.int32)
    for k, off in enumerate(_offsets(ndim)):
        view = tuple(slice(o, o + n - 1) for o, n in zip(off, mask.shape, strict=True))
        code |= mask[view].astype(np.int32) << k
    full = (1 << (1 << ndim)) - 1
    surface = (code != 0) & (code != full)
    weight = surfel_weights(tuple(float(s) for s in spacing))[code]
    return surface, np.where(surface, weight, 0.0)


def boundary_voxels(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a face neighbour outside (``mask`` padded by one voxel)."""
    eroded = mask.copy()
    for axis in range(mask.ndim):
        for shift in (1, -1):
            eroded &= np.roll(mask, shift, axis=axis)
    return mask & ~eroded
