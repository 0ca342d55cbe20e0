"""Papillary muscles and trabeculae in the sampler: myocardium to the physics, LV
blood to the labels, only in the endocardial band of the pool, fractions still a
partition of unity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxsim.labels import TISSUE_INDEX, TISSUES
from jaxsim.population import TRABECULAR_BAND, SamplerSpec, check_spec, sample_batch
from jaxsim.population._sampler import _trabeculate

BLOOD, MYO = TISSUE_INDEX["lv_blood"], TISSUE_INDEX["lv_myocardium"]


def _ring(n=64, r_in=14.0, r_out=20.0):
    """Fractions of a pool of LV blood inside a myocardial ring in body tissue."""
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(y, x)
    f = np.zeros((len(TISSUES), 1, n, n))
    f[BLOOD, 0] = r < r_in
    f[MYO, 0] = (r >= r_in) & (r < r_out)
    f[TISSUE_INDEX["body"], 0] = r >= r_out
    return f


def test_muscle_moves_blood_to_myocardium_only_in_the_band():
    f = _ring()
    out = np.asarray(_trabeculate(jax.random.key(0), jnp.asarray(f), 0.5))
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-6)  # partition of unity
    others = [t for t in range(len(TISSUES)) if t not in (BLOOD, MYO)]
    np.testing.assert_array_equal(out[others], f[others])
    moved = f[BLOOD, 0] - out[BLOOD, 0]
    np.testing.assert_allclose(out[MYO, 0] - f[MYO, 0], moved, atol=1e-6)
    assert moved.min() >= -1e-6 and moved.max() <= 1 + 1e-6
    # the band: pool pixels within TRABECULAR_BAND (chessboard) of the myocardium
    band = ndimage.binary_dilation(
        f[MYO, 0] > 0, np.ones((3, 3)), iterations=TRABECULAR_BAND
    ) & (f[BLOOD, 0] > 0)
    assert np.all(moved[~band] == 0.0)
    share = moved[band].mean()
    assert 0.3 < share < 0.7, share  # about the requested half of the band
    assert moved[band].max() > 0.9  # solid muscle, not a uniform haze


def test_amount_sets_the_share_and_zero_is_identity():
    f = jnp.asarray(_ring())
    shares = []
    for amount in (0.0, 0.2, 0.8):
        out = np.asarray(_trabeculate(jax.random.key(1), f, amount))
        shares.append(float((np.asarray(f)[BLOOD] - out[BLOOD]).sum()))
    assert shares[0] == 0.0
    assert shares[0] < shares[1] < shares[2]
    np.testing.assert_array_equal(
        np.asarray(_trabeculate(jax.random.key(1), f, 0.0)), np.asarray(f)
    )


def test_trabeculae_range_is_checked():
    with pytest.raises(ValueError, match="trabeculae must lie within"):
        check_spec(SamplerSpec(trabeculae=(0.0, 1.5)))


@pytest.mark.integration  # compiles the sampler (~10-20 s)
def test_labels_are_unchanged_and_the_pool_darkens():
    base = SamplerSpec(shape=(48, 48), normalize=False, n_coils=2,
                       active_coils=(1.0, 2.0), trabeculae=(0.0, 0.0))  # fmt: skip
    key = jax.random.key(5)
    plain = sample_batch(key, 6, base)
    muscle = sample_batch(key, 6, base.replace(trabeculae=(0.6, 0.6)))
    np.testing.assert_array_equal(np.asarray(muscle.labels), np.asarray(plain.labels))
    a, b = np.asarray(plain.images), np.asarray(muscle.images)
    pool = np.asarray(plain.labels) == 3
    assert np.isfinite(b).all()
    # bSSFP: myocardium is darker than blood, so muscle in the pool darkens it
    assert b[pool].mean() < a[pool].mean() - 0.02 * a[pool].mean()


def test_texture_modulates_only_the_tissues_outside_the_heart():
    from jaxsim.population._sampler import _pd_texture

    f = jnp.asarray(_ring())
    out = np.asarray(_pd_texture(jax.random.key(2), f, 0.5))
    f = np.asarray(f)
    heart = [BLOOD, MYO, TISSUE_INDEX["rv_blood"], TISSUE_INDEX["rv_myocardium"]]
    np.testing.assert_array_equal(out[heart], f[heart])
    body = TISSUE_INDEX["body"]
    inside = f[body] > 0
    ratio = out[body][inside] / f[body][inside]
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 1.5 + 1e-6  # 1 +- s
    assert ratio.std() > 0.1  # textured, not uniform
    assert np.all(out[body][~inside] == 0.0)  # no tissue appears where there was none
    np.testing.assert_array_equal(
        np.asarray(_pd_texture(jax.random.key(2), jnp.asarray(f), 0.0)), f
    )


def test_texture_range_is_checked():
    with pytest.raises(ValueError, match="texture must lie within"):
        check_spec(SamplerSpec(texture=(0.0, 1.0)))
