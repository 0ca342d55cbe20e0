"""Cardiomyopathy groups in the sampler: each pathological subject lies in one
group's ranges, normal ones are untouched, and the result is a valid subject."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxsim.phantoms import FIELD_SPECS, check_subject, sample_subjects
from jaxsim.population import PATHOLOGIES, SamplerSpec, check_spec
from jaxsim.population._sampler import _pathological

FIELDS = ("edv", "esv", "wall_thickness", "rv_lv_ratio")


def _one(subjects, i):
    return jax.tree.map(lambda a: a[i], subjects)


def _group_of(before, after):
    """The groups whose ranges explain ``after`` (NumPy float64 reference)."""
    edv0, wall0, rv0 = (
        float(getattr(before, f)) for f in ("edv", "wall_thickness", "rv_lv_ratio")
    )
    edv, esv, wall, rv = (float(getattr(after, f)) for f in FIELDS)
    ef = 1.0 - esv / edv
    tol = 1e-4

    def inside(value, rng, name=None):
        lo, hi = rng
        if name is not None:  # clipped to the subject range
            lo = max(lo, FIELD_SPECS[name].low)
            hi = min(hi, FIELD_SPECS[name].high)
        return lo - tol <= value <= hi + tol

    found = []
    for name, edv_s, ef_r, wall_s, rv_s in PATHOLOGIES:
        ok = (
            inside(edv, (edv0 * edv_s[0], edv0 * edv_s[1]), "edv")
            and inside(ef, ef_r)
            and inside(wall, (wall0 * wall_s[0], wall0 * wall_s[1]), "wall_thickness")
            and inside(rv, (rv0 * rv_s[0], rv0 * rv_s[1]), "rv_lv_ratio")
        )
        if ok:
            found.append(name)
    return found


def test_every_pathological_subject_lies_in_one_group():
    subjects = sample_subjects(jax.random.key(0), 24)
    seen = set()
    for i in range(24):
        s = _one(subjects, i)
        sick = _pathological(jax.random.key(100 + i), s, 1.0)
        check_subject(sick)  # valid ranges
        groups = _group_of(s, sick)
        assert groups, f"subject {i} matches no group"
        seen.update(groups)
        # everything else is the normal subject's
        for name in FIELD_SPECS:
            if name not in FIELDS:
                np.testing.assert_array_equal(getattr(sick, name), getattr(s, name))
    assert {"dilated", "hypertrophic"} <= seen


def test_probability_zero_keeps_the_normal_subject():
    s = _one(sample_subjects(jax.random.key(1), 1), 0)
    same = _pathological(jax.random.key(3), s, 0.0)
    for name in FIELD_SPECS:
        np.testing.assert_array_equal(getattr(same, name), getattr(s, name))


def test_hypertrophy_thickens_and_dilation_enlarges():
    s = _one(sample_subjects(jax.random.key(2), 1), 0)
    by_group = {}
    for k in range(40):
        sick = _pathological(jax.random.key(k), s, 1.0)
        for g in _group_of(s, sick):
            by_group.setdefault(g, sick)
    assert by_group["hypertrophic"].wall_thickness >= 1.6 * s.wall_thickness - 1e-3 or (
        by_group["hypertrophic"].wall_thickness == FIELD_SPECS["wall_thickness"].high
    )
    assert (
        by_group["dilated"].edv > 1.39 * s.edv
        or by_group["dilated"].edv == FIELD_SPECS["edv"].high
    )
    d = by_group["dilated"]
    assert 1.0 - d.esv / d.edv <= 0.40 + 1e-4  # reduced ejection fraction


def test_pathology_range_is_checked():
    with pytest.raises(ValueError, match="pathology must lie within"):
        check_spec(SamplerSpec(pathology=(0.0, 1.2)))
