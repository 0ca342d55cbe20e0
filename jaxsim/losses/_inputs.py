"""Shared input handling of the segmentation losses: layout, targets, activation.

Every segmentation loss takes network outputs (logits) with a class axis,
``(batch, *spatial, classes)`` by default (``channel_axis=-1``, the layout of Flax
convolutions), or ``(batch, classes, *spatial)`` with ``channel_axis=1`` (MONAI and
PyTorch). Targets are either integer labels ``(batch, *spatial)`` with values in
``[0, classes)`` or one-hot/soft targets of the logits' shape (same class axis).
Internally everything is moved to channel-first ``(batch, classes, *spatial)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = ("softmax", "sigmoid", None)


def is_concrete(*values) -> bool:
    """True when no value is a tracer (validation can then run eagerly)."""
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _channel_axis(channel_axis, ndim: int) -> int:
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int | np.integer):
        raise TypeError(
            f"channel_axis must be an int; got {type(channel_axis).__name__}"
        )
    if not (-ndim <= channel_axis < ndim) or channel_axis % ndim == 0:
        raise ValueError(
            f"channel_axis must index a non-batch axis of the logits (1..{ndim - 1} "
            f"or -{ndim - 1}..-1); got {channel_axis} for logits of {ndim} axes"
        )
    return int(channel_axis) % ndim


def check_inputs(logits, target, *, channel_axis: int) -> tuple[int, bool]:
    """Validate logits and target; return the class axis (>= 1) and whether the
    target holds integer labels (else one-hot/soft of the logits' shape).

    Value checks (label range, one-hot range) run only on concrete arrays; under
    tracing :func:`channel_first` flags them and the loss becomes NaN.
    """
    shape, dtype = jnp.shape(logits), jnp.result_type(logits)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"logits must be a float array; got dtype {dtype}")
    if len(shape) < 3:
        raise ValueError(
            "logits must have a batch axis, a class axis and at least one spatial "
            f"axis (>= 3 axes); got shape {shape}"
        )
    axis = _channel_axis(channel_axis, len(shape))
    n_classes = shape[axis]
    label_shape = shape[:axis] + shape[axis + 1 :]
    t_shape, t_dtype = jnp.shape(target), jnp.result_type(target)
    if t_shape == shape:
        if is_concrete(target):
            lo, hi = float(np.min(target)), float(np.max(target))
            if lo < 0 or hi > 1:
                raise ValueError(
                    "a target of the logits' shape is one-hot (or soft): its values "
                    f"must lie in [0, 1]; got values in [{lo}, {hi}]"
                )
        return axis, False
    if t_shape != label_shape:
        raise ValueError(
            f"target must have the logits' shape {shape} (one-hot) or the "
            f"logits' shape without the class axis {label_shape} (integer labels); "
            f"got {t_shape}"
        )
    if not jnp.issubdtype(t_dtype, jnp.integer):
        raise TypeError(
            "target of the logits' shape without the class axis must hold "
            f"integer labels; got dtype {t_dtype}"
        )
    if n_classes < 2:
        raise ValueError(
            "integer labels need at least 2 classes; with one output channel "
            "pass the target as a 0/1 mask of the logits' shape"
        )
    if is_concrete(target):
        lo, hi = int(np.min(target)), int(np.max(target))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"target labels must lie in [0, {n_classes - 1}] (the number of "
                f"classes of the logits); got values in [{lo}, {hi}]"
            )
    return axis, True


def channel_first(logits, target, axis: int, labels: bool):
    """Channel-first logits, one-hot target and the out-of-range flag (traceable)."""
    logits = jnp.moveaxis(logits, axis, 1)
    n_classes = logits.shape[1]
    if labels:
        bad = jnp.any((target < 0) | (target >= n_classes))
        onehot = jax.nn.one_hot(target, n_classes, dtype=logits.dtype, axis=1)
    else:
        bad = jnp.any((target < 0) | (target > 1))
        onehot = jnp.moveaxis(target, axis, 1).astype(logits.dtype)
    return logits, onehot, bad


def activate(logits: jax.Array, activation) -> jax.Array:
    """Class probabilities from channel-first logits."""
    if activation == "softmax":
        return jax.nn.softmax(logits, axis=1)
    if activation == "sigmoid":
        return jax.nn.sigmoid(logits)
    if activation is None:
        return logits
    raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")


def check_activation(activation) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")


def drop_background(*arrays: jax.Array, include_background: bool):
    """Drop class 0 (channel-first) unless ``include_background``."""
    if include_background:
        return arrays
    if arrays[0].shape[1] < 2:
        raise ValueError(
            "include_background=False needs at least 2 classes; got "
            f"{arrays[0].shape[1]}"
        )
    return tuple(a[:, 1:] for a in arrays)


def check_reduction(reduction) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    """Eager range check of a hyper-parameter (skipped for tracers)."""
    if not is_concrete(value):
        return
    v = float(value)
    ok = v >= 0 if allow_zero else v > 0
    if not (ok and np.isfinite(v)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}; got {value}")


def finish(loss: jax.Array, bad) -> jax.Array:
    """NaN where the target was out of range (only reachable under tracing: the
    eager check raises)."""
    return jnp.where(bad, jnp.nan, loss)


def spatial_axes(x: jax.Array, *, batch: bool) -> tuple[int, ...]:
    """Axes summed over for per-class statistics of channel-first ``x``."""
    spatial = tuple(range(2, x.ndim))
    return (0, *spatial) if batch else spatial
