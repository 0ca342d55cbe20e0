"""Sequence parameters as pytrees (physical values are leaves, counts are static)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxsim.kernels import bssfp_signal, bssfp_transient
from jaxsim.kernels.checks import check_finite, check_range
from jaxsim.parameters import FieldBounds, ParameterSpec, register_parameters

__all__ = ["BSSFPSequence", "SEQUENCE_RANGES", "tissue_signals", "check_sequence"]

#: Allowed values of the bSSFP readout: ``(low, high)`` per field (seconds,
#: radians); ``"tr"`` as a bound means the same sequence's TR. Validation and the
#: unconstrained bijection (:mod:`jaxsim.parameters`) both use this table.
SEQUENCE_RANGES: dict[str, tuple] = {
    "tr": (0.0, 0.1),
    "te": (0.0, "tr"),
    "flip": (0.0, math.pi),
}


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


def check_sequence(sequence: BSSFPSequence, name: str = "sequence") -> None:
    """Raise ``ValueError`` if concrete values leave :data:`SEQUENCE_RANGES`
    (TE in (0, TR], flip in [0, pi], ...); tracers are skipped."""
    if not isinstance(sequence, BSSFPSequence):
        raise TypeError(
            f"{name} must be a BSSFPSequence; got {type(sequence).__name__}"
        )
    lo, hi = SEQUENCE_RANGES["tr"]
    check_range(f"{name}.tr", sequence.tr, low=lo, high=hi, unit="s")
    check_range(f"{name}.te", sequence.te, low=0.0, unit="s")
    check_range(
        f"{name}.te - {name}.tr",
        jnp.asarray(sequence.te) - jnp.asarray(sequence.tr),
        high=0.0,
        unit="s (TE must not exceed TR)",
    )
    lo, hi = SEQUENCE_RANGES["flip"]
    check_range(f"{name}.flip", sequence.flip, low=lo, high=hi, low_inclusive=True)
    check_finite(f"{name}.rf_phase_increment", sequence.rf_phase_increment)
    if sequence.dummy_pulses is not None and (
        int(sequence.dummy_pulses) != sequence.dummy_pulses or sequence.dummy_pulses < 0
    ):
        raise ValueError(
            f"{name}.dummy_pulses must be None or an integer >= 0; got "
            f"{sequence.dummy_pulses!r}"
        )


register_parameters(
    BSSFPSequence,
    ParameterSpec(
        fields=(
            FieldBounds("tr", *SEQUENCE_RANGES["tr"]),
            FieldBounds("te", SEQUENCE_RANGES["te"][0], lambda v: v["tr"]),
            FieldBounds("flip", *SEQUENCE_RANGES["flip"]),
        ),
        data=("rf_phase_increment",),
    ),
)
