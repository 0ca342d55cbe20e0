"""bSSFP approach to steady state: the signal at the n-th pulse of the RF train."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._bssfp import (
    _echo_factor,
    _float_dtype,
    _relaxation_factors,
    validate_flip,
    validate_relaxation,
    validate_timing,
)
from ._checks import check_finite, check_range, is_concrete, nan_where_invalid

__all__ = ["bssfp_transient", "MAX_PULSE_INDEX"]

_N_BITS = 24
MAX_PULSE_INDEX = 2**_N_BITS - 1
_PREPARATIONS = ("half_alpha", "none")


def _rf_matrix(flip, phase):
    """Homogeneous 4x4 matrix of a hard pulse (physical sense, see _bssfp)."""
    ca, sa = jnp.cos(flip), jnp.sin(flip)
    cp, sp = jnp.cos(phase), jnp.sin(phase)
    one, zero = jnp.ones_like(ca), jnp.zeros_like(ca)
    # Rodrigues rotation by -flip about (cos phase, sin phase, 0).
    rows = [
        [ca + cp * cp * (1 - ca), cp * sp * (1 - ca), -sp * sa, zero],
        [cp * sp * (1 - ca), ca + sp * sp * (1 - ca), cp * sa, zero],
        [sp * sa, -cp * sa, ca, zero],
        [zero, zero, zero, one],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def _relax_matrix(pd, e1, one_minus_e1, e2, angle):
    """Homogeneous 4x4 matrix of relaxation and clockwise precession by ``angle``."""
    c, s = jnp.cos(angle), jnp.sin(angle)
    one, zero = jnp.ones_like(c), jnp.zeros_like(c)
    rows = [
        [e2 * c, e2 * s, zero, zero],
        [-e2 * s, e2 * c, zero, zero],
        [zero, zero, e1, pd * one_minus_e1],
        [zero, zero, zero, one],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def _matrix_power(a, n):
    """``a**n`` for batched (..., 4, 4) matrices and integer ``n`` by binary powering.

    A fixed number of squarings (no data-dependent loop), so it traces once and
    differentiates with respect to the entries of ``a``.
    """
    eye = jnp.broadcast_to(jnp.eye(4, dtype=a.dtype), a.shape)

    def body(i, carry):
        result, base = carry
        bit = ((n >> i) & 1).astype(bool)[..., None, None]
        result = jnp.where(bit, base @ result, result)
        return result, base @ base

    result, _ = jax.lax.fori_loop(0, _N_BITS, body, (eye, a))
    return result


@partial(jax.jit, static_argnames=("preparation",))
def _transient_core(
    pd, t1, t2, tr, te, flip, n, off_resonance, rf_phase_increment, preparation
):
    e1, one_minus_e1, e2 = _relaxation_factors(t1, t2, tr)
    theta = 2.0 * jnp.pi * off_resonance * tr
    # One repetition in the frame of the current pulse: relax and precess over TR
    # (plus the frame advance by the phase increment), then the next pulse.
    per_tr = _rf_matrix(flip, jnp.zeros_like(flip)) @ _relax_matrix(
        pd, e1, one_minus_e1, e2, theta + rf_phase_increment
    )
    shape = jnp.broadcast_shapes(per_tr.shape[:-2], n.shape)
    equilibrium = jnp.stack(
        [jnp.zeros_like(pd), jnp.zeros_like(pd), pd, jnp.ones_like(pd)], axis=-1
    )
    if preparation == "half_alpha":
        # alpha/2 pulse with the phase of pulse "-1", then TR/2 of free precession.
        half_e1, half_one_minus_e1, half_e2 = _relaxation_factors(t1, t2, tr / 2)
        prep = _relax_matrix(pd, half_e1, half_one_minus_e1, half_e2, theta / 2) @ (
            _rf_matrix(flip / 2, -rf_phase_increment)
        )
        start = _rf_matrix(flip, jnp.zeros_like(flip)) @ prep
    else:
        start = _rf_matrix(flip, jnp.zeros_like(flip))
    m0 = start @ equilibrium[..., None]
    power = _matrix_power(jnp.broadcast_to(per_tr, shape + (4, 4)), n)
    m = (power @ m0)[..., 0]
    mxy = jax.lax.complex(m[..., 0], m[..., 1])
    return mxy * _echo_factor(t2, te, off_resonance)


def bssfp_transient(
    pd,
    t1,
    t2,
    tr,
    te,
    flip,
    n,
    off_resonance=0.0,
    *,
    rf_phase_increment=math.pi,
    preparation="half_alpha",
):
    """Echo of a balanced SSFP train after its n-th RF pulse (approach to steady state).

    Starting from equilibrium, optionally after an alpha/2 - TR/2 preparation (an
    alpha/2 pulse with the phase of the pulse before the first, then TR/2 of free
    precession), the magnetization after pulse ``n`` is obtained exactly by raising
    the per-TR affine Bloch map to the power ``n`` (binary powering: O(log n)
    matrix products, no loop over ``n``). As ``n`` grows it converges to
    :func:`bssfp_signal`. Conventions as in :func:`bssfp_signal`.

    Args:
        pd, t1, t2, tr, te, flip, off_resonance, rf_phase_increment: as in
            :func:`bssfp_signal` (seconds, radians, Hz).
        n: integer pulse index, 0 for the first alpha pulse of the train, in
            [0, MAX_PULSE_INDEX]; broadcasts with the other arguments.
        preparation: ``"half_alpha"`` for the alpha/2 - TR/2 preparation or
            ``"none"`` to start the train from equilibrium.

    Returns:
        Complex transverse magnetization at TE after pulse ``n``, in the frame of
        that pulse; broadcast shape; complex64 (complex128 under x64).

    Raises:
        ValueError: for out-of-range or non-finite inputs, an unknown preparation
            or a pulse index outside [0, MAX_PULSE_INDEX].
    """
    if preparation not in _PREPARATIONS:
        raise ValueError(
            f"preparation must be one of {_PREPARATIONS}; got {preparation!r}"
        )
    valid = (
        validate_relaxation(pd, t1, t2)
        & validate_timing(tr, te)
        & validate_flip(flip)
        & check_finite("off_resonance", off_resonance)
        & check_finite("rf_phase_increment", rf_phase_increment)
    )
    if not is_concrete(n):
        valid = valid & _check_pulse_index(n)
    else:
        n_arr = np.asarray(n)
        if not np.issubdtype(n_arr.dtype, np.integer):
            raise TypeError(
                f"n must be an integer pulse index; got dtype {n_arr.dtype}"
            )
        if np.any((n_arr < 0) | (n_arr > MAX_PULSE_INDEX)):
            raise ValueError(
                f"n must lie in [0, {MAX_PULSE_INDEX}]; got min {n_arr.min()}, "
                f"max {n_arr.max()}"
            )
    dtype = _float_dtype(pd, t1, t2, tr, te, flip, off_resonance, rf_phase_increment)
    args = [jnp.asarray(a, dtype) for a in (pd, t1, t2, tr, te, flip)]
    args = jnp.broadcast_arrays(
        *args, jnp.asarray(off_resonance, dtype), jnp.asarray(rf_phase_increment, dtype)
    )
    out = _transient_core(
        *args[:6], jnp.asarray(n, jnp.int32), args[6], args[7], preparation
    )
    return nan_where_invalid(valid, out)


def _check_pulse_index(n):
    """Traced pulse indices: the mask of indices in [0, MAX_PULSE_INDEX]."""
    return check_range("n", n, low=0, high=MAX_PULSE_INDEX, low_inclusive=True)
