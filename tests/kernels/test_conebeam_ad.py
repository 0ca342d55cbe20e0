"""Cone-beam projector pair under jax transformations: jvp, jacfwd, grad, vmap.

The references are the float64 NumPy Joseph projector of ``test_conebeam.py`` and
central finite differences; reverse mode must run the hand-written adjoint (the
backprojection primitive), not an automatic transpose of the projector's gathers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.kernels import (
    ConeBeamGeometry,
    VolumeGeometry,
    cone_beam_backproject,
    cone_beam_project,
)

FLOAT = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32

_spec = importlib.util.spec_from_file_location(
    "conebeam_refs", Path(__file__).with_name("test_conebeam.py")
)
refs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refs)

# A tiny off-centre grid: its Jacobian (5 x 6 x 7 detector x 60 voxels) is cheap.
TINY_VOL = VolumeGeometry((3, 4, 5), (2.0, 1.5, 1.2), offset=(0.5, -0.4, 0.3))
TINY_SCAN = ConeBeamGeometry(
    120.0, 240.0, 7, 6, 2.0, 1.8, np.linspace(0.0, 2 * np.pi, 5, endpoint=False) + 0.3
)


def _volume(seed=0, vol_geom=TINY_VOL):
    return jnp.asarray(np.random.default_rng(seed).random(vol_geom.shape), FLOAT)


def _project(v):
    return cone_beam_project(v, TINY_VOL, TINY_SCAN)


def _backproject(p):
    return cone_beam_backproject(p, TINY_VOL, TINY_SCAN)


def _joseph_matrix(vol_geom, geom):
    """The float64 reference projector as a matrix (one column per voxel)."""
    n = int(np.prod(vol_geom.shape))
    cols = [
        refs.joseph_reference(np.eye(n)[i].reshape(vol_geom.shape), vol_geom, geom)
        for i in range(n)
    ]
    return np.stack([c.ravel() for c in cols], axis=1)


def test_jvp_is_the_projection_of_the_tangent(x64):
    # A is linear, so jvp(A)(x; t) = (A x, A t); both against the float64 reference.
    x, t = _volume(0), _volume(1)
    out, tangent = jax.jvp(_project, (x,), (t,))
    ref_t = refs.joseph_reference(np.asarray(t, np.float64), TINY_VOL, TINY_SCAN)
    ref_x = refs.joseph_reference(np.asarray(x, np.float64), TINY_VOL, TINY_SCAN)
    tol = 1e-12 if x64 else 2e-5
    scale = np.abs(ref_t).max()
    assert np.abs(np.asarray(tangent, np.float64) - ref_t).max() <= tol * scale
    assert np.abs(np.asarray(out, np.float64) - ref_x).max() <= tol * scale


def test_jacfwd_equals_reference_matrix_and_central_differences(x64):
    x = _volume(2)
    jac = np.asarray(jax.jacfwd(_project)(x), np.float64).reshape(-1, x.size)
    reference = _joseph_matrix(TINY_VOL, TINY_SCAN)
    tol = 1e-12 if x64 else 2e-5
    assert np.abs(jac - reference).max() <= tol * np.abs(reference).max()
    # central differences along a few voxel directions, through the function itself
    h = 1e-3 if x64 else 1e-1
    for i in (0, 17, 59):
        e = jnp.zeros(x.size, FLOAT).at[i].set(h).reshape(x.shape)
        fd = (_project(x + e) - _project(x - e)) / (2 * h)
        np.testing.assert_allclose(
            jac[:, i], np.asarray(fd).ravel(), rtol=1e-7 if x64 else 1e-3, atol=1e-4
        )


def test_jacrev_equals_jacfwd_and_backprojector_matrix(x64):
    x = _volume(3)
    fwd = np.asarray(jax.jacfwd(_project)(x)).reshape(-1, x.size)
    rev = np.asarray(jax.jacrev(_project)(x)).reshape(-1, x.size)
    np.testing.assert_allclose(rev, fwd, rtol=1e-10 if x64 else 1e-5, atol=1e-6)
    # the backprojector's forward-mode Jacobian is the transpose
    p = _project(x)
    back = np.asarray(jax.jacfwd(_backproject)(p)).reshape(x.size, -1)
    np.testing.assert_allclose(back, fwd.T, rtol=1e-10 if x64 else 1e-5, atol=1e-6)


def _primitive_names(jaxpr) -> list[str]:
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            names.extend(_primitive_names(sub))
    return names


def test_reverse_mode_runs_the_hand_written_adjoint():
    x = _volume(4)

    def loss(v):
        return 0.5 * jnp.sum(_project(v) ** 2)

    names = _primitive_names(jax.make_jaxpr(jax.grad(loss))(x).jaxpr)
    assert names.count("cone_beam_project") == 1
    assert names.count("cone_beam_backproject") == 1
    # nothing else gathers or scatters: no automatic transpose of the projector
    assert not any("scatter" in n or "gather" in n for n in names)
    # and the number is the backprojected residual, bit for bit
    grad = jax.jit(jax.grad(loss))(x)
    expected = jax.jit(lambda v: _backproject(_project(v)))(x)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(expected))


def test_forward_over_reverse_hessian_vector_product(x64):
    # loss = |A x|^2 / 2: the Hessian is A^T A, so H t = A^T A t.
    x, t = _volume(5), _volume(6)

    def loss(v):
        return 0.5 * jnp.sum(_project(v) ** 2)

    _, hvp = jax.jvp(jax.grad(loss), (x,), (t,))
    expected = _backproject(_project(t))
    np.testing.assert_allclose(hvp, expected, rtol=1e-10 if x64 else 1e-5, atol=1e-5)


def test_vmap_over_volumes_and_over_geometries_matches_a_loop(x64):
    batch = jnp.stack([_volume(7), _volume(8), _volume(9)])
    out = jax.vmap(_project)(batch)
    tol = dict(rtol=1e-12, atol=1e-12) if x64 else dict(rtol=1e-4, atol=2e-4)
    for i in range(3):
        np.testing.assert_allclose(out[i], _project(batch[i]), **tol)
    # a batch of scans of one volume (e.g. one rotated start angle per item)
    angles = jnp.stack([TINY_SCAN.angles, TINY_SCAN.angles + 0.4])
    scans = jax.vmap(lambda a: ConeBeamGeometry(120.0, 240.0, 7, 6, 2.0, 1.8, a))(
        angles
    )
    assert scans.n_angles == TINY_SCAN.n_angles
    per_scan = jax.vmap(lambda g: cone_beam_project(batch[0], TINY_VOL, g))(scans)
    for i in range(2):
        g = ConeBeamGeometry(120.0, 240.0, 7, 6, 2.0, 1.8, np.asarray(angles[i]))
        ref = refs.joseph_reference(np.asarray(batch[0], np.float64), TINY_VOL, g)
        scale = np.abs(ref).max()
        err = np.abs(np.asarray(per_scan[i], np.float64) - ref).max()
        assert err <= (1e-12 if x64 else 2e-5) * scale


def test_vmap_of_grad_and_grad_of_vmap_agree(x64):
    batch = jnp.stack([_volume(10), _volume(11)])
    y = _project(_volume(12))

    def loss(v):
        return 0.5 * jnp.sum((_project(v) - y) ** 2)

    per_item = jax.jit(jax.vmap(jax.grad(loss)))(batch)
    summed = jax.grad(lambda b: jnp.sum(jax.vmap(loss)(b)))(batch)
    tol = dict(rtol=1e-10, atol=1e-10) if x64 else dict(rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(per_item, summed, **tol)
    for i in range(2):
        expected = _backproject(_project(batch[i]) - y)
        np.testing.assert_allclose(per_item[i], expected, **tol)


@pytest.mark.parametrize("transform", ["jit", "eager"])
def test_linearize_and_transpose_give_the_adjoint(transform, x64):
    x = _volume(13)
    _, f_lin = jax.linearize(_project, x)
    f_t = jax.linear_transpose(f_lin, x)
    p = _project(_volume(14))
    call = jax.jit(f_t) if transform == "jit" else f_t
    (back,) = call(p)
    np.testing.assert_allclose(
        back, _backproject(p), rtol=1e-10 if x64 else 1e-5, atol=1e-5
    )
