"""Bijections between parameter pytrees and unconstrained vectors.

Invariants: decoding any real vector gives a pytree that the simulators' own
validation accepts (ranges read from the same tables), encoding then decoding a
valid pytree returns it, batches decode like a loop, and gradients stay finite.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.kernels import bssfp_signal
from jaxsim.labels import TISSUES
from jaxsim.mr import (
    PROPERTY_RANGES,
    SEQUENCE_RANGES,
    TAGGING_RANGES,
    BSSFPSequence,
    TaggingSequence,
    TissueProperties,
    check_sequence,
    check_tissue,
    default_tissue_properties,
    sample_tissue_properties,
    seed2021_contrasts,
)
from jaxsim.parameters import (
    field_from_unconstrained,
    field_slices,
    field_to_unconstrained,
    from_unconstrained,
    to_unconstrained,
    unconstrained_size,
)
from jaxsim.phantoms import (
    Subject,
    check_subject,
    default_subject,
    end_systolic_phase,
    sample_subjects,
)
from jaxsim.phantoms._subject import FIELD_SPECS


def _pick(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _valid_trees():
    subjects = sample_subjects(jax.random.key(0), 6)
    tissue = sample_tissue_properties(jax.random.key(1), 4)
    _, seq, _, _ = seed2021_contrasts(jax.random.key(2))
    return {
        "subject": subjects,
        "tissue": tissue,
        "sequence": seq,
        "tagging": TaggingSequence(
            tag_spacing=jnp.asarray([6.0, 8.0]),
            flip_total=jnp.asarray([0.5, 1.5]),
            angle=jnp.asarray([0.0, -0.7]),
            readout_flip=jnp.asarray([0.1, 0.3]),
            tr=jnp.asarray([4.5e-3, 6e-3]),
            te=jnp.asarray([2e-3, 3e-3]),
        ),
    }


@pytest.mark.parametrize("name", ["subject", "tissue", "sequence", "tagging"])
def test_round_trip_of_valid_values(name):
    tree = _valid_trees()[name]
    u = to_unconstrained(tree)
    assert u.ndim == 2 and u.shape[-1] == unconstrained_size(_pick(tree, 0))
    back = from_unconstrained(u, tree)
    # Values on a closed bound (air's PD of 0) come back a millionth of the
    # interval inside it.
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(back), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-5, atol=2e-6)


def _random_vectors(template, n, scale, seed):
    size = unconstrained_size(template)
    return scale * jax.random.normal(jax.random.key(seed), (n, size))


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_any_vector_gives_a_valid_subject(scale):
    template = default_subject("female")
    u = _random_vectors(template, 64, scale, 3)
    subjects = from_unconstrained(u, template)
    check_subject(subjects)  # FIELD_SPECS ranges, esv < edv, ES phase in range
    assert subjects.edv.shape == (64,) and subjects.heart_offset.shape == (64, 3)
    np.testing.assert_array_equal(subjects.sex, 1.0)  # data, from the template
    for field, spec in FIELD_SPECS.items():
        value = np.asarray(getattr(subjects, field))
        if field != "sex":
            assert value.min() >= spec.low and value.max() <= spec.high, field
    phase = np.asarray(end_systolic_phase(subjects))
    assert np.all((phase >= 0.15) & (phase <= 0.65))


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_any_vector_gives_valid_tissue_and_sequences(scale):
    tissue = from_unconstrained(
        _random_vectors(default_tissue_properties(), 16, scale, 4),
        default_tissue_properties(),
    )
    check_tissue(tissue)
    assert np.all(np.asarray(tissue.t2) <= np.asarray(tissue.t1))
    assert np.asarray(tissue.pd).max() <= PROPERTY_RANGES["pd"][1]
    seq = from_unconstrained(
        _random_vectors(BSSFPSequence(), 16, scale, 5), BSSFPSequence()
    )
    check_sequence(seq)
    assert np.all(np.asarray(seq.te) <= np.asarray(seq.tr))
    assert np.asarray(seq.flip).max() <= SEQUENCE_RANGES["flip"][1]
    # The kernel accepts every decoded combination and gives finite signals.
    sig = bssfp_signal(
        tissue.pd,
        tissue.t1,
        tissue.t2,
        seq.tr[:, None],
        seq.te[:, None],
        seq.flip[:, None],
    )
    assert np.all(np.isfinite(np.asarray(sig)))
    tag = from_unconstrained(
        _random_vectors(TaggingSequence(), 16, scale, 6), TaggingSequence()
    )
    assert np.asarray(tag.readout_flip).max() < TAGGING_RANGES["readout_flip"][1]
    assert np.all(np.asarray(tag.te) <= np.asarray(tag.tr))
    assert np.asarray(tag.tag_spacing).min() > 0


def test_interval_maps_are_the_documented_ones():
    """Field by field, against the formulas written out in NumPy."""
    s = default_subject("male")
    u = np.asarray(to_unconstrained(s), np.float64)
    sl = field_slices(s)
    lo, hi = FIELD_SPECS["body_ap"].low, FIELD_SPECS["body_ap"].high
    t = (127.0 - lo) / (hi - lo)
    np.testing.assert_allclose(u[sl["body_ap"]], np.log(t / (1 - t)), rtol=1e-5)
    # esv's upper bound is the subject's own edv
    lo, hi = FIELD_SPECS["esv"].low, 160.0
    t = (50.0 - lo) / (hi - lo)
    np.testing.assert_allclose(u[sl["esv"]], np.log(t / (1 - t)), rtol=1e-4)
    # t2's upper bound is the same tissue's t1
    props = default_tissue_properties()
    v = np.asarray(to_unconstrained(props), np.float64)
    n = len(TISSUES)
    t1, t2 = np.asarray(props.t1, np.float64), np.asarray(props.t2, np.float64)
    low = PROPERTY_RANGES["t2"][0]
    t = (t2 - low) / (t1 - low)
    np.testing.assert_allclose(v[2 * n :], np.log(t / (1 - t)), rtol=1e-4, atol=1e-4)
    # one field on its own
    flip = field_to_unconstrained(BSSFPSequence, "flip", 1.0)
    np.testing.assert_allclose(
        float(field_from_unconstrained(BSSFPSequence, "flip", flip)), 1.0, rtol=1e-6
    )


def test_batches_decode_like_a_loop_and_gradients_are_finite():
    template = default_subject()
    u = _random_vectors(template, 3, 2.0, 7)
    batch = from_unconstrained(u, template)
    for i in range(3):
        one = from_unconstrained(u[i], template)
        for a, b in zip(
            jax.tree.leaves(one), jax.tree.leaves(_pick(batch, i)), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    # far outside: gradients finite (saturated, not NaN)
    g = jax.grad(lambda v: from_unconstrained(v, template).esv)(u[0] * 50)
    assert np.all(np.isfinite(np.asarray(g)))
    g = jax.grad(lambda v: jnp.sum(from_unconstrained(v, template).edv))(u[0])
    assert np.count_nonzero(np.asarray(g)) == 1  # edv depends on its own entry only


def test_unregistered_and_mis_sized_inputs_raise():
    @dataclasses.dataclass(frozen=True)
    class Other:
        x: float = 1.0

    with pytest.raises(TypeError, match="no registered parameter bijection"):
        to_unconstrained(Other())
    with pytest.raises(ValueError, match="last axis"):
        from_unconstrained(jnp.zeros(3), default_subject())
    with pytest.raises(ValueError, match="no learnable field"):
        field_to_unconstrained(Subject, "sex", 0.0)
    assert isinstance(default_tissue_properties(), TissueProperties)
