"""Soft Dice, Dice + CE and Focal-Tversky against float64 NumPy references written
here (explicit loops over items and classes), hand-computed cases, invariants and
gradient checks in float64."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxsim.losses import dice_ce_loss, focal_tversky_loss, soft_dice_loss

X64 = bool(jax.config.read("jax_enable_x64"))
RTOL = 1e-10 if X64 else 2e-5


# --------------------------------------------------------------------- references
def _softmax(z):  # channel-last
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _onehot(labels, n):
    return np.eye(n)[labels]


def ref_soft_dice(p, g, *, include_background, squared, nr, dr, batch):
    """p, g: (batch, voxels, classes) float64; MONAI's DiceLoss arithmetic."""
    classes = range(0 if include_background else 1, p.shape[-1])
    items = [slice(None)] if batch else [slice(b, b + 1) for b in range(p.shape[0])]
    losses = []
    for it in items:
        for c in classes:
            pc, gc = p[it, :, c].ravel(), g[it, :, c].ravel()
            den = (gc**2).sum() + (pc**2).sum() if squared else gc.sum() + pc.sum()
            losses.append(1 - (2 * (pc * gc).sum() + nr) / (den + dr))
    return float(np.mean(losses))


def ref_dice_ce(z, labels, *, batch_dice, smooth, include_background):
    """nnU-Net's DC_and_CE_loss (as 1 - dc) on channel-last logits z."""
    n = z.shape[-1]
    p, g = _softmax(z), _onehot(labels, n)
    ce = -np.mean(np.log(np.take_along_axis(p, labels[..., None], -1)))
    p, g = p.reshape(p.shape[0], -1, n), g.reshape(g.shape[0], -1, n)
    classes = range(0 if include_background else 1, n)
    items = [slice(None)] if batch_dice else [slice(b, b + 1) for b in range(len(p))]
    dcs = []
    for it in items:
        for c in classes:
            pc, gc = p[it, :, c].ravel(), g[it, :, c].ravel()
            dcs.append((2 * (pc * gc).sum() + smooth) / (pc.sum() + gc.sum() + smooth))
    return ce + 1 - np.mean(dcs)


def ref_focal_tversky(p, g, *, alpha, beta, gamma, smooth, include_background):
    """Per item: sum over classes of (1 - TI_c)**(1/gamma); mean over items."""
    classes = range(0 if include_background else 1, p.shape[-1])
    per_item = []
    for b in range(p.shape[0]):
        total = 0.0
        for c in classes:
            pc, gc = p[b, :, c], g[b, :, c]
            tp, fn, fp = (pc * gc).sum(), ((1 - pc) * gc).sum(), (pc * (1 - gc)).sum()
            ti = (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)
            total += (1 - ti) ** (1 / gamma)
        per_item.append(total)
    return float(np.mean(per_item))


def _case(seed, shape=(2, 5, 6), n=3):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, shape + (n,))
    labels = rng.integers(0, n, shape)
    return z, labels


# Probabilities of 4 voxels, 2 classes, used by the hand-computed cases.
P4 = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]])
L4 = np.array([[0, 1, 0, 1]])


# ---------------------------------------------------------------------- soft Dice
def test_soft_dice_hand_computed():
    # class 0: I = .9 + .6 = 1.5, sum g = 2, sum p = 2.2 -> dice 3 / 4.2
    # class 1: I = .8 + .5 = 1.3, sum g = 2, sum p = 1.8 -> dice 2.6 / 3.8
    want = 1 - (3 / 4.2 + 2.6 / 3.8) / 2
    got = soft_dice_loss(P4, L4, activation=None, smooth_nr=0.0, smooth_dr=0.0)
    assert float(got) == pytest.approx(want, rel=RTOL)
    # squared_pred: sum p^2 = 1.46 and 1.06 -> dice 3 / 3.46 and 2.6 / 3.06
    want_sq = 1 - (3 / 3.46 + 2.6 / 3.06) / 2
    got_sq = soft_dice_loss(
        P4, L4, activation=None, squared_pred=True, smooth_nr=0.0, smooth_dr=0.0
    )
    assert float(got_sq) == pytest.approx(want_sq, rel=RTOL)
    # background excluded: class 1 only
    got_fg = soft_dice_loss(
        P4, L4, activation=None, include_background=False, smooth_nr=0, smooth_dr=0
    )
    assert float(got_fg) == pytest.approx(1 - 2.6 / 3.8, rel=RTOL)


