"""Seed 003's shape-aware loss and the JAX distance transforms, against scipy's
exact EDT, brute-force all-pairs distances and NumPy references written here."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from jax.test_util import check_grads

from jaxsim.losses import (
    dice_ce_shape_loss,
    shape_aware_loss,
    shape_information,
    signed_distance_map,
    squared_distance_transform,
)

X64 = bool(jax.config.read("jax_enable_x64"))
RTOL = 1e-10 if X64 else 2e-5


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def brute_force_sq_distance(features, spacing):
    """All pairs: squared distance from every voxel to the nearest feature."""
    grid = np.indices(features.shape).reshape(features.ndim, -1).T * np.asarray(spacing)
    feat = grid[features.ravel()]
    d2 = ((grid[:, None, :] - feat[None, :, :]) ** 2).sum(-1)
    return d2.min(axis=1).reshape(features.shape)


def ref_shape_information(mask, spacing, k=0.2):
    """SI from scipy's EDT (independent of the JAX transform)."""
    if not mask.any() or mask.all():
        return np.where(mask, _sigmoid(1.0 / k), 0.0)
    d_in = ndi.distance_transform_edt(mask, sampling=spacing)
    phi = d_in / d_in.max()
    return np.where(mask, _sigmoid((1.0 - phi) / k), 0.0)


@pytest.mark.parametrize(
    "shape, spacing",
    [((9,), (2.0,)), ((7, 9), (1.0, 2.5)), ((4, 6, 7), (3.0, 1.0, 0.7))],
)
def test_squared_distance_transform_matches_brute_force_and_scipy(shape, spacing):
    rng = np.random.default_rng(len(shape))
    features = rng.random(shape) < 0.15
    features.flat[0] = True
    got = np.asarray(squared_distance_transform(features, spacing))
    want = brute_force_sq_distance(features, spacing)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-9)
    scipy_d2 = ndi.distance_transform_edt(~features, sampling=spacing) ** 2
    np.testing.assert_allclose(got, scipy_d2, rtol=RTOL, atol=1e-9)


def test_distance_transform_batches_and_empty_items():
    batch = np.zeros((2, 5, 5), bool)
    batch[0, 2, 2] = True  # item 1 has no feature
    d2 = np.asarray(squared_distance_transform(batch, (1.0, 1.0)))
    assert d2[0, 0, 0] == 8.0 and d2[0, 2, 4] == 4.0  # (2,2)->(0,0): 4 + 4
    assert np.all(np.isinf(d2[1]))


def test_signed_distance_map_hand_computed():
    # inside distances 1, 2, 1 -> / 2; outside voxels 1 from the mask -> -1
    phi = signed_distance_map(jnp.array([0, 1, 1, 1, 0], bool), (1.0,))
    np.testing.assert_allclose(phi, [-1.0, 0.5, 1.0, 0.5, -1.0])
    # outside: distances 1, 2, 3 along the line, normalised by 3
    phi = signed_distance_map(jnp.array([1, 0, 0, 0], bool), (4.0,))
    np.testing.assert_allclose(phi, [1.0, -1 / 3, -2 / 3, -1.0], rtol=RTOL)
    assert np.all(np.asarray(signed_distance_map(jnp.ones((3, 3), bool), (1, 1))) == 0)


def test_shape_information_hand_computed_and_reference():
    si = shape_information(jnp.array([0, 1, 1, 1, 0], bool), spacing=(1.0,))
    # phi = (.5, 1, .5) inside: H(1 - phi) = sigmoid(2.5), sigmoid(0), sigmoid(2.5)
    s = 1 / (1 + math.exp(-2.5))
    np.testing.assert_allclose(si, [0.0, s, 0.5, s, 0.0], rtol=RTOL)
    rng = np.random.default_rng(3)
    mask = ndi.binary_dilation(rng.random((9, 11)) < 0.04, iterations=2)
    got = shape_information(mask, spacing=(1.5, 0.8), k=0.3)
    np.testing.assert_allclose(
        got, ref_shape_information(mask, (1.5, 0.8), 0.3), rtol=RTOL, atol=1e-7
    )


def ref_shape_loss(p, g, spacing, k=0.2):
    """Eq. 3 per (item, class), mean over pairs with a non-empty target."""
    terms = []
    for b, c in itertools.product(range(p.shape[0]), range(p.shape[-1])):
        mask = g[b, ..., c] >= 0.5
        if not mask.any():
            continue
        si = ref_shape_information(mask, spacing, k)
        terms.append(np.abs(p[b, ..., c] - si).sum() / mask.sum())
    return float(np.mean(terms)) if terms else 0.0


