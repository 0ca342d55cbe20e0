"""Eager argument checks for the public kernel boundary.

Kernels are traced by jit/vmap/grad, where values are abstract: the checks run only on
concrete inputs and are skipped silently under tracing, so a kernel stays branch-free
inside compiled code while a user calling it eagerly gets a clear error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*values) -> bool:
    """True when no value is a JAX tracer (so its numbers can be inspected)."""
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _describe(arr: np.ndarray) -> str:
    if arr.size == 1:
        return repr(float(arr.reshape(()).real))
    return f"array with min {np.nanmin(arr):.6g}, max {np.nanmax(arr):.6g}"


def check_finite(name: str, value) -> None:
    """Raise ValueError if a concrete ``value`` holds NaN or infinity."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got NaN or inf in {arr.shape} input")


def check_finite_array(name: str, value) -> None:
    """Like :func:`check_finite`, reduced where the array lives (no host copy)."""
    if is_concrete(value) and not bool(jnp.all(jnp.isfinite(value))):
        raise ValueError(
            f"{name} must be finite; got NaN or inf in {tuple(value.shape)} input"
        )


def check_range(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = False,
    high_inclusive: bool = True,
    unit: str = "",
) -> None:
    """Raise ValueError unless every element of a concrete ``value`` lies in the range.

    Args:
        name: argument name used in the message.
        value: scalar or array; skipped when traced.
        low, high: bounds (None for unbounded).
        low_inclusive, high_inclusive: whether the bounds themselves are allowed.
        unit: unit appended to the message, e.g. ``"ms"``.
    """
    if not is_concrete(value):
        return
    check_finite(name, value)
    arr = np.asarray(value, dtype=np.float64)
    ok = np.ones(arr.shape, dtype=bool)
    if low is not None:
        ok &= arr >= low if low_inclusive else arr > low
    if high is not None:
        ok &= arr <= high if high_inclusive else arr < high
    if not np.all(ok):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = ("[" if low_inclusive else "(") + f"{lo}, {hi}"
        interval += "]" if high_inclusive else ")"
        suffix = f" {unit}" if unit else ""
        raise ValueError(
            f"{name} must lie in {interval}{suffix}; got {_describe(arr[~ok])}"
        )
