"""kth_largest: the exact order statistic against NumPy's sort."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.population import kth_largest


def _cases(rng):
    for trial in range(24):
        n = (1, 7, 64, 399)[(trial // 4) % 4]  # few shapes: few compilations
        k = int(rng.integers(1, n + 1))
        kind = trial % 4
        if kind == 0:
            x = rng.normal(size=n)
        elif kind == 1:  # many ties
            x = rng.integers(0, 5, n).astype(float)
        elif kind == 2:  # any scale
            x = rng.exponential(size=n) * 10.0 ** rng.integers(-20, 20)
        else:  # one tiny value among zeros
            x = np.concatenate([np.zeros(n - 1), [1e-30]])
        yield x, k


def test_equals_the_sorted_value_float32():
    for x, k in _cases(np.random.default_rng(0)):
        x = x.astype(np.float32)
        expected = np.sort(x)[::-1][k - 1]
        assert float(kth_largest(jnp.asarray(x), k)) == expected


def test_batched_over_leading_axes_and_an_image_percentile():
    rng = np.random.default_rng(1)
    images = rng.gamma(2.0, size=(3, 2, 64 * 64)).astype(np.float32)
    k = int(np.ceil(0.005 * images.shape[-1]))
    got = np.asarray(kth_largest(jnp.asarray(images), k))
    expected = np.sort(images, axis=-1)[..., -k]
    np.testing.assert_array_equal(got, expected)


def test_nans_are_not_counted():
    x = jnp.asarray([3.0, jnp.nan, 1.0, 2.0, jnp.nan])
    assert float(kth_largest(x, 1)) == 3.0
    assert float(kth_largest(x, 3)) == 1.0


def test_rank_outside_the_range_is_refused():
    with pytest.raises(ValueError, match=r"k must lie in \[1, 4\]"):
        kth_largest(jnp.zeros(4), 5)
    with pytest.raises(ValueError, match="k must lie"):
        kth_largest(jnp.zeros(4), 0)
