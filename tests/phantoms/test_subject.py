"""Subject pytree, population sampling and validation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.phantoms import (
    Subject,
    check_subject,
    default_subject,
    end_systolic_phase,
    sample_subjects,
)


def test_subject_has_at_least_20_array_fields(male):
    # every field is an array leaf, but the optional residual deformation (None)
    fields = [f for f in dataclasses.fields(Subject) if f.name != "deformation"]
    assert len(fields) >= 20
    assert male.deformation is None
    leaves = jax.tree_util.tree_leaves(male)
    assert len(leaves) == len(fields)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)


def test_defaults_differ_by_sex(male, female):
    assert float(male.sex) == 0.0 and float(female.sex) == 1.0
    assert float(female.edv) < float(male.edv)
    assert float(female.body_lateral) < float(male.body_lateral)


def test_same_key_same_subjects_and_prefix_property():
    key = jax.random.key(3)
    a = sample_subjects(key, 5)
    b = sample_subjects(key, 5)
    c = sample_subjects(key, 2)
    other = sample_subjects(jax.random.key(4), 5)
    for la, lb, lc, _ in zip(
        *(jax.tree_util.tree_leaves(s) for s in (a, b, c, other)), strict=True
    ):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(la[:2], lc)
    assert not np.allclose(a.edv, other.edv)


def test_batch_slices_with_tree_map(pick):
    subjects = sample_subjects(jax.random.key(0), 4)
    assert subjects.edv.shape == (4,) and subjects.heart_offset.shape == (4, 3)
    one = pick(subjects, 2)
    assert one.edv.shape == () and one.heart_offset.shape == (3,)
    check_subject(one)


@pytest.mark.parametrize("sex, code", [("male", 0.0), ("female", 1.0)])
def test_sampled_population_matches_cited_statistics(sex, code):
    # Maceira et al. 2006: EDV 160 +/- 29 mL (men), 135 +/- 26 mL (women);
    # EF 69 +/- 6 %.
    n = 400
    subjects = sample_subjects(jax.random.key(11), n, sex=sex)
    check_subject(subjects)
    assert np.all(np.asarray(subjects.sex) == code)
    edv_mean, edv_sd = (160.0, 29.0) if code == 0 else (135.0, 26.0)
    edv = np.asarray(subjects.edv)
    assert abs(edv.mean() - edv_mean) < 4 * edv_sd / np.sqrt(n)
    assert 0.7 * edv_sd < edv.std() < 1.1 * edv_sd  # truncation at 2.5 SD shrinks it
    ef = 1.0 - np.asarray(subjects.esv) / edv
    assert abs(ef.mean() - 0.69) < 4 * 0.06 / np.sqrt(n)
    assert np.all(np.asarray(subjects.esv) < edv)
    phase = np.asarray(end_systolic_phase(subjects))
    assert 0.25 < phase.mean() < 0.45


def test_unspecified_sex_gives_both():
    sex = np.asarray(sample_subjects(jax.random.key(1), 64).sex)
    assert set(np.unique(sex)) == {0.0, 1.0}


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(body_ap=-10.0), "body_ap"),
        (dict(wall_thickness=0.0), "wall_thickness"),
        (dict(esv=170.0), "esv must be smaller"),
        (dict(edv=float("nan")), "edv must be finite"),
        (dict(sex=0.5), "sex must be 0"),
        (dict(es_time=0.8), "es_time"),
        (dict(heart_offset=jnp.zeros(2)), "heart_offset"),
    ],
)
def test_invalid_subject_raises(male, change, match):
    bad = male.replace(**{k: jnp.asarray(v) for k, v in change.items()})
    with pytest.raises(ValueError, match=match):
        check_subject(bad)


@pytest.mark.parametrize("sex", ["unknown", 2, None])
def test_unknown_sex_raises(sex):
    with pytest.raises(ValueError, match="sex"):
        default_subject(sex)
    if sex is not None:
        with pytest.raises(ValueError, match="sex"):
            sample_subjects(jax.random.key(0), 2, sex=sex)


def test_sample_subjects_rejects_bad_n():
    with pytest.raises(ValueError, match="n must be"):
        sample_subjects(jax.random.key(0), 0)
