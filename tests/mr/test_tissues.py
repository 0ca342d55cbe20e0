"""Tissue property table and sampler."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxsim.mr import (
    FIELD_STRENGTHS,
    default_tissue_properties,
    sample_tissue_properties,
    tissue_property_std,
)
from jaxsim.mr._tissue_table import TABLE
from jaxsim.phantoms import TISSUES


@pytest.mark.parametrize("field", FIELD_STRENGTHS)
def test_table_covers_every_tissue_with_a_source(field):
    assert set(TABLE[field]) == set(TISSUES)
    for name, entry in TABLE[field].items():
        assert entry.source, name
        assert entry.t1.mean > 0 and entry.t2.mean > 0 and entry.pd.mean >= 0


@pytest.mark.parametrize("field", FIELD_STRENGTHS)
def test_three_sigma_ranges_stay_physical(field):
    # The sampler truncates at <= 3 sd: even then T2 < T1 and all values positive.
    m, s = default_tissue_properties(field), tissue_property_std(field)
    t1_low = np.maximum(np.asarray(m.t1 - 3 * s.t1), 0.2 * np.asarray(m.t1))
    t2_high = np.asarray(m.t2 + 3 * s.t2)
    assert np.all(t2_high < t1_low)
    assert np.all(np.asarray(m.t2 - 3 * s.t2) > -np.asarray(m.t2))


def test_field_strength_trends():
    # T1 lengthens from 1.5 T to 3 T for every tissue with a measured value.
    lo, hi = default_tissue_properties(1.5), default_tissue_properties(3.0)
    measured = [i for i, t in enumerate(TISSUES) if t != "air"]
    assert np.all(np.asarray(hi.t1)[measured] > np.asarray(lo.t1)[measured])
    # Blood is brightest and lung darkest in PD among tissues with signal.
    assert lo.of("lv_blood").pd > lo.of("lv_myocardium").pd > lo.of("lung").pd


def test_sampler_statistics_and_truncation():
    key = jax.random.key(7)
    draws = sample_tissue_properties(key, 20000, field=1.5, truncation=2.0)
    m, s = default_tissue_properties(1.5), tissue_property_std(1.5)
    assert draws.t1.shape == (20000, len(TISSUES))
    z = (np.asarray(draws.t1) - np.asarray(m.t1)) / np.where(s.t1 > 0, s.t1, 1)
    assert np.all(np.abs(z) <= 2.0 + 1e-4)
    # A normal truncated at +-2 sd has sd 0.880 of the parent's.
    blood = TISSUES.index("lv_blood")
    np.testing.assert_allclose(np.std(z[:, blood]), 0.8796, rtol=0.02)
    np.testing.assert_allclose(np.mean(z[:, blood]), 0.0, atol=0.02)
    assert np.all(np.asarray(draws.t2) <= np.asarray(draws.t1))
    air = TISSUES.index("air")
    assert np.all(np.asarray(draws.pd)[:, air] == 0.0)


def test_sampler_is_reproducible_and_key_dependent():
    a = sample_tissue_properties(jax.random.key(1), 3)
    b = sample_tissue_properties(jax.random.key(1), 3)
    c = sample_tissue_properties(jax.random.key(2), 3)
    np.testing.assert_array_equal(a.t1, b.t1)
    assert not np.allclose(a.t1, c.t1)
    single = sample_tissue_properties(jax.random.key(1))
    assert single.pd.shape == (len(TISSUES),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"field": 7.0}, "field must be one of"),
        ({"truncation": 0.0}, "truncation"),
        ({"truncation": 5.0}, "truncation"),
        ({"n": 0}, "n must be a positive integer"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_tissue_properties(jax.random.key(0), **kwargs)


def test_of_rejects_unknown_tissue():
    with pytest.raises(ValueError, match="name must be one of"):
        default_tissue_properties().of("brain")
