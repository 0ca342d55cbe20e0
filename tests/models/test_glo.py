"""ShapeGLO: shapes, validity of decoded subjects, template identity, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsim.models import SHAPE_FIELDS, ShapeGLO
from jaxsim.parameters import field_slices, to_unconstrained
from jaxsim.phantoms import check_subject, default_subject, deformation_box

GRID = (2, 2, 3)


def _model(**kw):
    return ShapeGLO(latent_dim=4, hidden=8, grid_shape=GRID, rngs=nnx.Rngs(0), **kw)


def test_output_shapes_and_parameter_count():
    g = _model()
    delta, control = g(jnp.zeros((5, 4)))
    assert delta.shape == (5, len(SHAPE_FIELDS))
    assert control.shape == (5, *GRID, 3)
    n_control = int(np.prod(GRID)) * 3
    # hand-summed: fc1 4*8+8, fc2 8*8+8, subject head 8*6+6, control head 8*36+36
    expected = (4 * 8 + 8) + (8 * 8 + 8) + (8 * 6 + 6) + (8 * n_control + n_control)
    params = nnx.state(g, nnx.Param)
    assert sum(x.size for x in jax.tree.leaves(params)) == expected


def test_zero_heads_decode_the_template_without_deformation():
    template = default_subject("female")
    g = _model(template=template)
    s = g.subjects(jax.random.normal(jax.random.key(1), (3, 4)))
    for name in ("edv", "esv", "wall_thickness", "body_ap", "heart_azimuth", "sex"):
        np.testing.assert_allclose(
            np.asarray(getattr(s, name)),
            np.full(3, float(getattr(template, name))),
            rtol=1e-5,
        )
    assert np.all(np.asarray(s.deformation.control) == 0.0)
    lower, upper = deformation_box(template, margin=20.0)
    assert s.deformation.lower == pytest.approx(lower)
    assert s.deformation.upper == pytest.approx(upper)


def test_random_latents_give_valid_subjects_and_only_shape_fields_change():
    g = _model(zero_init=False)
    z = 3.0 * jax.random.normal(jax.random.key(2), (16, 4))
    s = g.subjects(z)
    for i in range(16):
        check_subject(jax.tree.map(lambda a, i=i: a[i], s))
    template = g.template
    u = np.asarray(to_unconstrained(s.replace(deformation=None)))
    u0 = np.asarray(to_unconstrained(template))
    slices = field_slices(template)
    changed = np.zeros(u0.shape, bool)
    for name in SHAPE_FIELDS:
        changed[slices[name]] = True
    np.testing.assert_allclose(
        u[:, ~changed],
        np.broadcast_to(u0[~changed], (16, (~changed).sum())),
        rtol=1e-5,
        atol=1e-5,
    )
    assert np.std(u[:, changed], axis=0).min() > 1e-3  # the latents matter
    assert np.isfinite(np.asarray(s.deformation.control)).all()


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(latent_dim=0), "latent_dim"),
        (dict(hidden=-1), "hidden"),
        (dict(grid_shape=(2, 2)), "grid_shape"),
        (dict(max_displacement=0.0), "max_displacement"),
    ],
)
def test_bad_arguments(kw, match):
    args = dict(latent_dim=4, hidden=8, grid_shape=GRID)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        ShapeGLO(**args, rngs=nnx.Rngs(0))


def test_bad_latent_shape_and_template():
    g = _model()
    with pytest.raises(ValueError, match="z must have shape"):
        g(jnp.zeros((2, 5)))
    with pytest.raises(TypeError, match="template"):
        _model(template="male")


def _scalar_of(g, z):
    """A smooth scalar of the decoded subject: physical sizes and the control."""
    s = g.subjects(z)
    return (
        jnp.sum(s.edv * 1e-2)
        + jnp.sum(s.esv * 1e-2)
        + jnp.sum(s.wall_thickness)
        + jnp.sum(s.lv_aspect)
        + jnp.sum(jnp.tanh(s.deformation.control) ** 2)
    )


def test_gradients_match_finite_differences_in_x64():
    with jax.enable_x64(True):
        g = ShapeGLO(
            latent_dim=3,
            hidden=4,
            grid_shape=(1, 1, 2),
            zero_init=False,
            rngs=nnx.Rngs(3),
        )
        gd, params, rest = nnx.split(g, nnx.Param, ...)
        leaves, treedef = jax.tree.flatten(params)
        leaves = [a.astype(jnp.float64) for a in leaves]
        z = jnp.asarray([[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]], jnp.float64)

        def f(leaves, z):
            p = jax.tree.unflatten(treedef, leaves)
            return _scalar_of(nnx.merge(gd, p, rest), z)

        gl, gz = jax.jit(jax.grad(f, argnums=(0, 1)))(leaves, z)
        assert all(np.isfinite(np.asarray(x)).all() for x in gl)
        h = 1e-6
        f = jax.jit(f)
        for idx in [(0, 0), (1, 2)]:
            e = jnp.zeros_like(z).at[idx].set(h)
            fd = (f(leaves, z + e) - f(leaves, z - e)) / (2 * h)
            np.testing.assert_allclose(float(gz[idx]), float(fd), rtol=1e-6, atol=1e-9)
        for k, leaf in enumerate(leaves):  # one entry of every weight array
            idx = (0,) * leaf.ndim
            up = [a.at[idx].add(h) if j == k else a for j, a in enumerate(leaves)]
            dn = [a.at[idx].add(-h) if j == k else a for j, a in enumerate(leaves)]
            fd = (f(up, z) - f(dn, z)) / (2 * h)
            np.testing.assert_allclose(
                float(gl[k][idx]), float(fd), rtol=1e-6, atol=1e-9
            )
