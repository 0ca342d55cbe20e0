"""jaxsim.losses against scipy / float64 NumPy references, with gradient checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

from jaxsim.losses import quantile_pairs, soft_histogram, wasserstein_distance


@pytest.mark.parametrize("n, m", [(5, 5), (7, 3), (40, 64)])
def test_w1_matches_scipy(n, m):
    rng = np.random.default_rng(n * m)
    x, y = rng.normal(size=n), rng.gamma(2.0, size=m)
    got = wasserstein_distance(jnp.asarray(x), jnp.asarray(y))
    want = scipy.stats.wasserstein_distance(x, y)
    assert float(got) == pytest.approx(want, rel=1e-5)


def _w2_reference(x, y, k=200):
    """Quantile functions on a fine midpoint grid (k points per 1/(n*m) cell)."""
    n, m = len(x), len(y)
    q = (np.arange(n * m * k) + 0.5) / (n * m * k)
    fx = np.quantile(x, q, method="inverted_cdf")
    fy = np.quantile(y, q, method="inverted_cdf")
    return np.sqrt(np.mean((fx - fy) ** 2))


@pytest.mark.parametrize("n, m", [(4, 4), (5, 3), (6, 9)])
def test_w2_matches_quantile_integration(n, m):
    rng = np.random.default_rng(10 + n)
    x, y = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
    got = wasserstein_distance(jnp.asarray(x), jnp.asarray(y), p=2)
    assert float(got) == pytest.approx(_w2_reference(x, y), rel=1e-5)


def test_quantile_pairs_weights_sum_to_one():
    i, j, w = quantile_pairs(4, 6)
    assert w.sum() == pytest.approx(1.0)
    assert i.max() == 3 and j.max() == 5 and np.all(np.diff(i) >= 0)


def test_w1_gradient_is_transport_plan():
    x = jnp.array([0.3, -1.0, 2.0, 0.9])
    y = jnp.array([0.0, 0.5, 1.0, 1.5])
    g = jax.grad(lambda a: wasserstein_distance(a, y))(x)
    # sorted x: -1, .3, .9, 2 vs 0, .5, 1, 1.5 -> signs -, -, -, +
    np.testing.assert_allclose(g, np.array([-1, -1, 1, -1]) / 4, atol=1e-7)


def test_w_gradients_numerically():
    x = jnp.array([0.3, -1.0, 2.0, 0.9, 1.7])
    y = jnp.array([0.1, 0.45, 1.2, 1.5, -0.2, 0.7, 3.0])
    check_grads(lambda a: wasserstein_distance(a, y, p=2), (x,), order=1, eps=1e-3)
    check_grads(lambda a: wasserstein_distance(a, y), (x,), order=1, eps=1e-3)


def test_soft_histogram_tends_to_hard_histogram():
    rng = np.random.default_rng(0)
    edges = np.linspace(0, 1, 11)
    # Values at least 0.01 (1000 bandwidths) from every edge.
    x = rng.integers(0, 10, 300) / 10 + rng.uniform(0.01, 0.09, 300)
    hard = np.histogram(x, edges)[0]
    soft = soft_histogram(jnp.asarray(x), edges, bandwidth=1e-5)
    np.testing.assert_allclose(soft, hard, atol=1e-3)


def test_soft_histogram_mass_and_gradient():
    x = jnp.array([0.2, 0.5, 0.55])
    edges = jnp.linspace(-5, 5, 21)
    h = soft_histogram(x, edges, bandwidth=0.3, weights=jnp.array([1.0, 2.0, 0.5]))
    assert float(jnp.sum(h)) == pytest.approx(3.5, rel=1e-5)
    check_grads(
        lambda v: soft_histogram(v, edges, bandwidth=0.3), (x,), order=1, eps=1e-3
    )


def test_wasserstein_rejects_p_below_one():
    with pytest.raises(ValueError, match="p must be >= 1"):
        wasserstein_distance(jnp.ones(3), jnp.ones(3), p=0.5)
