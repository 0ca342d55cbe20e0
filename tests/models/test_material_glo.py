"""MaterialGLO: shapes, bounds, parameter count, gradients, checkpoint round trip,
and GLO fitting of two target maps (generator and codes jointly)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsim.io import CheckpointStore
from jaxsim.models import DEFAULT_MAX_LOG, MaterialGLO, count_params


def tiny(**kw):
    options = dict(latent_dim=4, grid=4, width=8, rngs=nnx.Rngs(0))
    return MaterialGLO(**{**options, **kw})


def test_shapes_and_parameter_count():
    glo = tiny()
    out = glo(jnp.zeros((3, 4)))
    assert out.shape == (3, 9, 4, 4, 4) and out.dtype == jnp.float32
    # hand sum: linear 4 -> 2^3 * 8; one up-level conv 3^3 * 8 * 8; head 3^3 * 8 * 9
    expected = (4 * 64 + 64) + (27 * 8 * 8 + 8) + (27 * 8 * 9 + 9)
    assert count_params(glo) == expected
    big = MaterialGLO(rngs=nnx.Rngs(0))  # the default 16^3 map
    assert big(jnp.zeros((1, 16))).shape == (1, 9, 16, 16, 16)


def test_outputs_are_bounded_per_property():
    glo = tiny(max_log=(0.1, 0.2, 0.3))
    # blow the head up so that tanh saturates
    glo.head.kernel[...] = glo.head.kernel[...] * 1e4
    out = np.asarray(glo(jax.random.normal(jax.random.key(0), (4, 4))))
    bound = np.tile([0.1, 0.2, 0.3], 3)[None, :, None, None, None]
    assert np.all(np.abs(out) <= bound + 1e-7)
    assert np.all(np.abs(out).max(axis=(0, 2, 3, 4)) > 0.9 * bound[0, :, 0, 0, 0])
    assert DEFAULT_MAX_LOG == (0.4, 0.5, 0.5)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(grid=6), "power of two"),
        (dict(channels=8), "multiple of 3"),
        (dict(max_log=(0.1, -0.1, 0.1)), "max_log"),
        (dict(latent_dim=0), "latent_dim"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_bad_latents():
    with pytest.raises(ValueError, match=r"latents must have shape \(B, 4\)"):
        tiny()(jnp.zeros((2, 5)))


def test_gradients_reach_every_parameter_and_the_latents():
    glo = tiny()
    graphdef, params = nnx.split(glo, nnx.Param)
    z = jax.random.normal(jax.random.key(1), (2, 4))
    target = jax.random.normal(jax.random.key(2), (2, 9, 4, 4, 4)) * 0.1

    def loss(p, z):
        return jnp.mean((nnx.merge(graphdef, p)(z) - target) ** 2)

    gp, gz = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, z)
    for leaf in jax.tree.leaves(gp):
        assert np.all(np.isfinite(leaf)) and float(jnp.abs(leaf).sum()) > 0
    assert float(jnp.abs(gz).sum()) > 0


def test_checkpoint_round_trip(tmp_path):
    glo = tiny()
    _, params = nnx.split(glo, nnx.Param)
    with CheckpointStore(tmp_path) as store:
        store.save(1, params, {"model": "material_glo"})
    other = tiny(rngs=nnx.Rngs(5))
    graphdef, like = nnx.split(other, nnx.Param)
    with CheckpointStore(tmp_path) as store:
        restored, meta = store.restore(like)
    z = jax.random.normal(jax.random.key(3), (2, 4))
    again = nnx.merge(graphdef, restored)
    np.testing.assert_array_equal(np.asarray(again(z)), np.asarray(glo(z)))
    assert meta["model"] == "material_glo"


def test_glo_fits_two_maps():
    """Generator and per-item codes jointly (multi_transform), codes projected to
    the unit ball: the reconstruction error of two smooth maps falls clearly."""
    glo = tiny(max_log=0.5)
    graphdef, params = nnx.split(glo, nnx.Param)
    i = jnp.linspace(-1, 1, 4)
    x, y, _ = jnp.meshgrid(i, i, i, indexing="ij")
    target = jnp.stack([0.3 * x, -0.3 * y])[:, None].repeat(9, axis=1)
    state = {"generator": params, "latents": 0.1 * jnp.ones((2, 4)).at[1].mul(-1)}
    tx = optax.multi_transform(
        {"generator": optax.adam(1e-2), "latents": optax.adam(3e-2)},
        {"generator": "generator", "latents": "latents"},
    )
    opt = tx.init(state)

    def loss(s):
        out = nnx.merge(graphdef, s["generator"])(s["latents"])
        return jnp.mean((out - target) ** 2)

    @jax.jit
    def step(s, o):
        value, g = jax.value_and_grad(loss)(s)
        u, o = tx.update(g, o, s)
        s = optax.apply_updates(s, u)
        z = s["latents"]
        z = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1.0)
        return {**s, "latents": z}, o, value

    first = float(loss(state))
    for _ in range(150):
        state, opt, _ = step(state, opt)
    assert float(loss(state)) < 0.05 * first
    assert np.all(np.linalg.norm(np.asarray(state["latents"]), axis=1) <= 1 + 1e-6)