def _case(seed, shape=(2, 8, 9), n=3):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int64)
    labels[:, 2:6, 2:5] = 1
    labels[:, 3:7, 5:8] = 2
    labels[-1, 0, 0] = 2
    return rng.normal(0.0, 1.5, shape + (n,)), labels


def test_shape_loss_hand_computed():
    # One item, 5 voxels, 2 classes given as probabilities. Class 1's mask is
    # voxels 1-3: SI = (0, s, .5, s, 0) with s = sigmoid(2.5); class 0's mask is
    # voxels 0 and 4, each its own one-voxel blob: phi = 1 there, SI = .5.
    p1 = np.array([0.1, 0.9, 0.8, 0.7, 0.2])
    probs = np.stack([1 - p1, p1], axis=-1)[None]
    labels = np.array([[0, 1, 1, 1, 0]])
    s = 1 / (1 + math.exp(-2.5))
    l1 = (0.1 + abs(0.9 - s) + 0.3 + abs(0.7 - s) + 0.2) / 3
    l0 = (abs(0.9 - 0.5) + 0.1 + 0.2 + 0.3 + abs(0.8 - 0.5)) / 2
    got = shape_aware_loss(probs, labels, activation=None)
    assert float(got) == pytest.approx((l0 + l1) / 2, rel=RTOL)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_shape_loss_matches_reference(activation):
    z, labels = _case(1)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    if activation == "sigmoid":
        p = _sigmoid(z)
    g = np.eye(3)[labels]
    spacing = (1.0, 2.0)
    want = ref_shape_loss(p, g, spacing)
    got = shape_aware_loss(z, labels, spacing=spacing, activation=activation)
    assert float(got) == pytest.approx(want, rel=1e-4)
    if activation == "softmax":  # channel-first layout, one-hot target: same
        first = shape_aware_loss(
            np.moveaxis(z, -1, 1),
            np.moveaxis(g, -1, 1),
            spacing=spacing,
            channel_axis=1,
        )
        assert float(first) == pytest.approx(float(got), rel=RTOL)


def test_shape_loss_skips_empty_classes_and_is_zero_at_its_target():
    # Class 2 absent: only classes 0 and 1 count. Predicting SI itself gives 0.
    labels = np.zeros((1, 6, 6), np.int64)
    labels[0, 1:5, 1:4] = 1
    g = np.eye(3)[labels]
    si = np.stack(
        [ref_shape_information(g[0, ..., c] >= 0.5, (1.0, 1.0)) for c in range(3)], -1
    )[None]
    assert float(shape_aware_loss(si, labels, activation=None)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_dice_ce_shape_loss_is_eq4():
    z, labels = _case(2)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    g = np.eye(3)[labels]
    axes = (1, 2)
    dice = (2 * (g * p).sum(axes) + 1e-5) / (g.sum(axes) + p.sum(axes) + 1e-5)
    l_d = 1 - dice.mean()
    l_ce = -(g * np.log(p)).mean(axis=axes).mean()
    want = l_d + l_ce + 0.05 * ref_shape_loss(p, g, (1.0, 1.0))
    assert float(dice_ce_shape_loss(z, labels)) == pytest.approx(want, rel=1e-4)


def test_shape_loss_gradient_float64():
    z, labels = _case(4, shape=(1, 4, 5))
    with jax.enable_x64(True):
        check_grads(
            lambda a: dice_ce_shape_loss(a, labels, gamma=1.0),
            (jnp.asarray(z),),
            order=1,
            modes=("rev",),
        )


def test_shape_loss_errors():
    z, labels = _case(5)
    with pytest.raises(ValueError, match="one value per spatial axis"):
        shape_aware_loss(z, labels, spacing=(1.0,))
    with pytest.raises(ValueError, match="spacing values must be finite and > 0"):
        shape_aware_loss(z, labels, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="k must be"):
        shape_information(np.ones(3, bool), spacing=(1.0,), k=0.0)
    with pytest.raises(TypeError, match="spacing must be a sequence"):
        shape_information(np.ones(3, bool), spacing=1.0)


def test_precomputed_shape_information_gives_the_same_losses():
    z, labels = _case(6)
    masks = np.moveaxis(np.eye(3)[labels], -1, 1) >= 0.5  # channel-first masks
    si = np.moveaxis(np.asarray(shape_information(masks, spacing=(1.0, 2.0))), 1, -1)
    for loss in (shape_aware_loss, dice_ce_shape_loss):
        direct = loss(z, labels, spacing=(1.0, 2.0))
        given = loss(z, labels, spacing=(1.0, 2.0), shape_info=si)
        assert float(given) == pytest.approx(float(direct), rel=RTOL)
    with pytest.raises(ValueError, match="shape_info must have the logits' shape"):
        shape_aware_loss(z, labels, shape_info=si[0])
