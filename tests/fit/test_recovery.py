"""The fit recovers the parameters of an image simulated by the same model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.fit import (
    FitParameters,
    class_signals,
    fit_histograms,
    prepare_data,
    render,
)
from jaxsim.mr import BSSFPSequence

SPACING = (8.0, 1.5, 1.5)


def _truth(seq):
    return FitParameters(
        pd=jnp.array([0.92, 0.78, 0.97, 0.8]),
        t1=jnp.array([1.40, 0.97, 1.47, 0.9]),
        t2=jnp.array([0.27, 0.049, 0.31, 0.05]),
        flip=jnp.asarray(seq.flip),
        scale=jnp.asarray(3.0),
        sigma=jnp.asarray(0.012),
        pv_width=jnp.asarray(0.9),
        pv_width_z=jnp.asarray(2.5),
        texture=jnp.array([0.03, 0.03, 0.03]),
        bias=jnp.array([0.05, -0.08, 0.06, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    )


pytestmark = pytest.mark.slow  # ~25 s of CPU, more on a loaded machine


@pytest.fixture(scope="module")
def recovered(make_labels):
    labels = make_labels(nz=5, n=64)
    seq = BSSFPSequence()
    truth = _truth(seq)
    data = prepare_data(labels + 1.0, labels, spacing=SPACING)
    # Simulate on the crop, then place the crop back into a full frame.
    crop = np.asarray(render(truth, data, seq, key=jax.random.key(7)))
    image = np.zeros(labels.shape)
    (z0, z1), (y0, y1), (x0, x1) = data.crop
    image[z0:z1, y0:y1, x0:x1] = crop
    result = fit_histograms(
        image, labels, key=jax.random.key(0), spacing=SPACING, restarts=2, steps=200
    )
    return truth, result, seq


def test_recovers_signal_ratios(recovered):
    truth, result, seq = recovered
    s_true = np.asarray(class_signals(truth, seq))[:3]
    s_fit = np.asarray(class_signals(result.parameters, seq))[:3]
    myo = 1  # rv_blood, lv_myocardium, lv_blood
    ratio_true = s_true / s_true[myo]
    ratio_fit = s_fit / s_fit[myo]
    print("ratios true", ratio_true, "fit", ratio_fit)
    np.testing.assert_allclose(ratio_fit, ratio_true, rtol=0.05)


def test_recovers_noise_sigma(recovered):
    truth, result, _ = recovered
    print("sigma true", float(truth.sigma), "fit", float(result.parameters.sigma))
    assert float(result.parameters.sigma) == pytest.approx(float(truth.sigma), rel=0.05)


def test_fit_matches_distributions_and_reports_uncertainty(recovered):
    _, result, _ = recovered
    for name, m in result.metrics.items():
        assert m["ks_after"] < 0.1, (name, m)
    lap = result.laplace_std
    assert np.all(np.isfinite(np.asarray(lap.sigma))) and float(lap.sigma) > 0
    report = result.parameters_dict()
    assert set(report["tissues"]) == {"rv_blood", "lv_myocardium", "lv_blood", "other"}
    assert report["tissues"]["lv_blood"]["t2"]["laplace_std"] > 0
    assert result.history.shape == (200, 2)
