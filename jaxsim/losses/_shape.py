"""The shape-aware loss of seed 003 (its equations 1-4).

With ``phi`` the signed normalised Euclidean distance map of a binary mask
(:func:`signed_distance_map`: positive inside, 1 on the innermost voxels) and the
soft step ``H(x) = 1 / (1 + exp(-x / k))`` (eq. 1, ``k = 0.2``), the shape
information of a mask is (eq. 2)::

    SI(m) = H(1 - phi(m))  where phi(m) >= 0,   0 elsewhere

so it is 0 outside the mask, ``H(0) = 0.5`` on the innermost voxels and
``H(1 - phi)`` rising towards ``H(1) = 0.993`` on the boundary layer (where
``phi`` is one voxel over the mask's largest inner distance). The loss compares the
predicted probabilities with the shape information of the target (eq. 3)::

    L_S = 1/C sum_c 1/sum_i g_ci  sum_i |p_ci - SI(g_c)_i|

and seed 003 trains with ``L_D + L_CE + gamma L_S`` (eq. 4, ``gamma = 0.05``).
The distance map is computed from the target labels in JAX (exact separable
transform, :mod:`jaxsim.losses._edt`) and held constant (``stop_gradient``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from ._edt import _squared_distance_transform
from ._inputs import (
    activate,
    channel_first,
    check_activation,
    check_inputs,
    check_positive,
    drop_background,
    finish,
)

__all__ = ["shape_information", "shape_aware_loss", "dice_ce_shape_loss"]


def _spacing(spacing, n_spatial: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * n_spatial
    try:
        values = tuple(float(s) for s in spacing)
    except TypeError:
        raise TypeError(
            f"spacing must be a sequence of {n_spatial} floats (mm); got {spacing!r}"
        ) from None
    if len(values) != n_spatial:
        raise ValueError(
            f"spacing must have one value per spatial axis ({n_spatial}); got "
            f"{len(values)}: {spacing!r}"
        )
    if not all(v > 0 and math.isfinite(v) for v in values):
        raise ValueError(f"spacing values must be finite and > 0 mm; got {spacing!r}")
    return values


def shape_information(masks, *, spacing, k: float = 0.2) -> jax.Array:
    """Seed 003's shape information ``SI`` (eq. 2) of binary masks.

    Args:
        masks: boolean (or 0/1) ``(..., *spatial)``; the last ``len(spacing)`` axes
            are spatial, leading axes index independent masks.
        spacing: voxel size in mm per spatial axis (it shapes the distance map of
            anisotropic voxels; its overall scale cancels in the normalisation).
        k: softness of the step ``H`` (eq. 1), > 0.

    Returns:
        Float array of ``masks``' shape: ``H(1 - phi)`` inside the mask, 0 outside.

    Example:
        >>> si = shape_information(jnp.array([0, 1, 1, 1, 0], bool), spacing=(1.0,))
        >>> [round(float(v), 3) for v in si]
        [0.0, 0.924, 0.5, 0.924, 0.0]
    """
    check_positive("k", k)
    masks = jnp.asarray(masks).astype(bool)
    try:
        n_spatial = len(spacing)
    except TypeError:
        raise TypeError(
            f"spacing must be a sequence of floats (mm), one per spatial axis; got "
            f"{spacing!r}"
        ) from None
    spacing = _spacing(spacing, n_spatial)
    if masks.ndim < n_spatial:
        raise ValueError(
            f"masks must have at least len(spacing)={n_spatial} axes; got shape "
            f"{masks.shape}"
        )
    return _shape_information(masks, k, spacing=spacing)


@functools.partial(jax.jit, static_argnames="spacing")
def _shape_information(masks, k, *, spacing):
    # Only the inside half of phi matters (SI is 0 outside): one transform.
    masks = jnp.asarray(masks, bool)
    axes = tuple(range(masks.ndim - len(spacing), masks.ndim))
    d_in = jnp.sqrt(_squared_distance_transform(~masks, spacing))
    d_in = jnp.where(jnp.isfinite(d_in) & masks, d_in, 0.0)
    d_max = jnp.max(d_in, axis=axes, keepdims=True)
    phi = d_in / jnp.where(d_max > 0, d_max, 1.0)
    return jnp.where(masks, jax.nn.sigmoid((1.0 - phi) / k), 0.0)


def _shape_term(p, g, si):
    """Eq. 3 per (item, class) and the mask of terms with a non-empty target."""
    axes = tuple(range(2, p.ndim))
    size = jnp.sum(g, axis=axes)
    present = size > 0
    error = jnp.sum(jnp.abs(p - si), axis=axes) / jnp.where(present, size, 1.0)
    return error, present


def shape_aware_loss(
    logits,
    target,
    *,
    spacing=None,
    k: float = 0.2,
    activation: str | None = "softmax",
    include_background: bool = True,
    channel_axis: int = -1,
    shape_info=None,
) -> jax.Array:
    """Seed 003's boundary-aware shape loss ``L_S`` (eq. 3).

    The target's mask of each class (``g >= 0.5`` for soft targets) gives its
    shape information :func:`shape_information`; the loss is the L1 distance
    between the probabilities and it, divided by the mask's voxel count, averaged
    over the (item, class) pairs whose target mask is not empty (eq. 3 is
    undefined for an empty mask; if every mask is empty the loss is 0).

    Args:
        logits, target, activation, include_background, channel_axis: as
            :func:`jaxsim.losses.soft_dice_loss`. Seed 003 uses the sigmoid of
            the logits (``activation="sigmoid"``).
        spacing: voxel size in mm per spatial axis; default isotropic.
        k: softness of the step (eq. 1), > 0.
        shape_info: optional precomputed :func:`shape_information` of the target's
            one-hot masks, in the logits' layout and shape (every class). The
            target's maps are constants: computing them once per training record
            saves the distance transforms (``O(N n)`` work per axis, ``n`` the
            line length) at every step.

    Returns:
        Scalar loss >= 0. Its minimum is not at a perfect segmentation: inside a
        mask it pulls probabilities towards ``SI`` (0.5 at the centre, near 1 at
        the boundary); it is meant as a small term next to Dice and CE (eq. 4).
    """
    check_activation(activation)
    check_positive("k", k)
    axis, labels = check_inputs(logits, target, channel_axis=channel_axis)
    spacing = _spacing(spacing, jnp.ndim(logits) - 2)
    _check_shape_info(shape_info, logits)
    return _shape_loss(
        logits,
        target,
        k,
        shape_info,
        axis=axis,
        labels=labels,
        spacing=spacing,
        activation=activation,
        include_background=include_background,
    )


def _check_shape_info(shape_info, logits) -> None:
    if shape_info is not None and jnp.shape(shape_info) != jnp.shape(logits):
        raise ValueError(
            f"shape_info must have the logits' shape {jnp.shape(logits)}; got "
            f"{jnp.shape(shape_info)}"
        )


def _l_shape(p, g, k, spacing, si=None):
    if si is None:
        si = _shape_information(g >= 0.5, k, spacing=spacing)
    si = jax.lax.stop_gradient(si)
    error, present = _shape_term(p, g, si)
    n = jnp.sum(present)
    return jnp.sum(jnp.where(present, error, 0.0)) / jnp.maximum(n, 1)


@functools.partial(
    jax.jit,
    static_argnames=("axis", "labels", "spacing", "activation", "include_background"),
)
def _shape_loss(
    logits,
    target,
    k,
    shape_info,
    *,
    axis,
    labels,
    spacing,
    activation,
    include_background,
):
    z, g, bad = channel_first(logits, target, axis, labels)
    p = activate(z, activation)
    if shape_info is None:
        p, g = drop_background(p, g, include_background=include_background)
        return finish(_l_shape(p, g, k, spacing), bad)
    si = jnp.moveaxis(jnp.asarray(shape_info, p.dtype), axis, 1)
    p, g, si = drop_background(p, g, si, include_background=include_background)
    return finish(_l_shape(p, g, k, spacing, si), bad)


def dice_ce_shape_loss(
    logits,
    target,
    *,
    gamma: float = 0.05,
    spacing=None,
    k: float = 0.2,
    smooth: float = 1e-5,
    activation: str | None = "softmax",
    include_background: bool = True,
    channel_axis: int = -1,
    shape_info=None,
) -> jax.Array:
    """Seed 003's training loss ``L_D + L_CE + gamma L_S`` (eq. 4).

    Per item, over the ``C`` classes kept::

        L_D  = 1 - 1/C sum_c (2 sum_i g p + smooth) / (sum_i g + sum_i p + smooth)
        L_CE = -1/C sum_c mean_i g_ci log p_ci
        L_S  = :func:`shape_aware_loss`

    then the mean over items. The seed writes the integrals of ``L_CE`` over the
    image domain; the mean over voxels is its area-normalised form (the usual CE
    reduction). ``smooth`` (not in the seed's equation) keeps the Dice term
    defined for classes absent from both target and prediction. With softmax and
    the background kept, ``C * L_CE`` is the usual categorical cross-entropy.

    Args:
        logits, target, activation, include_background, channel_axis: as
            :func:`jaxsim.losses.soft_dice_loss`.
        gamma: weight of the shape term, >= 0 (seed 003's grid search: 0.05).
        spacing, k, shape_info: as :func:`shape_aware_loss`.
        smooth: Dice smoothing, >= 0.

    Returns:
        Scalar loss.
    """
    check_activation(activation)
    check_positive("gamma", gamma, allow_zero=True)
    check_positive("smooth", smooth, allow_zero=True)
    check_positive("k", k)
    axis, labels = check_inputs(logits, target, channel_axis=channel_axis)
    spacing = _spacing(spacing, jnp.ndim(logits) - 2)
    _check_shape_info(shape_info, logits)
    return _dice_ce_shape(
        logits,
        target,
        gamma,
        k,
        smooth,
        shape_info,
        axis=axis,
        labels=labels,
        spacing=spacing,
        activation=activation,
        include_background=include_background,
    )


@functools.partial(
    jax.jit,
    static_argnames=("axis", "labels", "spacing", "activation", "include_background"),
)
def _dice_ce_shape(
    logits,
    target,
    gamma,
    k,
    smooth,
    shape_info,
    *,
    axis,
    labels,
    spacing,
    activation,
    include_background,
):
    z, g, bad = channel_first(logits, target, axis, labels)
    if activation == "softmax":
        log_p = jax.nn.log_softmax(z, axis=1)
    elif activation == "sigmoid":
        log_p = jax.nn.log_sigmoid(z)
    else:  # probabilities given: a floor keeps 0 * log(0) at 0
        log_p = jnp.log(jnp.maximum(z, jnp.finfo(z.dtype).tiny))
    si = (
        jnp.moveaxis(jnp.asarray(shape_info, z.dtype), axis, 1)
        if (shape_info is not None)
        else jnp.zeros_like(z)
    )
    p, g, log_p, si = drop_background(
        jnp.exp(log_p), g, log_p, si, include_background=include_background
    )
    axes = tuple(range(2, p.ndim))
    dice = (2.0 * jnp.sum(g * p, axis=axes) + smooth) / (
        jnp.sum(g, axis=axes) + jnp.sum(p, axis=axes) + smooth
    )
    l_dice = 1.0 - jnp.mean(dice)
    l_ce = -jnp.mean(jnp.mean(g * log_p, axis=axes))
    l_shape = _l_shape(p, g, k, spacing, None if shape_info is None else si)
    return finish(l_dice + l_ce + gamma * l_shape, bad)
