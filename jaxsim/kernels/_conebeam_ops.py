"""The cone-beam projector pair as JAX primitives: forward and reverse mode, vmap.

``cone_beam_project`` (A) and ``cone_beam_backproject`` (A^T) are linear in their
array argument. Each is a primitive whose rules say so:

* JVP: ``d(A x) = A dx`` (and ``d(A^T y) = A^T dy``), so ``jax.jvp``,
  ``jax.jacfwd`` and ``jax.linearize`` work;
* transpose: the transpose of A is the hand-written backprojector and vice
  versa, so reverse mode (``jax.grad``, ``jax.vjp``) runs the exact adjoint, not
  JAX's automatic transpose of the projector's gathers (slower, and more memory);
* batching: a batch of volumes (or of geometries) is a sequential ``lax.map`` of
  the primitive, which keeps both the custom rules and the memory bound of one
  projection at a time.

(``jax.custom_derivatives.linear_call`` has the same JVP and transpose semantics
but, in JAX 0.10, no batching rule, so ``jax.jacfwd`` over it fails.)

Geometry is not differentiated: its leaves are operands (so a traced geometry is
allowed and a new scan of the same sizes reuses compiled code), but their tangents
are dropped and their cotangents are zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from ._checks import check_finite_array
from ._conebeam import _backproject_impl, _project_impl, default_chunk
from ._conebeam_geometry import ConeBeamGeometry, VolumeGeometry, check_volume_fits

project_p = Primitive("cone_beam_project")
backproject_p = Primitive("cone_beam_backproject")


def _operands(vol_geom, geom, dtype):
    """Geometry leaves as arrays of the data's dtype, and their tree (static)."""
    leaves, tree = jax.tree_util.tree_flatten((vol_geom, geom))
    return [jnp.asarray(leaf, dtype) for leaf in leaves], tree


def _project_lowered(volume, *leaves, tree, chunk):
    vol_geom, geom = jax.tree_util.tree_unflatten(tree, leaves)
    return _project_impl(volume, vol_geom, geom, chunk)


def _backproject_lowered(projections, *leaves, tree, chunk):
    vol_geom, geom = jax.tree_util.tree_unflatten(tree, leaves)
    return _backproject_impl(projections, vol_geom, geom, chunk)


def _project_shape(volume, *leaves, tree, chunk):
    del chunk
    _, geom = jax.tree_util.tree_unflatten(tree, leaves)
    return volume.update(shape=(geom.n_angles, geom.n_v, geom.n_u))


def _backproject_shape(projections, *leaves, tree, chunk):
    del chunk
    vol_geom, _ = jax.tree_util.tree_unflatten(tree, leaves)
    return projections.update(shape=tuple(vol_geom.shape))


def _linear_jvp(prim):
    """JVP of a primitive linear in its first operand (geometry tangents dropped)."""

    def rule(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        tangent = ad.instantiate_zeros(tangents[0])
        return out, prim.bind(tangent, *primals[1:], **params)

    return rule


def _transpose_to(other):
    """Transpose rule: the cotangent of the first operand is ``other`` applied."""

    def rule(cotangent, data, *leaves, **params):
        if not ad.is_undefined_primal(data) or any(
            ad.is_undefined_primal(x) for x in leaves
        ):
            raise NotImplementedError(
                "the cone-beam operators are linear in their array argument only"
            )
        cotangent = ad.instantiate_zeros(cotangent)
        return (other.bind(cotangent, *leaves, **params), *(None,) * len(leaves))

    return rule


def _sequential_batch(prim):
    """Batching rule: the primitive once per batch item, in a ``lax.map``."""

    def rule(args, dims, **params):
        pairs = zip(args, dims, strict=True)
        args = [a if d is None else jnp.moveaxis(a, d, 0) for a, d in pairs]
        mapped = [i for i, d in enumerate(dims) if d is not None]

        def one(items):
            full = list(args)
            for i, item in zip(mapped, items, strict=True):
                full[i] = item
            return prim.bind(*full, **params)

        return jax.lax.map(one, [args[i] for i in mapped]), 0

    return rule


for _prim, _impl, _shape, _other in (
    (project_p, _project_lowered, _project_shape, backproject_p),
    (backproject_p, _backproject_lowered, _backproject_shape, project_p),
):
    # Eager calls compile once per sizes and chunk (geometry values are traced).
    _prim.def_impl(jax.jit(_impl, static_argnames=("tree", "chunk")))
    _prim.def_abstract_eval(_shape)
    mlir.register_lowering(_prim, mlir.lower_fun(_impl, multiple_results=False))
    ad.primitive_jvps[_prim] = _linear_jvp(_prim)
    ad.primitive_transposes[_prim] = _transpose_to(_other)
    batching.primitive_batchers[_prim] = _sequential_batch(_prim)


def _bind(prim, data, vol_geom, geom, chunk):
    leaves, tree = _operands(vol_geom, geom, data.dtype)
    return prim.bind(data, *leaves, tree=tree, chunk=chunk)


def _check_inputs(name, array, expected, vol_geom, geom, chunk):
    if not isinstance(vol_geom, VolumeGeometry):
        raise TypeError(f"vol_geom must be a VolumeGeometry; got {type(vol_geom)}")
    if not isinstance(geom, ConeBeamGeometry):
        raise TypeError(f"geom must be a ConeBeamGeometry; got {type(geom)}")
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}; got {array.shape}")
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array; got dtype {array.dtype}")
    check_finite_array(name, array)
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
    each ray's dominant axis). A linear operator: its JVP is itself applied to the
    tangent and its transpose (so its VJP) is :func:`cone_beam_backproject`, so
    ``jax.grad``, ``jax.jvp``, ``jax.jacfwd`` and ``jax.vmap`` all work. Geometry is
    treated as constant under differentiation (zero tangent and cotangent).

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
        ValueError: wrong shape, NaN or inf in a concrete volume, or a volume
            reaching the source circle.
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
    return _bind(project_p, volume, vol_geom, geom, chunk)


def cone_beam_backproject(
    projections: jax.Array,
    vol_geom: VolumeGeometry,
    geom: ConeBeamGeometry,
    *,
    views_per_chunk: int | None = None,
) -> jax.Array:
    """The exact adjoint of :func:`cone_beam_project` (unfiltered backprojection).

    ``<cone_beam_project(x), y> == <x, cone_beam_backproject(y)>`` to float rounding.
    Linear like the projector: its JVP is itself and its transpose is
    :func:`cone_beam_project`.

    Args:
        projections: float ``(n_angles, n_v, n_u)``.
        vol_geom: placement of the grid.
        geom: the scan.
        views_per_chunk: views per chunk of the projector (static), used by this
            function's transpose; the backprojection itself scans one view at a
            time into a single accumulator, so its memory does not grow with the
            chunk.

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
    return _bind(backproject_p, projections, vol_geom, geom, chunk)
