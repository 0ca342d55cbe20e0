"""Deep supervision: nnU-Net's weights, nearest-exact target downsampling, and the
weighted sum over outputs, checked by hand and against explicit loops."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from jaxsim.losses import (
    deep_supervision_loss,
    deep_supervision_weights,
    dice_ce_loss,
    downsample_labels,
)


def test_weights_hand_computed():
    # 1, 1/2, 1/4, (1/8 -> 0); sum 1.75
    np.testing.assert_allclose(
        deep_supervision_weights(4), [1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0]
    )
    np.testing.assert_allclose(deep_supervision_weights(2), [1.0, 0.0])
    np.testing.assert_allclose(deep_supervision_weights(1), [1.0])
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        deep_supervision_weights(0)


def test_downsample_labels_nearest_exact():
    x = np.arange(8)[None]
    # o -> floor((o + 0.5) * 8 / 4) = 1, 3, 5, 7
    np.testing.assert_array_equal(downsample_labels(x, (4,)), [[1, 3, 5, 7]])
    # o -> floor((o + 0.5) * 8 / 3) = floor(1.33), floor(4), floor(6.67)
    np.testing.assert_array_equal(downsample_labels(x, (3,)), [[1, 4, 6]])
    two = np.arange(16).reshape(1, 4, 4)
    np.testing.assert_array_equal(downsample_labels(two, (2, 2)), [[[5, 7], [13, 15]]])
    with pytest.raises(ValueError, match="one size >= 1 per spatial axis"):
        downsample_labels(two, (2, 0))


def _outputs(seed, channel_axis):
    rng = np.random.default_rng(seed)
    shapes = [(2, 8, 8, 3), (2, 4, 4, 3), (2, 2, 2, 3)]
    outs = [rng.normal(size=s) for s in shapes]
    if channel_axis == 1:
        outs = [np.moveaxis(o, -1, 1) for o in outs]
    labels = rng.integers(0, 3, (2, 8, 8))
    return outs, labels


@pytest.mark.parametrize("channel_axis", [-1, 1])
def test_loss_is_the_weighted_sum_over_downsampled_targets(channel_axis):
    outs, labels = _outputs(0, channel_axis)
    loss = functools.partial(dice_ce_loss, channel_axis=channel_axis)
    # weights 1, 1/2, 0 normalised: 2/3, 1/3, 0; targets at 4x4 take the odd
    # rows and columns (nearest-exact), the coarsest output is not evaluated
    want = 2 / 3 * float(loss(outs[0], labels)) + 1 / 3 * float(
        loss(outs[1], labels[:, 1::2, 1::2])
    )
    got = deep_supervision_loss(loss, outs, labels, channel_axis=channel_axis)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_one_hot_target_and_custom_weights():
    outs, labels = _outputs(1, -1)
    onehot = np.eye(3)[labels]
    w = [0.5, 0.25, 0.25]
    # nearest-exact: 8 -> 4 takes 1, 3, 5, 7; 8 -> 2 takes floor(2), floor(6)
    labels4 = labels[:, 1::2, 1::2]
    labels2 = labels[:, 2::4, 2::4]
    want = (
        0.5 * float(dice_ce_loss(outs[0], labels))
        + 0.25 * float(dice_ce_loss(outs[1], labels4))
        + 0.25 * float(dice_ce_loss(outs[2], labels2))
    )
    got = deep_supervision_loss(dice_ce_loss, outs, onehot, weights=w)
    assert float(got) == pytest.approx(want, rel=1e-5)
    jitted = jax.jit(lambda o, t: deep_supervision_loss(dice_ce_loss, o, t, weights=w))
    assert float(jitted(outs, labels)) == pytest.approx(want, rel=1e-5)


def test_deep_supervision_errors():
    outs, labels = _outputs(2, -1)
    with pytest.raises(ValueError, match="weights must be 3 values >= 0"):
        deep_supervision_loss(dice_ce_loss, outs, labels, weights=[1.0, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        deep_supervision_loss(dice_ce_loss, [], labels)
