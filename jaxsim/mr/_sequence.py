"""Sequence parameters as pytrees (physical values are leaves, counts are static)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxsim.kernels import bssfp_signal, bssfp_transient

__all__ = ["BSSFPSequence", "tissue_signals"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BSSFPSequence:
    """A balanced SSFP cine readout.

    Attributes:
        tr: repetition time in seconds.
        te: echo time in seconds, in (0, tr].
        flip: flip angle in radians, in [0, pi].
        rf_phase_increment: RF phase advance per pulse in radians (pi: alternating).
        dummy_pulses: static; ``None`` for the exact steady state, else the number
            of RF pulses played before the echo that is imaged (transient signal).
        preparation: static; ``"half_alpha"`` (alpha/2 - TR/2) or ``"none"``; used
            only with ``dummy_pulses``.

    Leaves may carry a leading batch dimension (one row per contrast) for ``vmap``.
    """

    tr: jax.Array = 3.1e-3
    te: jax.Array = 1.55e-3
    flip: jax.Array = math.radians(60.0)
    rf_phase_increment: jax.Array = math.pi
    dummy_pulses: int | None = dataclasses.field(
        default=None, metadata=dict(static=True)
    )
    preparation: str = dataclasses.field(
        default="half_alpha", metadata=dict(static=True)
    )


def tissue_signals(props, sequence: BSSFPSequence, off_resonance=0.0) -> jax.Array:
    """Complex bSSFP echo of every tissue for one sequence.

    Args:
        props: :class:`~jaxsim.mr.TissueProperties` with arrays ``(n_tissues,)``.
        sequence: the readout.
        off_resonance: Hz; scalar, or an array that broadcasts against
            ``(n_tissues, 1, ..., 1)`` (e.g. a field map of shape ``(1, nz, ny, nx)``
            with ``props`` reshaped) — usually a scalar.

    Returns:
        ``(n_tissues,)`` complex array (or the broadcast shape).
    """
    args = (props.pd, props.t1, props.t2, sequence.tr, sequence.te, sequence.flip)
    if sequence.dummy_pulses is None:
        return bssfp_signal(
            *args, off_resonance, rf_phase_increment=sequence.rf_phase_increment
        )
    return bssfp_transient(
        *args,
        jnp.asarray(sequence.dummy_pulses),
        off_resonance,
        rf_phase_increment=sequence.rf_phase_increment,
        preparation=sequence.preparation,
    )
