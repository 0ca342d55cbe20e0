"""RF-spoiled gradient-echo steady state (the Ernst signal)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._bssfp import (
    _float_dtype,
    _relaxation_factors,
    validate_flip,
    validate_relaxation,
    validate_timing,
)
from ._checks import nan_where_invalid

__all__ = ["spoiled_gre_signal"]


@jax.jit
def _spoiled_core(pd, t1, t2, tr, te, flip):
    e1, one_minus_e1, _ = _relaxation_factors(t1, t2, tr)
    return (
        pd
        * one_minus_e1
        * jnp.sin(flip)
        / (1.0 - e1 * jnp.cos(flip))
        * jnp.exp(-te / t2)
    )


def spoiled_gre_signal(pd, t1, t2, tr, te, flip):
    """Steady-state echo of an ideally RF-spoiled gradient echo (Ernst equation).

    ``pd * (1 - E1) sin(flip) / (1 - E1 cos(flip)) * exp(-te/t2)`` with
    ``E1 = exp(-tr/t1)``: ideal spoiling removes all transverse coherence before
    each pulse, so only Mz carries over between repetitions. ``t2`` is the decay
    during TE (T2* for a gradient echo). The maximum over ``flip`` is at the Ernst
    angle ``arccos(E1)``.

    Args:
        pd: proton density, >= 0. t1: seconds, > 0. t2: seconds, in (0, t1].
        tr: repetition time in seconds, > 0. te: echo time in seconds, in (0, tr].
        flip: flip angle in radians, in [0, pi]. All broadcast together.

    Returns:
        Real signal magnitude, broadcast shape, float32 (float64 under x64).

    Raises:
        ValueError: for concrete inputs outside these ranges or NaN/inf.
    """
    valid = validate_relaxation(pd, t1, t2) & validate_timing(tr, te)
    valid = valid & validate_flip(flip)
    dtype = _float_dtype(pd, t1, t2, tr, te, flip)
    args = (jnp.asarray(a, dtype) for a in (pd, t1, t2, tr, te, flip))
    return nan_where_invalid(valid, _spoiled_core(*args))
