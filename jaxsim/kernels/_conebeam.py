"""Matched cone-beam projector pair: Joseph forward projection and its exact adjoint.

Joseph's method: each ray steps through the planes of the grid perpendicular to its
dominant in-plane axis (x or y), samples the volume there by bilinear interpolation in
the plane, and sums the samples times the ray length between planes. Outside the grid
the volume is zero.

Because the detector's v axis is parallel to the rotation axis, all rays that hit one
detector column share the same line in the xy plane: they cross each plane at the same
in-plane point. So the in-plane interpolation is done once per (column, plane) on whole
z-profiles (contiguous rows), and only the linear interpolation along z is per ray.
Each view sweeps its planes in small blocks so that a block's gathers work in cache.

The backprojector is the projector's exact transpose, written out step by step (each
gather becomes a scatter-add with the same indices and weights), so
``<A x, y> = <x, A^T y>`` holds to float rounding. The projector maps over views in
chunks, the backprojector scans over views into one accumulator, so memory stays
bounded. The differentiable operators built on these two implementations (and their
public entry points) live in ``_conebeam_ops``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._conebeam_geometry import ConeBeamGeometry, VolumeGeometry

# Elements of the largest per-chunk intermediate (views x columns x planes x rows).
_CHUNK_ELEMENTS = 1 << 20
# Elements of one block of interpolated profiles (planes x columns x L): ~1 MiB of
# float32, so a block's gathers work in cache.
_BLOCK_ELEMENTS = 1 << 18


def detector_coordinates(geom: ConeBeamGeometry, dtype) -> tuple[jax.Array, jax.Array]:
    """Centres of the detector columns ``(n_u,)`` and rows ``(n_v,)`` in mm."""
    iu = jnp.arange(geom.n_u, dtype=dtype) - (geom.n_u - 1) / 2
    iv = jnp.arange(geom.n_v, dtype=dtype) - (geom.n_v - 1) / 2
    return iu * geom.du + geom.offset_u, iv * geom.dv + geom.offset_v


def default_chunk(vol_geom: VolumeGeometry, geom: ConeBeamGeometry) -> int:
    """Views per chunk of the projector: one, unless a view's intermediates are tiny.

    On CPU, batching views makes XLA's gathers slower than a plain loop over views,
    so chunks only grow while a view's largest intermediate (the neighbour pairs of
    one block of planes) is below 1M elements.
    """
    nz = vol_geom.shape[0]
    block = _block_size(geom.n_u, _profile_length(nz))
    per_view = 2 * block * geom.n_u * max(_profile_length(nz), geom.n_v)
    return int(max(1, min(geom.n_angles, _CHUNK_ELEMENTS // per_view)))


def _block_size(n_u: int, length: int) -> int:
    """Planes per block of a view's sweep: a power of two in ``[2, 16]`` that keeps
    a block of profiles (``planes x n_u x length``) near :data:`_BLOCK_ELEMENTS`.
    """
    ideal = _BLOCK_ELEMENTS / (n_u * length)
    return int(min(16, max(2, 2 ** round(math.log2(ideal)))))


def _profile_length(nz: int) -> int:
    """Padded length of a z-profile: one zero in front, at least two behind.

    Rounded up to a multiple of 16 floats so that whole profiles are copied with
    aligned vector loads.
    """
    return -(-(nz + 3) // 16) * 16


def _plane_stack(volume: jax.Array) -> jax.Array:
    """Rows ``(2 * n * (n + 2), L)``: z-profiles of x-planes then of y-planes.

    Plane set 0 is indexed ``[i, 1 + j]`` (planes of constant x), set 1 ``[j, 1 + i]``
    (planes of constant y); each in-plane axis has one zero row on either side and
    both are padded to ``n = max(nx, ny)`` so one gather serves both. Each profile
    is padded along z to ``L =`` :func:`_profile_length` with one zero in front,
    so padded entry ``k`` holds slice ``k - 1``.
    """
    nz, ny, nx = volume.shape
    n = max(nx, ny)
    length = _profile_length(nz)
    a = jnp.transpose(volume, (2, 1, 0))  # (nx, ny, nz)
    b = jnp.transpose(volume, (1, 2, 0))  # (ny, nx, nz)
    z_pad = (1, length - nz - 1)
    a = jnp.pad(a, ((0, n - nx), (1, n + 1 - ny), z_pad))
    b = jnp.pad(b, ((0, n - ny), (1, n + 1 - nx), z_pad))
    return jnp.stack([a, b]).reshape(2 * n * (n + 2), length)


def _lerp_index(position, count):
    """Split a continuous index into clipped padded row indices and a weight."""
    position = jnp.clip(position, -2.0, count + 1.0)
    lower = jnp.floor(position)
    frac = position - lower
    i0 = jnp.clip(lower.astype(jnp.int32) + 1, 0, count + 1)
    i1 = jnp.clip(lower.astype(jnp.int32) + 2, 0, count + 1)
    return i0, i1, frac


def _pair_index(position, count):
    """Index and weight of a continuous index into a padded profile of ``count``.

    The padded profile (see :func:`_plane_stack`) has one zero in front and at
    least two behind; the sample is ``p[k] * (1 - w) + p[k + 1] * w``, zero outside
    ``[-1, count]``.

    Args:
        position: continuous index (0 is the first sample), any shape.
        count: profile length (static).

    Returns:
        int32 indices in ``[0, count + 1]`` and float weights in ``[0, 1)``.
    """
    position = jnp.clip(position, -1.0, float(count))
    lower = jnp.floor(position)
    return lower.astype(jnp.int32) + 1, position - lower


def _take_pairs(flat, indices):
    """``flat[indices]`` and ``flat[indices + 1]`` stacked last, indices in bounds."""
    dims = jax.lax.GatherDimensionNumbers(
        offset_dims=(indices.ndim,),
        collapsed_slice_dims=(),
        start_index_map=(0,),
    )
    return jax.lax.gather(
        flat,
        indices[..., None],
        dims,
        (2,),
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def _take(array, indices):
    """``array[indices]`` along axis 0 for indices known to be in bounds.

    A plain gather: no wrapping of negative indices, no clamping.
    """
    dims = jax.lax.GatherDimensionNumbers(
        offset_dims=tuple(range(indices.ndim, indices.ndim + array.ndim - 1)),
        collapsed_slice_dims=(0,),
        start_index_map=(0,),
    )
    return jax.lax.gather(
        array,
        indices[..., None],
        dims,
        (1, *array.shape[1:]),
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def _scatter_add(array, indices, updates):
    """``array.at[indices].add(updates)`` along axis 0, indices known in bounds.

    The transpose of :func:`_take`.
    """
    dims = jax.lax.ScatterDimensionNumbers(
        update_window_dims=tuple(range(indices.ndim, indices.ndim + array.ndim - 1)),
        inserted_window_dims=(0,),
        scatter_dims_to_operand_dims=(0,),
    )
    return jax.lax.scatter_add(
        array,
        indices[..., None],
        updates,
        dims,
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def _scatter_add_pairs(profiles, index, updates):
    """Transpose of the pair gather: add pairs of values to pairs of entries.

    Args:
        profiles: ``(P, L)`` array to add to.
        index: int ``(..., 2)``: profile and entry ``k``, in bounds with ``k + 1``.
        updates: ``(..., 2)``: the values added at entries ``k`` and ``k + 1``.

    Returns:
        ``profiles`` with the updates added, same shape.
    """
    dims = jax.lax.ScatterDimensionNumbers(
        update_window_dims=(index.ndim - 1,),
        inserted_window_dims=(0,),
        scatter_dims_to_operand_dims=(0, 1),
    )
    return jax.lax.scatter_add(
        profiles,
        index,
        updates,
        dims,
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def _view_rays(cos_t, sin_t, vol_geom, geom, u_det, v_det, n_planes):
    """Where one view's rays cross the planes of their dominant axis.

    All rays of a detector column share one line in the xy plane, so they cross each
    plane at the same in-plane point; only their z differs.

    Args:
        cos_t, sin_t: cosine and sine of the source angle.
        vol_geom, geom: the grid and the scan.
        u_det, v_det: detector column ``(n_u,)`` and row ``(n_v,)`` centres, mm.
        n_planes: planes to return (static, ``>= max(nx, ny)``); the extra ones
            point at a zero row of the plane stack.

    Returns:
        ``(i0, i1, a, t, step)``: rows ``(n_planes, n_u)`` of the plane stack (see
        :func:`_plane_stack`) on either side of the crossing and the weight of
        ``i1``; the ray parameter ``t`` (0 at the source, 1 at the detector) of the
        crossing, ``(n_planes, n_u)``; the ray length between planes,
        ``(n_u, n_v)`` in mm.
    """
    nz, ny, nx = vol_geom.shape
    n = max(nx, ny)
    dtype = u_det.dtype
    _, sy, sx = (jnp.asarray(s, dtype) for s in vol_geom.spacing)
    ox, oy, _ = (jnp.asarray(o, dtype) for o in vol_geom.offset)
    src_x, src_y = geom.dso * cos_t, geom.dso * sin_t
    dx = -geom.dsd * cos_t - u_det * sin_t  # (n_u,) ray direction, source->pixel
    dy = -geom.dsd * sin_t + u_det * cos_t
    along_x = jnp.abs(dx) >= jnp.abs(dy)

    def pick(a, b):
        return jnp.where(along_x, a, b)

    steps = jnp.arange(n_planes, dtype=dtype)[:, None]
    plane_x = (steps - (nx - 1) / 2) * sx + ox
    plane_y = (steps - (ny - 1) / 2) * sy + oy
    d_plane, d_in = pick(dx, dy), pick(dy, dx)
    t = (pick(plane_x, plane_y) - pick(src_x, src_y)) / d_plane  # (n_planes, n_u)
    in_plane = pick(src_y, src_x) + t * d_in
    idx = (in_plane - pick(oy, ox)) / pick(sy, sx) + pick((ny - 1) / 2, (nx - 1) / 2)
    r0, r1, a = _lerp_index(idx, n)
    plane = jnp.arange(n_planes, dtype=jnp.int32)[:, None]
    base = ((1 - along_x.astype(jnp.int32)) * n + plane) * (n + 2)
    valid = plane < n
    i0, i1 = jnp.where(valid, base + r0, 0), jnp.where(valid, base + r1, 0)
    length = jnp.sqrt(dx[:, None] ** 2 + dy[:, None] ** 2 + v_det**2)
    step = pick(sx, sy)[:, None] * length / jnp.abs(d_plane)[:, None]
    return i0, i1, a, t, step


def _project_view(rows, cos_t, sin_t, vol_geom, geom, u_det, v_det):
    """Line integrals ``(n_v, n_u)`` of one view from the plane stack ``rows``.

    Planes are swept in blocks (:func:`_block_size`) so a block's intermediates stay in
    cache: per block, a gather of whole z-profiles (in-plane interpolation per
    column), then one gather of neighbour pairs per ray (interpolation along z).
    The loop is software-pipelined: iteration ``j`` interpolates the profiles of
    block ``j`` and samples those of block ``j - 1``, which it receives through the
    loop carry. That keeps the profiles a materialised array; otherwise XLA fuses
    their computation into the per-ray gather and redoes it for every ray.
    Samples accumulate per plane slot of the block and are summed once per view.
    """
    nz, ny, nx = vol_geom.shape
    dtype = rows.dtype
    length = rows.shape[1]
    size = _block_size(geom.n_u, length)
    n_blocks = -(-max(nx, ny) // size)
    sz = jnp.asarray(vol_geom.spacing[0], dtype)
    oz = jnp.asarray(vol_geom.offset[2], dtype)
    i0, i1, a, t, step = _view_rays(
        cos_t, sin_t, vol_geom, geom, u_det, v_det, n_blocks * size
    )
    vz, cz = v_det / sz, (nz - 1) / 2 - oz / sz  # z index = t * vz + cz
    offsets = jnp.arange(size * geom.n_u, dtype=jnp.int32) * length
    offsets = offsets.reshape(size, geom.n_u, 1)

    def block_of(x, j):
        return jax.lax.dynamic_slice_in_dim(x, j * size, size, 0)

    def profiles(j):  # (size, n_u, length)
        w = block_of(a, j)[..., None]
        return _take(rows, block_of(i0, j)) * (1 - w) + _take(rows, block_of(i1, j)) * w

    def samples(j, col):  # (size, n_u, n_v)
        k, b = _pair_index(block_of(t, j)[..., None] * vz + cz, nz)
        s = _take_pairs(col.reshape(-1), offsets + k)
        return s[..., 0] * (1 - b) + s[..., 1] * b

    def step_block(j, carry):
        total, col = carry
        return total + samples(j - 1, col), profiles(j)

    zero = jnp.zeros((size, geom.n_u, geom.n_v), dtype)
    total, col = jax.lax.fori_loop(1, n_blocks, step_block, (zero, profiles(0)))
    total = total + samples(n_blocks - 1, col)
    return (total.sum(axis=0) * step).T


def _project_impl(volume, vol_geom, geom, chunk):
    dtype = volume.dtype
    u_det, v_det = detector_coordinates(geom, dtype)
    rows = _plane_stack(volume)
    angles = jnp.asarray(geom.angles, dtype)

    def one_view(angle):
        return _project_view(
            rows, jnp.cos(angle), jnp.sin(angle), vol_geom, geom, u_det, v_det
        )

    return jax.lax.map(one_view, angles, batch_size=chunk)


def _backproject_view(acc, view, cos_t, sin_t, vol_geom, geom, u_det, v_det):
    """Add the adjoint of :func:`_project_view` applied to ``view`` to ``acc``.

    The exact transpose of the projection, written out so each block scatters
    straight into the carried plane stack: the pair gather becomes a scatter-add into
    a block of padded z-profiles, the profile gathers become row scatter-adds. The
    loop is pipelined like the projector's: iteration ``j`` scatters the rays into
    the profiles of block ``j`` and adds those of block ``j - 1`` to ``acc``.

    Args:
        acc: plane stack ``(2 * n * (n + 2), L)`` to add to (see
            :func:`_plane_stack`).
        view: one view's projections ``(n_v, n_u)``.
        cos_t, sin_t, vol_geom, geom, u_det, v_det: as :func:`_view_rays`.

    Returns:
        ``acc`` plus the view's backprojection, same shape.
    """
    nz, ny, nx = vol_geom.shape
    dtype = view.dtype
    length = acc.shape[1]
    size = _block_size(geom.n_u, length)
    n_blocks = -(-max(nx, ny) // size)
    sz = jnp.asarray(vol_geom.spacing[0], dtype)
    oz = jnp.asarray(vol_geom.offset[2], dtype)
    i0, i1, a, t, step = _view_rays(
        cos_t, sin_t, vol_geom, geom, u_det, v_det, n_blocks * size
    )
    vz, cz = v_det / sz, (nz - 1) / 2 - oz / sz
    weighted = view.T * step  # (n_u, n_v)
    col_zero = jnp.zeros((size * geom.n_u, length), dtype)
    profile_id = jnp.arange(size * geom.n_u, dtype=jnp.int32)
    profile_id = jnp.broadcast_to(
        profile_id.reshape(size, geom.n_u, 1), (size, geom.n_u, geom.n_v)
    )
    first = jnp.arange(2) == 0

    def block_of(x, j):
        return jax.lax.dynamic_slice_in_dim(x, j * size, size, 0)

    def profiles(j):  # transpose of the pair gather: (size, n_u, length)
        k, b = _pair_index(block_of(t, j)[..., None] * vz + cz, nz)
        pairs = weighted[..., None] * jnp.where(first, 1 - b[..., None], b[..., None])
        index = jnp.stack([profile_id, k], -1)
        col = _scatter_add_pairs(col_zero, index, pairs)
        return col.reshape(size, geom.n_u, length)

    def add_rows(j, acc, col):  # transpose of the profile gathers
        w = block_of(a, j)[..., None]
        acc = _scatter_add(acc, block_of(i0, j), col * (1 - w))
        return _scatter_add(acc, block_of(i1, j), col * w)

    def step_block(j, carry):
        acc, col = carry
        return add_rows(j - 1, acc, col), profiles(j)

    acc, col = jax.lax.fori_loop(1, n_blocks, step_block, (acc, profiles(0)))
    return add_rows(n_blocks - 1, acc, col)


def _backproject_impl(projections, vol_geom, geom, chunk):
    """Adjoint of :func:`_project_impl`: a scan over views into one plane stack.

    Memory holds the plane stack and one view's intermediates, whatever ``chunk``
    (which only batches the forward projection).
    """
    del chunk
    dtype = projections.dtype
    nz, ny, nx = vol_geom.shape
    n = max(nx, ny)
    u_det, v_det = detector_coordinates(geom, dtype)
    angles = jnp.asarray(geom.angles, dtype)

    def step(acc, item):
        angle, view = item
        acc = _backproject_view(
            acc, view, jnp.cos(angle), jnp.sin(angle), vol_geom, geom, u_det, v_det
        )
        return acc, None

    init = jnp.zeros((2 * n * (n + 2), _profile_length(nz)), dtype)
    rows, _ = jax.lax.scan(step, init, (angles, projections))
    volume = jax.ShapeDtypeStruct(vol_geom.shape, dtype)
    return jax.linear_transpose(_plane_stack, volume)(rows)[0]
