"""SPAMM tagging: binomial RF trains with tagging gradients, single and grid tags.

A SPAMM train is a sequence of hard RF pulses of angles ``flip_total * w_k / sum(w)``
about one transverse axis; between consecutive pulses a tagging gradient winds the
transverse magnetization by the phase ``2*pi*position/spacing`` (``position`` in mm
along the encoding direction), and a crusher removes all transverse magnetization at
the end. Only ``Mz`` survives: a periodic pattern whose period is ``spacing``. At the
tag centres (phase a multiple of ``2*pi``) the pulses add up, so ``Mz = m0
cos(flip_total)`` there; a 90 degree total nulls the tag centres.

The magnetization is propagated as the exact product of the 3x3 rotations (and,
optionally, relaxation over the inter-pulse time), unrolled over the static number of
pulses: the kernel is branch-free and jit/vmap/grad-able in every argument.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_range, is_concrete, nan_where_invalid

__all__ = ["spamm_mz", "spamm_pattern"]

MAX_FLIP_TOTAL = 2.0 * math.pi


def _float_dtype(*args):
    return jnp.result_type(float, *args)


def _check_weights(weights) -> int:
    if is_concrete(weights):
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size < 1:
            raise ValueError(
                f"weights must be a non-empty 1D sequence; got shape {w.shape}"
            )
        check_range("weights", w, low=0.0, low_inclusive=True, high=None)
        if not w.sum() > 0:
            raise ValueError(f"weights must have a positive sum; got {w.tolist()}")
    return int(np.shape(weights)[0])


def _check_train(spacing, flip_total, m0, t1, t2, pulse_interval):
    """Eager errors, or the mask of valid elements when traced."""
    ok = check_range("spacing", spacing, low=0.0, high=None, unit="mm")
    ok = ok & check_range(
        "flip_total", flip_total, low=0.0, high=MAX_FLIP_TOTAL, low_inclusive=True
    )
    ok = ok & check_range("m0", m0, low=0.0, low_inclusive=True, high=None)
    if (t1 is None) != (t2 is None):
        raise ValueError("t1 and t2 must both be given (relaxation) or both be None")
    if t1 is not None:
        ok = ok & check_range("t1", t1, low=0.0, high=None, unit="s")
        ok = ok & check_range("t2", t2, low=0.0, high=None, unit="s")
        ok = ok & check_range(
            "pulse_interval", pulse_interval, low=0.0, low_inclusive=True, high=None
        )
    return ok


@partial(jax.jit, static_argnames=("n",))
def _train(position, spacing, flip_total, weights, m0, mz0, t1, t2, interval, n):
    """Unrolled product of the pulse rotations and gradient windings."""
    w = weights / jnp.sum(weights)
    phase = 2.0 * jnp.pi * position / spacing
    cp, sp = jnp.cos(phase), jnp.sin(phase)
    mx = jnp.zeros_like(mz0)
    my = jnp.zeros_like(mz0)
    mz = mz0
    for k in range(n):
        if k:
            # gradient: precession of the transverse magnetization by -phase
            mx, my = mx * cp + my * sp, my * cp - mx * sp
            if t1 is not None:
                e1, e2 = jnp.exp(-interval / t1), jnp.exp(-interval / t2)
                mx, my = mx * e2, my * e2
                mz = mz * e1 + m0 * (1.0 - e1)
        a = flip_total * w[k]
        ca, sa = jnp.cos(a), jnp.sin(a)
        # hard pulse about +x (left-handed): tips +z towards +y
        my, mz = my * ca + mz * sa, mz * ca - my * sa
    return mz  # the crusher removes mx, my


def spamm_mz(
    position,
    *,
    spacing,
    flip_total,
    weights=(1, 3, 3, 1),
    m0=1.0,
    mz0=None,
    t1=None,
    t2=None,
    pulse_interval=0.0,
):
    """Longitudinal magnetization right after a SPAMM tagging train.

    Hard sub-pulses of angles ``flip_total * w_k / sum(w)`` about one transverse
    axis; between consecutive sub-pulses the tagging gradient winds a phase of
    ``2*pi*position/spacing``; the transverse magnetization is crushed at the end.
    With ``t1``/``t2`` given, the magnetization also relaxes (towards ``m0``) during
    the ``pulse_interval`` between sub-pulses, which lowers the tag contrast.

    Args:
        position: coordinate (mm) along the tag-encoding direction, any shape.
        spacing: tag period in mm, > 0.
        flip_total: sum of the sub-pulse angles in radians, in [0, 2*pi].
        weights: static-length 1D sequence of non-negative sub-pulse weights
            (``(1, 3, 3, 1)``: the 1-3-3-1 binomial train; ``(1, 1)``: 1-1 SPAMM).
        m0: equilibrium magnetization (proton density), >= 0.
        mz0: longitudinal magnetization before the train (default ``m0``); pass a
            first train's output to build a grid (:func:`spamm_pattern`).
        t1, t2: relaxation times in seconds, or both ``None`` for none.
        pulse_interval: seconds between consecutive sub-pulses (with ``t1``/``t2``).

    Returns:
        ``Mz`` with the broadcast shape of the inputs, float32 (float64 under x64).
        Without relaxation it lies in ``[-m0, m0]`` and has period ``spacing``.

    Raises:
        ValueError: for concrete arguments outside the ranges above.

    Example:
        >>> import math
        >>> abs(float(spamm_mz(0.0, spacing=5.0, flip_total=math.pi / 2))) < 1e-6
        True
    """
    n = _check_weights(weights)
    valid = _check_train(spacing, flip_total, m0, t1, t2, pulse_interval)
    relax = () if t1 is None else (t1, t2)
    args = (position, spacing, flip_total, m0, pulse_interval, *relax)
    args = args if mz0 is None else (*args, mz0)
    dtype = _float_dtype(*args)
    position, spacing, flip_total, m0, interval = (
        jnp.asarray(a, dtype)
        for a in (position, spacing, flip_total, m0, pulse_interval)
    )
    mz0 = m0 if mz0 is None else jnp.asarray(mz0, dtype)
    shape = jnp.broadcast_shapes(
        jnp.shape(position), jnp.shape(spacing), jnp.shape(mz0), jnp.shape(m0)
    )
    mz0 = jnp.broadcast_to(mz0, shape)
    weights = jnp.asarray(weights, dtype)
    if t1 is not None:
        t1, t2 = jnp.asarray(t1, dtype), jnp.asarray(t2, dtype)
    mz = _train(position, spacing, flip_total, weights, m0, mz0, t1, t2, interval, n=n)
    return nan_where_invalid(valid, mz)


def spamm_pattern(
    x,
    y,
    *,
    spacing,
    flip_total,
    angle=0.0,
    grid: bool = True,
    weights=(1, 3, 3, 1),
    m0=1.0,
    t1=None,
    t2=None,
    pulse_interval=0.0,
):
    """In-plane SPAMM tag pattern at any angle: line tags or a grid of two trains.

    The first train encodes along ``(cos angle, sin angle)`` (its tag lines are
    perpendicular to that direction); with ``grid`` a second, identical train,
    played after crushing the first, encodes along ``(-sin angle, cos angle)``
    starting from the first train's ``Mz``. Relaxation between the two trains is
    neglected (their gap is a few milliseconds).

    Args:
        x, y: in-plane coordinates in mm (broadcast together).
        spacing, flip_total, weights, m0, t1, t2, pulse_interval: as for
            :func:`spamm_mz` (each train has the full ``flip_total``).
        angle: in-plane angle of the first encoding direction, radians (any).
        grid: static; two orthogonal trains (``True``) or one (``False``).

    Returns:
        ``Mz`` of the broadcast shape of ``x`` and ``y``.
    """
    valid = check_range("angle", angle, low=None, high=None)
    kw = dict(
        spacing=spacing,
        flip_total=flip_total,
        weights=weights,
        m0=m0,
        t1=t1,
        t2=t2,
        pulse_interval=pulse_interval,
    )
    ca, sa = jnp.cos(angle), jnp.sin(angle)
    mz = spamm_mz(x * ca + y * sa, **kw)
    if grid:
        mz = spamm_mz(-x * sa + y * ca, mz0=mz, **kw)
    return nan_where_invalid(valid, mz)
