"""Matched cone-beam projector pair: Joseph forward projection and its exact adjoint.

Joseph's method: each ray steps through the planes of the grid perpendicular to its
dominant in-plane axis (x or y), samples the volume there by bilinear interpolation in
the plane, and sums the samples times the ray length between planes. Outside the grid
the volume is zero.

Because the detector's v axis is parallel to the rotation axis, all rays that hit one
detector column share the same line in the xy plane: they cross each plane at the same
in-plane point. So the in-plane interpolation is done once per (column, plane) on whole
z-profiles (contiguous rows), and only the linear interpolation along z is per ray.

The backprojector is defined as the linear transpose of the projector, so
``<A x, y> = <x, A^T y>`` holds to float rounding; each function's VJP is the other.
Views are processed in chunks with ``lax.map``, so memory stays bounded.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ._conebeam_geometry import ConeBeamGeometry, VolumeGeometry, check_volume_fits

# Elements of the largest per-chunk intermediate (views x columns x planes x rows).
_CHUNK_ELEMENTS = 1 << 20


def detector_coordinates(geom: ConeBeamGeometry, dtype) -> tuple[jax.Array, jax.Array]:
    """Centres of the detector columns ``(n_u,)`` and rows ``(n_v,)`` in mm."""
    iu = jnp.arange(geom.n_u, dtype=dtype) - (geom.n_u - 1) / 2
    iv = jnp.arange(geom.n_v, dtype=dtype) - (geom.n_v - 1) / 2
    return iu * geom.du + geom.offset_u, iv * geom.dv + geom.offset_v


def default_chunk(vol_geom: VolumeGeometry, geom: ConeBeamGeometry) -> int:
    """Views per chunk: one, unless a view's intermediates are tiny.

    On CPU, batching views makes XLA's gathers slower than a plain loop over views,
    so chunks only grow while a view's largest intermediate is below 1M elements.
    """
    nz, ny, nx = vol_geom.shape
    per_view = geom.n_u * max(nx, ny) * max(nz + 2, geom.n_v)
    return int(max(1, min(geom.n_angles, _CHUNK_ELEMENTS // per_view)))


def _plane_stack(volume: jax.Array) -> jax.Array:
    """Rows ``(2 * n * (n + 2), nz)``: z-profiles of x-planes then of y-planes.

    Plane set 0 is indexed ``[i, 1 + j]`` (planes of constant x), set 1 ``[j, 1 + i]``
    (planes of constant y); each in-plane axis has one zero row on either side and
    both are padded to ``n = max(nx, ny)`` so one gather serves both.
    """
    nz, ny, nx = volume.shape
    n = max(nx, ny)
    a = jnp.transpose(volume, (2, 1, 0))  # (nx, ny, nz)
    b = jnp.transpose(volume, (1, 2, 0))  # (ny, nx, nz)
    a = jnp.pad(a, ((0, n - nx), (1, n + 1 - ny), (0, 0)))
    b = jnp.pad(b, ((0, n - ny), (1, n + 1 - nx), (0, 0)))
    return jnp.stack([a, b]).reshape(2 * n * (n + 2), nz)


def _lerp_index(position, count):
    """Split a continuous index into clipped padded row indices and a weight."""
    position = jnp.clip(position, -2.0, count + 1.0)
    lower = jnp.floor(position)
    frac = position - lower
    i0 = jnp.clip(lower.astype(jnp.int32) + 1, 0, count + 1)
    i1 = jnp.clip(lower.astype(jnp.int32) + 2, 0, count + 1)
    return i0, i1, frac


def _project_view(rows, cos_t, sin_t, vol_geom, geom, u_det, v_det):
    """Line integrals ``(n_v, n_u)`` of one view from the plane stack ``rows``."""
    nz, ny, nx = vol_geom.shape
    n = max(nx, ny)
    dtype = rows.dtype
    sz, sy, sx = (jnp.asarray(s, dtype) for s in vol_geom.spacing)
    ox, oy, oz = (jnp.asarray(o, dtype) for o in vol_geom.offset)
    src_x, src_y = geom.dso * cos_t, geom.dso * sin_t
    dx = -geom.dsd * cos_t - u_det * sin_t  # (n_u,) ray direction, source->pixel
    dy = -geom.dsd * sin_t + u_det * cos_t
    along_x = jnp.abs(dx) >= jnp.abs(dy)

    def pick(a, b):
        return jnp.where(along_x, a, b)

    steps = jnp.arange(n, dtype=dtype)
    plane_x = (steps - (nx - 1) / 2) * sx + ox
    plane_y = (steps - (ny - 1) / 2) * sy + oy
    planes = jnp.where(along_x[:, None], plane_x, plane_y)  # (n_u, n)
    d_plane, d_in = pick(dx, dy), pick(dy, dx)
    t = (planes - pick(src_x, src_y)[:, None]) / d_plane[:, None]  # (n_u, n)
    in_plane = pick(src_y, src_x)[:, None] + t * d_in[:, None]
    idx = (in_plane - pick(oy, ox)[:, None]) / pick(sy, sx)[:, None]
    idx = idx + pick((ny - 1) / 2, (nx - 1) / 2)[:, None]
    r0, r1, a = _lerp_index(idx, n)
    base = ((1 - along_x.astype(jnp.int32))[:, None] * n + jnp.arange(n)) * (n + 2)
    col = rows[base + r0] * (1 - a)[..., None] + rows[base + r1] * a[..., None]
    col = jnp.pad(col, ((0, 0), (0, 0), (1, 1))).reshape(-1)  # (n_u * n * (nz+2),)
    # Materialise the profiles: fused into the gather they would be recomputed.
    col = jax.lax.optimization_barrier(col)

    kz = (t[..., None] * v_det - oz) / sz + (nz - 1) / 2  # (n_u, n, n_v)
    k0, k1, b = _lerp_index(kz, nz)
    offsets = (jnp.arange(geom.n_u * n, dtype=jnp.int32) * (nz + 2)).reshape(
        geom.n_u, n, 1
    )
    samples = col[offsets + k0] * (1 - b) + col[offsets + k1] * b
    total = samples.sum(axis=1)  # (n_u, n_v)
    length = jnp.sqrt(dx[:, None] ** 2 + dy[:, None] ** 2 + v_det**2)
    step = pick(sx, sy)[:, None] * length / jnp.abs(d_plane)[:, None]
    return (total * step).T


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


def _backproject_impl(projections, vol_geom, geom, chunk):
    """Adjoint by transposing each view's projection inside a scan over chunks.

    Transposing the whole ``lax.map`` would make JAX precompute and store every
    view's ray indices at once (memory growing with the number of views); here each
    step rebuilds its own and adds its contribution to a carried plane stack.
    """
    dtype = projections.dtype
    nz, ny, nx = vol_geom.shape
    n = max(nx, ny)
    u_det, v_det = detector_coordinates(geom, dtype)
    angles = jnp.asarray(geom.angles, dtype)
    n_chunks = -(-geom.n_angles // chunk)
    pad = n_chunks * chunk - geom.n_angles
    angles = jnp.pad(angles, (0, pad)).reshape(n_chunks, chunk)
    views = jnp.pad(projections, ((0, pad), (0, 0), (0, 0)))
    views = views.reshape(n_chunks, chunk, geom.n_v, geom.n_u)
    rows_shape = jax.ShapeDtypeStruct((2 * n * (n + 2), nz), dtype)

    def one_view(angle, view):
        def project(rows):
            return _project_view(
                rows, jnp.cos(angle), jnp.sin(angle), vol_geom, geom, u_det, v_det
            )

        return jax.linear_transpose(project, rows_shape)(view)[0]

    def step(acc, item):
        return acc + jax.vmap(one_view)(*item).sum(axis=0), None

    init = jnp.zeros(rows_shape.shape, dtype)
    rows, _ = jax.lax.scan(step, init, (angles, views))
    volume = jax.ShapeDtypeStruct(vol_geom.shape, dtype)
    return jax.linear_transpose(_plane_stack, volume)(rows)[0]


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _project(volume, vol_geom, geom, chunk):
    return _project_impl(volume, vol_geom, geom, chunk)


def _project_fwd(volume, vol_geom, geom, chunk):
    return _project(volume, vol_geom, geom, chunk), (vol_geom, geom)


def _project_bwd(chunk, res, cotangent):
    vol_geom, geom = res  # geometry is not differentiated: None is a zero cotangent
    grad = _backproject_impl(cotangent, vol_geom, geom, chunk)
    return grad, None, None


_project.defvjp(_project_fwd, _project_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _backproject(projections, vol_geom, geom, chunk):
    return _backproject_impl(projections, vol_geom, geom, chunk)


def _backproject_fwd(projections, vol_geom, geom, chunk):
    return _backproject(projections, vol_geom, geom, chunk), (vol_geom, geom)


def _backproject_bwd(chunk, res, cotangent):
    vol_geom, geom = res
    grad = _project_impl(cotangent, vol_geom, geom, chunk)
    return grad, None, None


_backproject.defvjp(_backproject_fwd, _backproject_bwd)


# Compiled entry points: geometry leaves are traced, sizes and the chunk are static, so
# a new scan of the same shape reuses the compiled code.
_project_jit = jax.jit(_project, static_argnums=3)
_backproject_jit = jax.jit(_backproject, static_argnums=3)


def _check_inputs(name, array, expected, vol_geom, geom, chunk):
    if not isinstance(vol_geom, VolumeGeometry):
        raise TypeError(f"vol_geom must be a VolumeGeometry; got {type(vol_geom)}")
    if not isinstance(geom, ConeBeamGeometry):
        raise TypeError(f"geom must be a ConeBeamGeometry; got {type(geom)}")
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}; got {array.shape}")
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array; got dtype {array.dtype}")
    check_volume_fits(vol_geom, geom)
    chunk = default_chunk(vol_geom, geom) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"views_per_chunk must be >= 1; got {chunk}")
    return min(chunk, geom.n_angles)


def cone_beam_project(
    volume: jax.Array,
    vol_geom: VolumeGeometry,
    geom: ConeBeamGeometry,
    *,
    views_per_chunk: int | None = None,
) -> jax.Array:
    """Line integrals of a volume along the rays of a circular cone-beam scan.

    Joseph's ray-driven method (bilinear interpolation in the planes perpendicular to
    each ray's dominant axis). Its VJP is :func:`cone_beam_backproject`; geometry is
    treated as constant under differentiation (its cotangent is zero).

    Args:
        volume: attenuation, float ``(nz, ny, nx)`` in 1/mm (any unit u gives
            projections in u * mm).
        vol_geom: placement of the grid.
        geom: the scan.
        views_per_chunk: views processed at once (static); bounds memory. Default:
            one view unless views are tiny (see :func:`default_chunk`).

    Returns:
        Projections ``(n_angles, n_v, n_u)``, dtype of ``volume``: line integrals
        (dimensionless for attenuation in 1/mm).

    Raises:
        ValueError: wrong shape, or a volume reaching the source circle.
        TypeError: non-float volume or wrong geometry types.

    Example:
        >>> vg = VolumeGeometry((32, 32, 32), (1.0, 1.0, 1.0))
        >>> g = ConeBeamGeometry(500.0, 1000.0, 64, 64, 1.0, 1.0, jnp.linspace(0, 6, 8))
        >>> cone_beam_project(jnp.ones((32, 32, 32)), vg, g).shape
        (8, 64, 64)
    """
    volume = jnp.asarray(volume)
    chunk = _check_inputs(
        "volume", volume, vol_geom.shape, vol_geom, geom, views_per_chunk
    )
    return _project_jit(volume, vol_geom, geom, chunk)


def cone_beam_backproject(
    projections: jax.Array,
    vol_geom: VolumeGeometry,
    geom: ConeBeamGeometry,
    *,
    views_per_chunk: int | None = None,
) -> jax.Array:
    """The exact adjoint of :func:`cone_beam_project` (unfiltered backprojection).

    ``<cone_beam_project(x), y> == <x, cone_beam_backproject(y)>`` to float rounding.
    Its VJP is :func:`cone_beam_project`.

    Args:
        projections: float ``(n_angles, n_v, n_u)``.
        vol_geom: placement of the grid.
        geom: the scan.
        views_per_chunk: views processed at once (static), as in the projector.

    Returns:
        Volume ``(nz, ny, nx)`` with the dtype of ``projections`` (units of the
        projections times mm).

    Raises:
        ValueError, TypeError: as :func:`cone_beam_project`.
    """
    projections = jnp.asarray(projections)
    expected = (geom.n_angles, geom.n_v, geom.n_u)
    chunk = _check_inputs(
        "projections", projections, expected, vol_geom, geom, views_per_chunk
    )
    return _backproject_jit(projections, vol_geom, geom, chunk)
