"""GauGAN's hinge and feature-matching losses against float64 NumPy references
(NVlabs/SPADE ``GANLoss(gan_mode="hinge")`` and ``GAN_Feat``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.losses import feature_matching_loss, hinge_gan_loss


def _multiscale(rng, shapes):
    return [[rng.normal(size=s) for s in d] for d in shapes]


SHAPES = [
    [(2, 9, 9, 4), (2, 5, 5, 8), (2, 6, 6, 1)],
    [(2, 5, 5, 4), (2, 3, 3, 8), (2, 4, 4, 1)],
]


def _np_hinge(pred, real, for_d):
    out = 0.0
    for d in pred:
        p = d[-1]
        if not for_d:
            out += -p.mean()
        elif real:
            out += -np.minimum(p - 1, 0).mean()
        else:
            out += -np.minimum(-p - 1, 0).mean()
    return out / len(pred)


@pytest.mark.parametrize(
    ("real", "for_d"), [(True, True), (False, True), (True, False)]
)
def test_hinge_matches_numpy(real, for_d):
    rng = np.random.default_rng(0)
    pred = _multiscale(rng, SHAPES)
    as_jax = [[jnp.asarray(f, jnp.float32) for f in d] for d in pred]
    got = hinge_gan_loss(as_jax, real, for_discriminator=for_d)
    np.testing.assert_allclose(float(got), _np_hinge(pred, real, for_d), rtol=1e-5)


def test_hinge_on_a_single_map_and_its_values():
    # scores far on the right side cost nothing; on the wrong side linearly
    assert float(hinge_gan_loss(jnp.full((1, 4, 4, 1), 3.0), True)) == 0.0
    assert float(hinge_gan_loss(jnp.full((1, 4, 4, 1), -3.0), False)) == 0.0
    np.testing.assert_allclose(float(hinge_gan_loss(jnp.zeros((2, 3)), True)), 1.0)
    np.testing.assert_allclose(
        float(hinge_gan_loss(jnp.full((2, 3), 0.5), True, for_discriminator=False)),
        -0.5,
    )
    with pytest.raises(ValueError, match="target_is_real=True"):
        hinge_gan_loss(jnp.zeros(3), False, for_discriminator=False)


def test_feature_matching_matches_numpy_and_detaches_real():
    rng = np.random.default_rng(1)
    fake, real = _multiscale(rng, SHAPES), _multiscale(rng, SHAPES)
    ref = sum(
        np.abs(f - r).mean()
        for fd, rd in zip(fake, real, strict=True)
        for f, r in zip(fd[:-1], rd[:-1], strict=True)
    ) / len(fake)
    fj = [[jnp.asarray(f, jnp.float32) for f in d] for d in fake]
    rj = [[jnp.asarray(f, jnp.float32) for f in d] for d in real]
    np.testing.assert_allclose(float(feature_matching_loss(fj, rj)), ref, rtol=1e-5)
    # the score maps (last entries) do not count; the real side gets no gradient
    fj2 = [d[:-1] + [d[-1] + 100.0] for d in fj]
    np.testing.assert_allclose(float(feature_matching_loss(fj2, rj)), ref, rtol=1e-5)
    g_real = jax.grad(lambda r: feature_matching_loss(fj, r))(rj)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g_real))
    g_fake = jax.grad(lambda f: feature_matching_loss(f, rj))(fj)
    assert float(jnp.abs(g_fake[0][0]).max()) > 0


def test_feature_matching_rejects_mismatches():
    a = [[jnp.zeros((1, 2, 2, 1)), jnp.zeros((1, 1, 1, 1))]]
    with pytest.raises(ValueError, match="same"):
        feature_matching_loss(a, a + a)
    with pytest.raises(ValueError, match="shapes differ"):
        feature_matching_loss(a, [[jnp.zeros((1, 3, 3, 1)), jnp.zeros((1, 1, 1, 1))]])
    with pytest.raises(ValueError, match="no intermediate"):
        feature_matching_loss([[a[0][1]]], [[a[0][1]]])
