"""Overlap losses: soft Dice (MONAI), Dice + cross-entropy (nnU-Net), Focal-Tversky.

All take logits and a target in the layout of :mod:`jaxsim.losses._inputs`
(``channel_axis=-1``: ``(batch, *spatial, classes)``; ``channel_axis=1``:
``(batch, classes, *spatial)``), are pure JAX and work under ``jit``, ``vmap`` and
``grad``. Per-class sums run over the spatial axes of each item, or over the batch
and spatial axes together with ``batch=True`` ("batch Dice").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._inputs import (
    activate,
    channel_first,
    check_activation,
    check_inputs,
    check_positive,
    check_reduction,
    drop_background,
    finish,
    spatial_axes,
)

__all__ = ["soft_dice_loss", "dice_ce_loss", "focal_tversky_loss"]


def soft_dice_loss(
    logits,
    target,
    *,
    activation: str | None = "softmax",
    include_background: bool = True,
    squared_pred: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    channel_axis: int = -1,
    reduction: str = "mean",
) -> jax.Array:
    """Soft Dice loss with the options and defaults of MONAI's ``DiceLoss``.

    Per class ``c`` (and per item unless ``batch``), with probabilities ``p`` and
    one-hot target ``g`` summed over the voxels::

        loss_c = 1 - (2 sum(p g) + smooth_nr) / (sum(g) + sum(p) + smooth_dr)

    (``sum(g**2) + sum(p**2)`` in the denominator with ``squared_pred``), then the
    mean over classes and items. The ``activation`` is applied to the logits first;
    class 0 is dropped after it when ``include_background`` is False. MONAI's
    defaults apply no activation; here logits are the input, so softmax is the
    default (``activation=None`` takes probabilities, as MONAI's default does).

    Args:
        logits: float ``(batch, *spatial, classes)`` (``channel_axis=-1``) or
            ``(batch, classes, *spatial)`` (``channel_axis=1``).
        target: integer labels ``(batch, *spatial)`` in ``[0, classes)``, or a
            one-hot/soft target of the logits' shape.
        activation: ``"softmax"`` (over classes), ``"sigmoid"`` (per class,
            multi-label) or ``None`` (``logits`` already are probabilities).
        include_background: keep class 0 in the mean.
        squared_pred: square ``p`` and ``g`` in the denominator (V-Net's form).
        smooth_nr, smooth_dr: constants added to numerator and denominator, >= 0.
        batch: sum over the batch before the ratio (one Dice per class).
        channel_axis: the class axis of ``logits`` (and of a one-hot target).
        reduction: ``"mean"`` (scalar) or ``"none"`` (``(batch, classes')``, or
            ``(classes',)`` with ``batch``; ``classes'`` drops the background when
            excluded).

    Returns:
        The loss, in ``[0, 1]`` for probabilities: 0 for a perfect prediction
        (up to the smoothing terms). NaN under ``jit`` if integer labels are out of
        range (raised eagerly otherwise).

    Example:
        >>> logits = jnp.zeros((1, 4, 4, 3))
        >>> labels = jnp.zeros((1, 4, 4), jnp.int32)
        >>> round(float(soft_dice_loss(logits, labels)), 4)  # (0.5 + 1 + 1) / 3
        0.8333
    """
    check_activation(activation)
    check_reduction(reduction)
    check_positive("smooth_nr", smooth_nr, allow_zero=True)
    check_positive("smooth_dr", smooth_dr, allow_zero=True)
    axis, labels = check_inputs(logits, target, channel_axis=channel_axis)
    return _soft_dice(
        logits,
        target,
        smooth_nr,
        smooth_dr,
        axis=axis,
        labels=labels,
        activation=activation,
        include_background=include_background,
        squared_pred=squared_pred,
        batch=batch,
        reduction=reduction,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "axis",
        "labels",
        "activation",
        "include_background",
        "squared_pred",
        "batch",
        "reduction",
    ),
)
def _soft_dice(
    logits,
    target,
    smooth_nr,
    smooth_dr,
    *,
    axis,
    labels,
    activation,
    include_background,
    squared_pred,
    batch,
    reduction,
):
    z, g, bad = channel_first(logits, target, axis, labels)
    p, g = drop_background(
        activate(z, activation), g, include_background=include_background
    )
    axes = spatial_axes(p, batch=batch)
    intersection = jnp.sum(p * g, axis=axes)
    if squared_pred:
        denominator = jnp.sum(g * g, axis=axes) + jnp.sum(p * p, axis=axes)
    else:
        denominator = jnp.sum(g, axis=axes) + jnp.sum(p, axis=axes)
    loss = 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
    return finish(jnp.mean(loss) if reduction == "mean" else loss, bad)


def dice_ce_loss(
    logits,
    target,
    *,
    batch_dice: bool = False,
    smooth: float = 1e-5,
    include_background: bool = False,
    weight_ce: float = 1.0,
    weight_dice: float = 1.0,
    channel_axis: int = -1,
) -> jax.Array:
    """Soft Dice + cross-entropy with nnU-Net's ``DC_and_CE_loss`` defaults.

    ``weight_ce * CE + weight_dice * (1 - mean_c dc_c)`` with softmax
    probabilities ``p``, one-hot target ``g``, and per class (per item unless
    ``batch_dice``)::

        dc_c = (2 sum(p g) + smooth) / max(sum(p) + sum(g) + smooth, 1e-8)

    the background class excluded from the mean by default (nnU-Net's
    ``do_bg=False``; the softmax still runs over all classes). CE is the mean over
    voxels and items of ``-sum_c g_c log p_c`` (PyTorch's ``CrossEntropyLoss``),
    computed from ``log_softmax`` for stability. nnU-Net returns ``-mean dc``
    instead of ``1 - mean dc``: the same gradients, shifted by the constant
    ``weight_dice`` so that a perfect prediction scores 0 here. nnU-Net takes
    ``batch_dice`` from its plans; ``smooth=1e-5`` and unit weights are its
    trainer's settings.

    Args:
        logits, target, channel_axis: as :func:`soft_dice_loss`.
        batch_dice: one Dice per class over the whole batch.
        smooth: added to the numerator and the denominator, >= 0.
        include_background: keep class 0 in the Dice mean (nnU-Net's ``do_bg``).
        weight_ce, weight_dice: term weights, >= 0.

    Returns:
        Scalar loss, >= 0 for one-hot targets (0 only in the limit of a perfect,
        certain prediction).
    """
    check_positive("smooth", smooth, allow_zero=True)
    check_positive("weight_ce", weight_ce, allow_zero=True)
    check_positive("weight_dice", weight_dice, allow_zero=True)
    axis, labels = check_inputs(logits, target, channel_axis=channel_axis)
    return _dice_ce(
        logits,
        target,
        smooth,
        weight_ce,
        weight_dice,
        axis=axis,
        labels=labels,
        batch_dice=batch_dice,
        include_background=include_background,
    )


@functools.partial(
    jax.jit, static_argnames=("axis", "labels", "batch_dice", "include_background")
)
def _dice_ce(
    logits,
    target,
    smooth,
    weight_ce,
    weight_dice,
    *,
    axis,
    labels,
    batch_dice,
    include_background,
):
    z, g, bad = channel_first(logits, target, axis, labels)
    log_p = jax.nn.log_softmax(z, axis=1)
    ce = -jnp.mean(jnp.sum(g * log_p, axis=1))
    p, g = drop_background(jnp.exp(log_p), g, include_background=include_background)
    axes = spatial_axes(p, batch=batch_dice)
    intersection = jnp.sum(p * g, axis=axes)
    total = jnp.sum(p, axis=axes) + jnp.sum(g, axis=axes)
    dc = (2.0 * intersection + smooth) / jnp.maximum(total + smooth, 1e-8)
    return finish(weight_ce * ce + weight_dice * (1.0 - jnp.mean(dc)), bad)


def _focal_power(x: jax.Array, exponent) -> jax.Array:
    """``x**exponent`` for ``x >= 0`` with a finite gradient at 0.

    With an exponent below 1 the derivative is infinite at 0 (a perfect
    prediction); the double ``where`` gives value 0 and gradient 0 there instead of
    NaN.
    """
    positive = x > 1e-12
    safe = jnp.where(positive, x, 1.0)
    return jnp.where(positive, safe**exponent, 0.0)


def focal_tversky_loss(
    logits,
    target,
    *,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 4.0 / 3.0,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    channel_axis: int = -1,
    reduction: str = "mean",
) -> jax.Array:
    """Focal-Tversky loss (Abraham and Khan, ISBI 2019), the loss of seed 000.

    Per class ``c``, with probabilities ``p`` and one-hot target ``g`` summed over
    the voxels (and the batch with ``batch``)::

        TP = sum(p g),  FN = sum((1 - p) g),  FP = sum(p (1 - g))
        TI_c = (TP + smooth) / (TP + alpha FN + beta FP + smooth)
        FTL = sum_c (1 - TI_c) ** (1 / gamma)

    then the mean over items. ``alpha`` weighs false negatives and ``beta`` false
    positives (the paper's convention; MONAI's ``TverskyLoss`` names them the
    other way round). The defaults are the paper's: ``alpha=0.7, beta=0.3,
    gamma=4/3`` (exponent 0.75) and the ``smooth=1`` of its published code. With
    ``alpha = beta = 0.5`` and ``gamma = 1`` each class term is a soft Dice loss.
    Seed 000 trains with this loss but does not state its hyper-parameters.

    Args:
        logits, target, activation, include_background, batch, channel_axis: as
            :func:`soft_dice_loss`.
        alpha, beta: false-negative and false-positive weights, >= 0.
        gamma: focal parameter, > 0 (the exponent is ``1/gamma``).
        smooth: added to numerator and denominator, >= 0.
        reduction: ``"mean"`` (scalar: the class sum averaged over items) or
            ``"none"`` (the per-class terms, ``(batch, classes')`` or
            ``(classes',)``).

    Returns:
        The loss: 0 for a perfect prediction; at most the number of classes kept.
    """
    check_activation(activation)
    check_reduction(reduction)
    for name, value in (("alpha", alpha), ("beta", beta), ("smooth", smooth)):
        check_positive(name, value, allow_zero=True)
    check_positive("gamma", gamma)
    axis, labels = check_inputs(logits, target, channel_axis=channel_axis)
    return _focal_tversky(
        logits,
        target,
        alpha,
        beta,
        gamma,
        smooth,
        axis=axis,
        labels=labels,
        activation=activation,
        include_background=include_background,
        batch=batch,
        reduction=reduction,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "axis",
        "labels",
        "activation",
        "include_background",
        "batch",
        "reduction",
    ),
)
def _focal_tversky(
    logits,
    target,
    alpha,
    beta,
    gamma,
    smooth,
    *,
    axis,
    labels,
    activation,
    include_background,
    batch,
    reduction,
):
    z, g, bad = channel_first(logits, target, axis, labels)
    p, g = drop_background(
        activate(z, activation), g, include_background=include_background
    )
    axes = spatial_axes(p, batch=batch)
    tp = jnp.sum(p * g, axis=axes)
    fn = jnp.sum((1.0 - p) * g, axis=axes)
    fp = jnp.sum(p * (1.0 - g), axis=axes)
    ti = (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)
    terms = _focal_power(jnp.maximum(1.0 - ti, 0.0), 1.0 / gamma)
    if reduction == "none":
        return finish(terms, bad)
    return finish(jnp.mean(jnp.sum(terms, axis=-1)), bad)