@pytest.mark.parametrize(
    "include_background, squared, batch, activation",
    [
        (True, False, False, "softmax"),
        (False, True, False, "softmax"),
        (True, False, True, "sigmoid"),
        (False, False, True, "softmax"),
    ],
)
def test_soft_dice_matches_reference(include_background, squared, batch, activation):
    z, labels = _case(1)
    p = _softmax(z) if activation == "softmax" else 1 / (1 + np.exp(-z))
    g = _onehot(labels, 3)
    want = ref_soft_dice(
        p.reshape(2, -1, 3),
        g.reshape(2, -1, 3),
        include_background=include_background,
        squared=squared,
        nr=1e-5,
        dr=1e-5,
        batch=batch,
    )
    got = soft_dice_loss(
        z,
        labels,
        activation=activation,
        include_background=include_background,
        squared_pred=squared,
        batch=batch,
    )
    assert float(got) == pytest.approx(want, rel=RTOL)


def test_soft_dice_layouts_and_targets_agree():
    z, labels = _case(2)
    last = soft_dice_loss(z, labels, reduction="none")
    first = soft_dice_loss(
        np.moveaxis(z, -1, 1), labels, channel_axis=1, reduction="none"
    )
    onehot = soft_dice_loss(z, _onehot(labels, 3), reduction="none")
    assert last.shape == (2, 3)
    np.testing.assert_allclose(first, last, rtol=RTOL)
    np.testing.assert_allclose(onehot, last, rtol=RTOL)


def test_soft_dice_perfect_prediction_is_zero_and_worst_is_one():
    _, labels = _case(3)
    g = _onehot(labels, 3)
    assert float(soft_dice_loss(g, labels, activation=None)) == pytest.approx(
        0.0, abs=1e-7
    )
    # every voxel predicted as the wrong class: no overlap anywhere
    wrong = _onehot((labels + 1) % 3, 3)
    assert float(
        soft_dice_loss(wrong, labels, activation=None, smooth_nr=0.0)
    ) == pytest.approx(1.0)


# ------------------------------------------------------------------- Dice + CE
def test_dice_ce_hand_computed():
    # Two voxels, two classes; logits (0, ln 3) -> p = (1/4, 3/4).
    z = np.array([[[0.0, math.log(3)], [math.log(3), 0.0]]])
    labels = np.array([[1, 0]])
    ce = -math.log(0.75)  # both voxels get p = 3/4 on their class
    # foreground only: p1 = (3/4, 1/4), g1 = (1, 0): I = 3/4, sums 1 + 1
    dc = (2 * 0.75 + 1e-5) / (1.0 + 1.0 + 1e-5)
    assert float(dice_ce_loss(z, labels)) == pytest.approx(ce + 1 - dc, rel=RTOL)
    both = dice_ce_loss(z, labels, include_background=True)
    assert float(both) == pytest.approx(ce + 1 - dc, rel=RTOL)  # symmetric case
    only_ce = dice_ce_loss(z, labels, weight_dice=0.0)
    assert float(only_ce) == pytest.approx(ce, rel=RTOL)


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
def test_dice_ce_matches_reference(batch_dice, include_background):
    z, labels = _case(4, shape=(3, 4, 5), n=4)
    want = ref_dice_ce(
        z,
        labels,
        batch_dice=batch_dice,
        smooth=1e-5,
        include_background=include_background,
    )
    got = dice_ce_loss(
        z, labels, batch_dice=batch_dice, include_background=include_background
    )
    assert float(got) == pytest.approx(want, rel=RTOL)


def test_dice_ce_tends_to_zero_for_confident_correct_logits():
    _, labels = _case(5)
    z = 30.0 * (_onehot(labels, 3) - 0.5)
    assert float(dice_ce_loss(z, labels)) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------- Focal-Tversky
def test_focal_tversky_hand_computed():
    # class 0: TP 1.5, FN .1+.4 = .5, FP .2+.5 = .7
    ti0 = (1.5 + 1) / (1.5 + 0.7 * 0.5 + 0.3 * 0.7 + 1)  # 2.5 / 3.06
    # class 1: TP 1.3, FN .2+.5 = .7, FP .1+.4 = .5
    ti1 = (1.3 + 1) / (1.3 + 0.7 * 0.7 + 0.3 * 0.5 + 1)  # 2.3 / 2.94
    want = (1 - ti0) ** 0.75 + (1 - ti1) ** 0.75
    got = focal_tversky_loss(P4, L4, activation=None)
    assert float(got) == pytest.approx(want, rel=RTOL)


