"""Balanced SSFP: exact steady state, transient response and the MRXCAT limit.

Conventions (used by every MR kernel of jaxsim):

* Hard RF pulses. A pulse of flip ``alpha`` and phase ``phi`` rotates the magnetization
  about the transverse axis ``(cos phi, sin phi, 0)`` in the physical (left-handed,
  gamma > 0) sense: a pulse of phase 0 tips ``+z`` towards ``+y``.
* Free precession at off-resonance ``df`` (Hz) for a time ``t`` multiplies the
  transverse magnetization ``Mxy = Mx + i My`` by ``exp(-2j*pi*df*t - t/T2)``; ``Mz``
  relaxes towards the proton density with ``T1``.
* The n-th pulse has phase ``n * rf_phase_increment`` and the receiver is demodulated
  with that same phase, so the reported signal is ``Mxy`` in the frame of the latest
  pulse. In that frame one TR acts as a precession by
  ``beta = 2*pi*df*TR + rf_phase_increment``: the usual alternating-phase bSSFP
  (increment ``pi``) has its signal maximum on resonance and its dark bands at
  ``df = +-1/(2 TR)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    check_finite,
    check_range,
    check_relation,
    is_concrete,
    nan_where_invalid,
)

__all__ = ["bssfp_signal", "mrxcat_bssfp_signal"]


def _float_dtype(*args):
    return jnp.result_type(float, *args)


def validate_relaxation(pd, t1, t2):
    """Checks of tissue properties: eager errors, or the mask of valid elements
    when traced (see :mod:`jaxsim.kernels.checks`)."""
    ok = check_range("pd", pd, low=0.0, low_inclusive=True, high=None)
    ok = ok & check_range("t1", t1, low=0.0, high=None, unit="s")
    ok = ok & check_range("t2", t2, low=0.0, high=None, unit="s")
    t1, t2 = _as_float(t1), _as_float(t2)
    return ok & check_relation(
        t2 <= t1 * (1.0 + 1e-12),
        "t2 must not exceed t1 (T2 <= T1 for any tissue)",
        "t2/t1",
        t2 / t1,
    )


def validate_timing(tr, te):
    """Checks of TR > 0 and TE in (0, TR] (eager errors or the traced mask)."""
    ok = check_range("tr", tr, low=0.0, high=None, unit="s")
    ok = ok & check_range("te", te, low=0.0, high=None, unit="s")
    tr, te = _as_float(tr), _as_float(te)
    gap = te - tr
    return ok & check_relation(
        gap <= 1e-12 * abs(tr), "te must lie in (0, tr]", "te - tr (s)", gap
    )


def validate_flip(flip):
    """Check of flip in [0, pi] (eager error or the traced mask)."""
    return check_range(
        "flip", flip, low=0.0, high=math.pi, low_inclusive=True, unit="rad"
    )


def _as_float(x):
    """Concrete values as float64 NumPy (exact eager relations), tracers as they
    are."""
    return np.asarray(x, np.float64) if is_concrete(x) else jnp.asarray(x)


def _decay(x):
    """``(exp(-x), 1 - exp(-x))`` for ``x >= 0``, both to full relative precision.

    Below x = 0.05 the complement comes from its Taylor series (truncation error
    x^8/8! < 1e-14 x), above it from ``1 - exp(-x)``; this costs one ``exp``
    where ``expm1`` would cost about two on XLA's CPU backend.
    """
    e = jnp.exp(-x)
    series = x * (
        1 - x / 2 * (1 - x / 3 * (1 - x / 4 * (1 - x / 5 * (1 - x / 6 * (1 - x / 7)))))
    )
    return e, jnp.where(x < 0.05, series, 1.0 - e)


def _relaxation_factors(t1, t2, tr):
    """E1, 1-E1 (accurate for TR << T1) and E2 over one TR."""
    e1, one_minus_e1 = _decay(tr / t1)
    return e1, one_minus_e1, jnp.exp(-tr / t2)


def _echo_factor(t2, te, off_resonance):
    """Relaxation and precession between the pulse and the echo at TE."""
    phase = -2.0 * jnp.pi * off_resonance * te
    return jnp.exp(-te / t2) * jax.lax.complex(jnp.cos(phase), jnp.sin(phase))


@jax.jit
def _bssfp_core(pd, t1, t2, tr, te, flip, off_resonance, rf_phase_increment):
    e1, one_minus_e1 = _decay(tr / t1)
    e2, one_minus_e2 = _decay(tr / t2)
    beta = 2.0 * jnp.pi * off_resonance * tr + rf_phase_increment
    ca, sa = jnp.cos(flip), jnp.sin(flip)
    # 1 - cos computed as 2 sin^2(x/2): exact near 0 where the cosine form cancels;
    # one sine/cosine pair of beta/2 gives both 1 - cos(beta) and sin(beta).
    one_minus_ca = 2.0 * jnp.sin(flip / 2) ** 2
    sh, ch = jnp.sin(beta / 2), jnp.cos(beta / 2)
    one_minus_cb = 2.0 * sh**2
    sb = 2.0 * sh * ch
    # Fixed point of M+ = R_x(alpha) [P(beta) E M+ + (1 - E1) z] in closed form. The
    # textbook denominator (1 - E1 ca)(1 - E2 cb) - E2 (E1 - ca)(E2 - cb) is
    # rewritten as a sum of non-negative terms, which stays accurate in float32 when
    # E1, E2 -> 1 (long T1, T2) and is positive unless E1 = E2 = 1.
    denom = (
        one_minus_ca * one_minus_e2 * (e1 + e2)
        + one_minus_e1 * one_minus_cb * (1.0 + ca) * e2
        + one_minus_e1 * one_minus_e2**2
    )
    scale = pd * one_minus_e1 * sa / denom
    mx = scale * e2 * sb
    my = scale * (one_minus_e2 + e2 * one_minus_cb)
    mxy = jax.lax.complex(mx, my)
    return mxy * _echo_factor(t2, te, off_resonance)


def bssfp_signal(
    pd, t1, t2, tr, te, flip, off_resonance=0.0, *, rf_phase_increment=math.pi
):
    """Exact steady-state echo of a balanced SSFP sequence with hard pulses.

    The magnetization right after each RF pulse is the fixed point of one
    repetition (pulse, then free precession with T1/T2 relaxation over TR); the
    result is that magnetization relaxed and precessed to the echo time TE. It is
    exact for any off-resonance, so it reproduces the bSSFP banding profile, and it
    reduces to :func:`mrxcat_bssfp_signal` for TR << T2 on resonance.

    All arguments broadcast against each other.

    Args:
        pd: proton density (equilibrium magnetization), >= 0, arbitrary units.
        t1: longitudinal relaxation time in seconds, > 0.
        t2: transverse relaxation time in seconds, in (0, t1].
        tr: repetition time in seconds, > 0.
        te: echo time in seconds, in (0, tr].
        flip: flip angle in radians, in [0, pi].
        off_resonance: off-resonance frequency in Hz (any finite value).
        rf_phase_increment: RF phase advance per pulse in radians; ``pi`` is the
            usual alternating-phase bSSFP, ``0`` a constant-phase train.

    Returns:
        Complex transverse magnetization at TE in the receiver frame that follows
        the RF phase (see the module docstring), broadcast shape of the inputs,
        complex64 (complex128 under x64).

    Raises:
        ValueError: for concrete inputs outside the ranges above or NaN/inf.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> s = bssfp_signal(1.0, 1.2, 0.05, 3e-3, 1.5e-3, jnp.deg2rad(60.0))
        >>> round(float(abs(s)), 4)
        0.0641
        >>> dflip = jax.grad(lambda a: abs(bssfp_signal(1.0, 1.2, 0.05, 3e-3,
        ...                                             1.5e-3, a)))(1.0)
    """
    valid = (
        validate_relaxation(pd, t1, t2)
        & validate_timing(tr, te)
        & validate_flip(flip)
        & check_finite("off_resonance", off_resonance)
        & check_finite("rf_phase_increment", rf_phase_increment)
    )
    dtype = _float_dtype(pd, t1, t2, tr, te, flip, off_resonance, rf_phase_increment)
    args = [
        jnp.asarray(a, dtype)
        for a in (pd, t1, t2, tr, te, flip, off_resonance, rf_phase_increment)
    ]
    return nan_where_invalid(valid, _bssfp_core(*args))


def mrxcat_bssfp_signal(pd, t1, t2, te, flip):
    """The bSSFP signal formula used by MRXCAT (the TR << T2 limit, on resonance).

    ``pd * sin(flip) / ((t1/t2 + 1) - cos(flip) * (t1/t2 - 1)) * exp(-te/t2)``.
    It is the limit of :func:`bssfp_signal` (magnitude, alternating RF phase, zero
    off-resonance) as TR/T2 -> 0 with TE/T2 held fixed; for TR = 3 ms, TE = 1.5 ms,
    T1 = 1.2 s, T2 = 50 ms and 60 degrees it is 3 percent below the exact steady
    state, and the gap shrinks in proportion to TR.

    Args:
        pd: proton density, >= 0. t1, t2: relaxation times in seconds, 0 < t2 <= t1.
        te: echo time in seconds, >= 0. flip: flip angle in radians, in [0, pi].

    Returns:
        Real signal magnitude, broadcast shape of the inputs, float32 (float64
        under x64).
    """
    valid = (
        validate_relaxation(pd, t1, t2)
        & check_range("te", te, low=0.0, low_inclusive=True, high=None, unit="s")
        & validate_flip(flip)
    )
    dtype = _float_dtype(pd, t1, t2, te, flip)
    pd, t1, t2, te, flip = (jnp.asarray(a, dtype) for a in (pd, t1, t2, te, flip))
    ratio = t1 / t2
    signal = (
        pd
        * jnp.sin(flip)
        / ((ratio + 1.0) - jnp.cos(flip) * (ratio - 1.0))
        * jnp.exp(-te / t2)
    )
    return nan_where_invalid(valid, signal)
