"""plausibility: swapped labels and impossible fitted values are named; a right
labelling of literature values raises nothing."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxsim.fit import default_parameters, make_prior, plausibility, prepare_data
from jaxsim.mr import BSSFPSequence


def _image(labels):
    rng = np.random.default_rng(0)
    base = np.choose(labels, [0.05, 0.35, 0.1, 0.45])  # bg, RV, MYO, LV (bSSFP order)
    return np.abs(base + 0.02 * rng.normal(size=labels.shape)).astype(np.float32)


def test_swapped_and_implausible_are_reported(labels):
    sequence = BSSFPSequence()
    right = prepare_data(_image(labels), labels, spacing=(8.0, 1.4, 1.4))
    swapped = prepare_data(
        _image(labels), labels, spacing=(8.0, 1.4, 1.4),
        classes={"rv_blood": 1, "lv_myocardium": 3, "lv_blood": 2},
    )  # fmt: skip
    prior = make_prior(right.classes, flip=sequence.flip)
    params = default_parameters(right, sequence)
    assert plausibility(params, right, sequence, prior) == ()
    found = plausibility(params, swapped, sequence, prior)
    assert any("lv_blood (label 2)" in w and "swapped" in w for w in found)
    # a myocardial PD far beyond the literature's spread
    pd = np.asarray(params.pd).copy()
    pd[right.classes.index("lv_myocardium")] *= 30.0
    wild = dataclasses.replace(params, pd=pd)
    found = plausibility(wild, right, sequence, prior)
    assert any(w.startswith("fitted pd of lv_myocardium") for w in found)