def test_focal_tversky_matches_reference():
    z, labels = _case(6, n=4)
    p = _softmax(z).reshape(2, -1, 4)
    g = _onehot(labels, 4).reshape(2, -1, 4)
    for kw in (
        dict(alpha=0.7, beta=0.3, gamma=4 / 3, smooth=1.0, include_background=True),
        dict(alpha=0.2, beta=0.9, gamma=2.0, smooth=1e-3, include_background=False),
    ):
        want = ref_focal_tversky(p, g, **kw)
        assert float(focal_tversky_loss(z, labels, **kw)) == pytest.approx(
            want, rel=RTOL
        )


def test_focal_tversky_reduces_to_dice_for_half_weights():
    # alpha = beta = 1/2, gamma = 1: (TP + s) / (TP + (FN + FP)/2 + s) is the Dice
    # ratio (2TP + 2s) / (2TP + FN + FP + 2s): a soft Dice with smoothing 2s.
    z, labels = _case(7)
    ftl = focal_tversky_loss(
        z, labels, alpha=0.5, beta=0.5, gamma=1.0, smooth=0.25, reduction="none"
    )
    dice = soft_dice_loss(z, labels, smooth_nr=0.5, smooth_dr=0.5, reduction="none")
    np.testing.assert_allclose(ftl, dice, rtol=RTOL)


def test_focal_tversky_perfect_prediction_is_zero_with_finite_gradient():
    _, labels = _case(8)
    g = jnp.asarray(_onehot(labels, 3))
    assert float(focal_tversky_loss(g, labels, activation=None)) == 0.0
    grad = jax.grad(lambda p: focal_tversky_loss(p, labels, activation=None))(g)
    assert np.all(np.isfinite(grad))


# --------------------------------------------------------- gradients, jit, errors
@pytest.mark.parametrize(
    "loss",
    [
        lambda z, y: soft_dice_loss(z, y, squared_pred=True),
        lambda z, y: dice_ce_loss(z, y, batch_dice=True),
        lambda z, y: focal_tversky_loss(z, y, activation="sigmoid"),
    ],
    ids=["soft_dice", "dice_ce", "focal_tversky"],
)
def test_gradients_float64(loss):
    z, labels = _case(9, shape=(2, 3, 3))
    with jax.enable_x64(True):
        check_grads(
            lambda a: loss(a, labels), (jnp.asarray(z),), order=1, modes=("rev",)
        )


def test_jit_and_vmap_agree_with_eager():
    z, labels = _case(10)
    eager = dice_ce_loss(z, labels)
    assert float(jax.jit(dice_ce_loss)(z, labels)) == pytest.approx(
        float(eager), rel=RTOL
    )
    # vmap over a leading axis of independent batches
    zz, ll = np.stack([z, z[::-1]]), np.stack([labels, labels[::-1]])
    vm = jax.vmap(lambda a, b: focal_tversky_loss(a, b))(zz, ll)
    loop = [float(focal_tversky_loss(a, b)) for a, b in zip(zz, ll, strict=True)]
    np.testing.assert_allclose(vm, loop, rtol=RTOL)


def test_out_of_range_labels_raise_eagerly_and_give_nan_under_jit():
    z, labels = _case(11)
    bad = labels.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\]"):
        soft_dice_loss(z, bad)
    assert np.isnan(float(jax.jit(soft_dice_loss)(z, bad)))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda z, y: soft_dice_loss(z, y.astype(float)), TypeError, "integer"),
        (lambda z, y: soft_dice_loss(z, y[:, :3]), ValueError, "target must have"),
        (lambda z, y: soft_dice_loss(z, y, channel_axis=0), ValueError, "channel"),
        (lambda z, y: soft_dice_loss(z, y, channel_axis=1.0), TypeError, "channel"),
        (lambda z, y: soft_dice_loss(z, y, activation="relu"), ValueError, "activ"),
        (lambda z, y: soft_dice_loss(z, y, reduction="sum"), ValueError, "reduct"),
        (lambda z, y: soft_dice_loss(z, y, smooth_dr=-1), ValueError, "smooth_dr"),
        (lambda z, y: soft_dice_loss(z[..., 0], y), ValueError, "one-hot"),
        (lambda z, y: focal_tversky_loss(z, y, gamma=0), ValueError, "gamma"),
        (lambda z, y: dice_ce_loss(z.astype(int), y), TypeError, "float"),
        (lambda z, y: soft_dice_loss(z[..., :1], y), ValueError, "at least 2"),
    ],
)
def test_bad_input_is_named(call, error, match):
    z, labels = _case(12)
    with pytest.raises(error, match=match):
        call(z, labels)
