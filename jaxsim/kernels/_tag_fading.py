"""Tag fading: T1 recovery of tagged longitudinal magnetization under a spoiled readout.

After tagging, ``Mz`` relaxes towards ``m0`` with ``T1``; each RF-spoiled readout
pulse of flip ``alpha`` keeps ``cos(alpha) Mz`` (the transverse part is spoiled). The
readout of a frame at time ``t`` after tagging is modelled as the last pulse of a
train played every ``TR`` that reaches back to the tagging: ``n = floor(t / TR)``
pulses at ``t - n TR, ..., t - TR``. Before the first of them the magnetization
recovers freely for ``tau = t - n TR``; per repetition ``Mz+ = q Mz + m0 (1 - E1)``
with ``q = cos(alpha) E1``, ``E1 = exp(-TR/T1)``, whose closed form for ``n``
repetitions is ``q^n M + m0 (1 - E1) (1 - q^n) / (1 - q)``. Without readout pulses
(``tr=None``) this is plain recovery ``m0 + (mz0 - m0) exp(-t/T1)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._checks import check_range, nan_where_invalid

__all__ = ["tag_fading"]


def tag_fading(mz0, time, *, t1, m0=1.0, flip=0.0, tr=None):
    """Longitudinal magnetization just before a frame's readout pulse.

    Vectorised over frames, tissues and voxels: every argument broadcasts.

    Args:
        mz0: ``Mz`` right after tagging (e.g. from :func:`spamm_mz`).
        time: seconds from the end of tagging to the frame's readout pulse, >= 0.
        t1: longitudinal relaxation time in seconds, > 0.
        m0: equilibrium magnetization (proton density), >= 0.
        flip: readout flip angle in radians, in [0, pi/2).
        tr: readout repetition time in seconds, > 0; ``None`` for free recovery
            without readout pulses (then ``flip`` is ignored).

    Returns:
        ``Mz`` of the broadcast shape, float32 (float64 under x64). It is affine in
        ``mz0``: the tag contrast decays by ``cos(flip)^n exp(-t/T1)``.

    Raises:
        ValueError: for concrete arguments outside the ranges above.

    Example:
        >>> round(float(tag_fading(0.0, 0.5, t1=1.0)), 4)  # 1 - exp(-0.5)
        0.3935
    """
    valid = check_range("mz0", mz0, low=None, high=None)
    valid = valid & check_range(
        "time", time, low=0.0, low_inclusive=True, high=None, unit="s"
    )
    valid = valid & check_range("t1", t1, low=0.0, high=None, unit="s")
    valid = valid & check_range("m0", m0, low=0.0, low_inclusive=True, high=None)
    valid = valid & check_range(
        "flip",
        flip,
        low=0.0,
        high=math.pi / 2,
        low_inclusive=True,
        high_inclusive=False,
        unit="rad",
    )
    if tr is not None:
        valid = valid & check_range("tr", tr, low=0.0, high=None, unit="s")
    args = (mz0, time, t1, m0, flip) + (() if tr is None else (tr,))
    dtype = jnp.result_type(float, *args)
    args = tuple(jnp.asarray(a, dtype) for a in args)
    mz = _free(*args[:4]) if tr is None else _spoiled(*args)
    return nan_where_invalid(valid, mz)


@jax.jit
def _free(mz0, time, t1, m0):
    return m0 + (mz0 - m0) * jnp.exp(-time / t1)


@jax.jit
def _spoiled(mz0, time, t1, m0, flip, tr):
    n = jnp.floor(time / tr)
    tau = time - n * tr
    start = m0 + (mz0 - m0) * jnp.exp(-tau / t1)
    one_minus_e1 = -jnp.expm1(-tr / t1)
    one_minus_c = 2.0 * jnp.sin(flip / 2) ** 2
    # 1 - q and log q, accurate when flip -> 0 and TR << T1 (q -> 1)
    one_minus_q = one_minus_c + (1.0 - one_minus_c) * one_minus_e1
    log_q = jnp.log1p(-one_minus_c) - tr / t1
    qn = jnp.exp(n * log_q)
    one_minus_qn = -jnp.expm1(n * log_q)
    return qn * start + m0 * one_minus_e1 * one_minus_qn / one_minus_q
