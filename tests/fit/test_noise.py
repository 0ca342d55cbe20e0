"""The noise estimate from local second differences (fast, no fit)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxsim.fit import estimate_noise_sigma


def _image(make_labels, sigma, texture, seed=0):
    """Piecewise-constant classes, a smooth bias, per-class texture, Rician noise."""
    rng = np.random.default_rng(seed)
    labels = make_labels(nz=5, n=64)
    level = np.array([0.9, 2.8, 0.7, 3.1])[labels]  # background, RV, MYO, LV
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in labels.shape), indexing="ij")
    clean = level * np.exp(0.05 * z - 0.08 * y + 0.06 * x)
    het = np.where(labels > 0, np.exp(texture * rng.standard_normal(labels.shape)), 1)
    noisy = clean * het + sigma * rng.standard_normal((2, *labels.shape))[0]
    image = np.hypot(noisy, sigma * rng.standard_normal(labels.shape))
    return image, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_estimate_ignores_class_texture(make_labels, seed):
    image, labels = _image(make_labels, 0.012, texture=0.03, seed=seed)
    sigma, rel = estimate_noise_sigma(image, labels)
    assert sigma == pytest.approx(0.012, rel=0.05)
    assert 0 < rel < 0.05


def test_noise_estimate_skips_dark_rician_voxels(make_labels):
    image, labels = _image(make_labels, 0.05, texture=0.0)
    air = 0.05 * np.random.default_rng(3).standard_normal((2, 5, 64, 8))
    image[:, :, :8] = np.hypot(*air)  # a strip of air: Rayleigh, not Gaussian
    sigma, _ = estimate_noise_sigma(image, labels)
    assert sigma == pytest.approx(0.05, rel=0.05)


def test_noise_estimate_without_enough_voxels_is_nan():
    sigma, rel = estimate_noise_sigma(np.ones((1, 4, 4)), np.zeros((1, 4, 4), int))
    assert np.isnan(sigma) and np.isnan(rel)
