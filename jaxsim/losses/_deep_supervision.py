"""Deep supervision: one loss over a network's outputs at decreasing resolutions.

nnU-Net supervises each decoder stage: output ``i`` (0 = full resolution, each
next one coarser) is compared with the target downsampled to its size, and the
losses are summed with weights ``1 / 2**i``, the coarsest output's weight set to 0,
normalised to sum 1. Targets are downsampled by nearest neighbour, as nnU-Net does
(PyTorch ``interpolate(mode="nearest-exact")``: output voxel ``o`` of ``n_out``
takes input voxel ``floor((o + 0.5) * n_in / n_out)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._inputs import _channel_axis

__all__ = ["deep_supervision_weights", "downsample_labels", "deep_supervision_loss"]


def deep_supervision_weights(n: int) -> np.ndarray:
    """nnU-Net's deep supervision weights for ``n`` outputs (finest first).

    ``w_i = 1 / 2**i``, the last (coarsest) set to 0, normalised to sum 1; a single
    output gets weight 1.

    Example:
        >>> deep_supervision_weights(4).round(4).tolist()
        [0.5714, 0.2857, 0.1429, 0.0]
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (number of outputs); got {n!r}")
    if n == 1:
        return np.ones(1)
    w = 0.5 ** np.arange(n)
    w[-1] = 0.0
    return w / w.sum()


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * n_in / n_out), n_in - 1)


def downsample_labels(labels, shape: Sequence[int], *, axes=None) -> jax.Array:
    """Nearest-neighbour resize of a label (or one-hot) array's spatial axes.

    Args:
        labels: array, e.g. integer labels ``(batch, *spatial)``.
        shape: the new sizes of the spatial axes (static ints >= 1).
        axes: the spatial axes, default the last ``len(shape)`` axes.

    Returns:
        Array of ``labels``' dtype with the spatial axes resized; values are copied,
        never interpolated (so labels stay labels and one-hot stays one-hot).
    """
    labels = jnp.asarray(labels)
    shape = tuple(int(s) for s in shape)
    if axes is None:
        axes = tuple(range(labels.ndim - len(shape), labels.ndim))
    if len(axes) != len(shape) or any(s < 1 for s in shape):
        raise ValueError(
            f"shape must give one size >= 1 per spatial axis {tuple(axes)}; got {shape}"
        )
    for axis, n_out in zip(axes, shape, strict=True):
        n_in = labels.shape[axis]
        if n_out != n_in:
            idx = _nearest_indices(n_in, n_out).astype(np.int32)
            labels = jnp.take(labels, jnp.asarray(idx), axis=axis)
    return labels


def deep_supervision_loss(
    loss_fn: Callable,
    outputs: Sequence,
    target,
    *,
    weights=None,
    channel_axis: int = -1,
) -> jax.Array:
    """Weighted sum of ``loss_fn`` over outputs at decreasing resolutions.

    Args:
        loss_fn: ``loss_fn(logits, target) -> scalar``, e.g. ``dice_ce_loss`` (use
            ``functools.partial`` to set its options; its ``channel_axis`` must
            match this one).
        outputs: sequence of logits, finest first; each ``(batch, *spatial_i,
            classes)`` (``channel_axis=-1``) or ``(batch, classes, *spatial_i)``.
        target: full-resolution integer labels ``(batch, *spatial_0)`` or one-hot
            of ``outputs[0]``'s shape; downsampled to each output's spatial shape
            by :func:`downsample_labels`.
        weights: one weight >= 0 per output; default
            :func:`deep_supervision_weights` (nnU-Net's).
        channel_axis: class axis of the outputs.

    Returns:
        Scalar ``sum_i w_i loss_fn(outputs[i], target_i)``.
    """
    outputs = list(outputs)
    if not outputs:
        raise ValueError("outputs must hold at least one array of logits")
    if weights is None:
        weights = deep_supervision_weights(len(outputs))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(outputs),) or not np.all(weights >= 0):
        raise ValueError(
            f"weights must be {len(outputs)} values >= 0 (one per output); got "
            f"{weights.tolist()}"
        )
    target = jnp.asarray(target)
    ndim = jnp.ndim(outputs[0])
    axis = _channel_axis(channel_axis, ndim)
    onehot = target.ndim == ndim
    total = jnp.zeros((), jnp.result_type(float))
    for w, logits in zip(weights, outputs, strict=True):
        if jnp.ndim(logits) != ndim:
            raise ValueError(
                f"outputs must all have {ndim} axes; got shape {jnp.shape(logits)}"
            )
        spatial = [a for a in range(1, ndim) if a != axis]
        shape = [jnp.shape(logits)[a] for a in spatial]
        if onehot:
            t = downsample_labels(target, shape, axes=spatial)
        else:
            t = downsample_labels(target, shape, axes=tuple(range(1, ndim - 1)))
        if w == 0.0:
            continue  # nnU-Net's coarsest output: no loss, no compute
        total = total + w * loss_fn(logits, t)
    return total
