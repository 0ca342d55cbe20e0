"""Argument checks for the public kernel boundary: eager errors, traced masks, and
an opt-in checked mode.

* Concrete inputs (eager calls): an invalid value raises a ``ValueError`` naming the
  argument, the allowed range and the offending value.
* Traced inputs (inside ``jit``/``vmap``/``grad``): nothing can raise, so each check
  returns a boolean mask of the valid elements and the kernel returns NaN where it
  is False: invalid input gives a visible NaN, never a plausible number.
* Checked mode (:func:`checked`, :func:`checked_call`): traced checks also become
  ``jax.experimental.checkify`` checks, which raise the eager checks' messages when
  the checkified function runs.

A check returns ``True`` (a Python bool) for concrete inputs, so eager calls pay
nothing for the masks.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

_CHECKED = False


def is_concrete(*values) -> bool:
    """True when no value is a JAX tracer (so its numbers can be inspected)."""
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _describe(arr: np.ndarray) -> str:
    if arr.size == 1:
        return f"{float(arr.reshape(()).real):.6g}"
    return f"array with min {np.nanmin(arr):.6g}, max {np.nanmax(arr):.6g}"


def _traced_check(ok, message: str, value):
    """In checked mode, a checkify check that reports the first bad element."""
    if _CHECKED:
        ok = jnp.broadcast_to(ok, jnp.shape(value))
        flat_ok = jnp.ravel(ok)
        bad = jnp.ravel(value)[jnp.argmin(flat_ok)]
        checkify.check(jnp.all(flat_ok), message + " {bad:.6g}", bad=bad)
    return ok


def check_finite(name: str, value):
    """Raise ValueError if a concrete ``value`` holds NaN or infinity; for a traced
    one return the mask of finite elements."""
    if not is_concrete(value):
        value = jnp.asarray(value)
        return _traced_check(jnp.isfinite(value), f"{name} must be finite; got", value)
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got NaN or inf in {arr.shape} input")
    return True


def check_finite_array(name: str, value):
    """Like :func:`check_finite`, reduced where the array lives (no host copy)."""
    if is_concrete(value):
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ValueError(
                f"{name} must be finite; got NaN or inf in {tuple(value.shape)} input"
            )
        return True
    return check_finite(name, value)


def _interval(low, high, low_inclusive, high_inclusive) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return (
        ("[" if low_inclusive else "(")
        + f"{lo}, {hi}"
        + ("]" if high_inclusive else ")")
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
):
    """Require every element of ``value`` to be finite and inside the range.

    Args:
        name: argument name used in the message.
        value: scalar or array.
        low, high: bounds (None for unbounded).
        low_inclusive, high_inclusive: whether the bounds themselves are allowed.
        unit: unit appended to the message, e.g. ``"ms"``.

    Returns:
        ``True`` for a concrete value (after raising if it is invalid); for a
        traced value, the boolean mask of valid elements.

    Raises:
        ValueError: a concrete value outside the range (or NaN/inf).
    """
    suffix = f" {unit}" if unit else ""
    message = f"{name} must lie in " + _interval(
        low, high, low_inclusive, high_inclusive
    )
    if not is_concrete(value):
        x = jnp.asarray(value)
        ok = jnp.isfinite(x)
        if low is not None:
            ok &= x >= low if low_inclusive else x > low
        if high is not None:
            ok &= x <= high if high_inclusive else x < high
        return _traced_check(ok, message + suffix + "; got", x)
    check_finite(name, value)
    arr = np.asarray(value, dtype=np.float64)
    ok = np.ones(arr.shape, dtype=bool)
    if low is not None:
        ok &= arr >= low if low_inclusive else arr > low
    if high is not None:
        ok &= arr <= high if high_inclusive else arr < high
    if not np.all(ok):
        raise ValueError(f"{message}{suffix}; got {_describe(arr[~ok])}")
    return True


def check_relation(ok, message: str, quantity: str, value, *, worst=np.max):
    """Require a relation between arguments (e.g. ``t2 <= t1``).

    Args:
        ok: boolean array (or scalar) of where the relation holds.
        message: what must hold, e.g. ``"t2 must not exceed t1"``.
        quantity: name of the reported ``value``, e.g. ``"t2/t1"``.
        value: the offending quantity, broadcastable with ``ok``.
        worst: reduction of the offending values for the eager message.

    Returns:
        ``True`` (concrete) or the mask ``ok`` (traced).

    Raises:
        ValueError: ``"{message}; got {quantity} up to {worst value}"``.
    """
    if not is_concrete(ok, value):
        ok = jnp.asarray(ok)
        if _CHECKED:
            value = jnp.broadcast_to(jnp.asarray(value), ok.shape)
            bad = jnp.max(jnp.where(ok, -jnp.inf, value))
            text = f"{message}; got {quantity} up to " + "{bad:.6g}"
            checkify.check(jnp.all(ok), text, bad=bad)
        return ok
    ok = np.asarray(ok)
    if not np.all(ok):
        bad = np.broadcast_to(np.asarray(value, np.float64), ok.shape)[~ok]
        raise ValueError(f"{message}; got {quantity} up to {float(worst(bad)):.6g}")
    return True


def nan_where_invalid(valid, result):
    """``result`` with NaN wherever ``valid`` is False (a no-op for ``True``)."""
    if valid is True:
        return result
    nan = jnp.asarray(jnp.nan, jnp.real(result).dtype).astype(result.dtype)
    return jnp.where(valid, result, nan)


@contextlib.contextmanager
def checked():
    """Checked mode: traced argument checks become checkify checks.

    Inside the block, call kernels (or functions using them) through
    ``jax.experimental.checkify.checkify``; :func:`checked_call` does both. JAX's
    compilation caches are cleared on entry and exit, so code traced outside the
    block never runs without its checks inside it, nor with them outside.
    """
    global _CHECKED
    jax.clear_caches()
    previous, _CHECKED = _CHECKED, True
    try:
        yield
    finally:
        _CHECKED = previous
        jax.clear_caches()


def checked_call(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` (jitted or not) with every traced argument check
    active; raise ``ValueError`` with the eager checks' message on invalid input.

    Example:
        >>> checked_call(jax.jit(bssfp_signal), 0.9, -1.0, 0.25, 3e-3, 1.5e-3, 1.0)
        Traceback (most recent call last):
        ValueError: t1 must lie in (0, inf] s; got -1.0
    """
    with checked():
        err, out = checkify.checkify(functools.partial(fn, **kwargs))(*args)
    message = err.get()
    if message is not None:
        raise ValueError(message.split(" (`check` failed)")[0])
    return out
