"""Fréchet distance against SciPy's matrix square root and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from jaxsim.metrics import frechet_distance, gaussian_statistics


def scipy_fd(a, b):
    linalg = pytest.importorskip("scipy.linalg")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(s_a @ s_b).real
    return np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * root)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(300, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(200, d)) @ rng.normal(size=(d, d)) + 0.5
    np.testing.assert_allclose(frechet_distance(a, b), scipy_fd(a, b), rtol=1e-8)


def test_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # a shift adds |shift|^2; scaling a 1-D sample by c gives (c - 1)^2 (m^2 + var)
    assert frechet_distance(a, a + 2.0) == pytest.approx(5 * 4.0, rel=1e-9)
    x = rng.normal(size=(1000, 1)) + 0.3
    var, mean = np.var(x, ddof=1), x.mean()
    assert frechet_distance(x, 3 * x) == pytest.approx(4 * (mean**2 + var), rel=1e-9)
    # symmetric
    b = rng.normal(size=(300, 5)) * 2
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_rank_deficient_covariance_is_finite():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 10)), rng.normal(size=(5, 10))  # N < D
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0


def test_bad_input():
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
