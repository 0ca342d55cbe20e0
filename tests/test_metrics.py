"""jaxsim.metrics against scipy and hand-computed small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from jaxsim.metrics import chi2_distance, kl_divergence, ks_distance, sample_distances


@pytest.mark.parametrize("n, m, seed", [(1, 1, 0), (7, 13, 1), (200, 150, 2)])
def test_ks_matches_scipy(n, m, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(0.3, 1.5, size=m)
    assert ks_distance(a, b) == pytest.approx(scipy.stats.ks_2samp(a, b).statistic)


def test_ks_with_ties_matches_scipy():
    a = np.array([0, 0, 1, 1, 1, 2, 3, 3.0])
    b = np.array([0, 1, 1, 2, 2, 2, 2.0])
    assert ks_distance(a, b) == pytest.approx(scipy.stats.ks_2samp(a, b).statistic)


def test_ks_hand_cases():
    assert ks_distance([0.0, 1.0], [0.5, 1.5]) == 0.5
    assert ks_distance([1.0, 2.0], [3.0, 4.0]) == 1.0
    assert ks_distance([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == 0.0


def test_chi2_hand_computed():
    # bins [0,1), [1,2), [2,3]: a -> (2,1,1)/4, b -> (1,2,1)/4
    a, b = [0.0, 0.5, 1.0, 3.0], [0.0, 1.0, 1.5, 3.0]
    # sum (p-q)^2/(p+q) = 2 * (1/4)^2 / (3/4) = 1/6
    assert chi2_distance(a, b, bins=3, range=(0, 3)) == pytest.approx(1 / 6)
    assert chi2_distance(a, a, bins=3) == 0.0
    assert chi2_distance([0.0, 0.1], [5.0, 5.1], bins=4) == pytest.approx(2.0)


def test_kl_hand_computed():
    a, b = [0.0, 0.5, 1.0, 3.0], [0.0, 1.0, 1.5, 3.0]
    # counts + 0.5: p = (2.5, 1.5, 1.5)/5.5, q = (1.5, 2.5, 1.5)/5.5
    expected = (2.5 / 5.5) * math.log(2.5 / 1.5) + (1.5 / 5.5) * math.log(1.5 / 2.5)
    assert kl_divergence(a, b, bins=3, range=(0, 3)) == pytest.approx(expected)
    # Asymmetric, and zero on equal samples.
    assert kl_divergence(a, a, bins=3) == 0.0


def test_kl_matches_scipy_entropy_on_smoothed_histograms():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=500), rng.normal(0.5, 1.0, size=300)
    edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 21)
    p = np.histogram(a, edges)[0] + 1.0
    q = np.histogram(b, edges)[0] + 1.0
    expected = scipy.stats.entropy(p, q)  # normalises both
    assert kl_divergence(a, b, bins=20, smoothing=1.0) == pytest.approx(expected)


def test_sample_distances_keys():
    out = sample_distances([0.0, 1.0, 2.0], [0.5, 1.0, 3.0], bins=4)
    assert set(out) == {"ks", "chi2", "kl"}
    assert out["ks"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ks_distance([], [1.0]), "a must hold"),
        (lambda: ks_distance([1.0], [np.nan]), "b must be finite"),
        (lambda: chi2_distance([1.0], [2.0], bins=0), "bins"),
        (lambda: chi2_distance([1.0], [2.0], range=(1, 1)), "range"),
        (lambda: kl_divergence([1.0], [2.0], smoothing=0.0), "smoothing"),
    ],
)
def test_metric_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
