"""Per-tissue MR properties as a pytree, their literature defaults and a sampler."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels.checks import check_range
from jaxsim.labels import TISSUES
from jaxsim.parameters import FieldBounds, ParameterSpec, register_parameters

from ._tissue_table import TABLE

__all__ = [
    "FIELD_STRENGTHS",
    "TissueProperties",
    "default_tissue_properties",
    "sample_tissue_properties",
    "tissue_property_std",
    "PROPERTY_RANGES",
    "check_tissue",
]

#: Allowed tissue properties: ``(low, high)`` per field (PD as a fraction of water;
#: T1, T2 in seconds; ``"t1"`` as a bound means the same tissue's T1, since
#: T2 <= T1). Validation and the unconstrained bijection use this one table.
PROPERTY_RANGES: dict[str, tuple] = {
    "pd": (0.0, 1.5),
    "t1": (1e-3, 10.0),
    "t2": (1e-4, "t1"),
}

FIELD_STRENGTHS: tuple[float, ...] = tuple(sorted(TABLE))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TissueProperties:
    """Proton density and relaxation times of every tissue in :data:`TISSUES`.

    Attributes:
        pd: proton density (fraction of water), shape ``(..., len(TISSUES))``.
        t1: longitudinal relaxation time in seconds, same shape.
        t2: transverse relaxation time in seconds, same shape.

    Leading dimensions batch (e.g. one row per contrast); index a tissue by name
    with :meth:`of`.
    """

    pd: jax.Array
    t1: jax.Array
    t2: jax.Array

    def of(self, name: str) -> TissueProperties:
        """Properties of one tissue by name (the last axis removed)."""
        if name not in TISSUES:
            raise ValueError(f"name must be one of {TISSUES}; got {name!r}")
        i = TISSUES.index(name)
        return jax.tree_util.tree_map(lambda a: a[..., i], self)


def _check_field(field: float) -> float:
    field = float(field)
    if field not in TABLE:
        raise ValueError(f"field must be one of {FIELD_STRENGTHS} tesla; got {field}")
    return field


def _column(field: float, prop: str, stat: str) -> np.ndarray:
    entries = TABLE[_check_field(field)]
    return np.array([getattr(getattr(entries[t], prop), stat) for t in TISSUES])


def default_tissue_properties(field: float = 1.5) -> TissueProperties:
    """Literature mean PD, T1 and T2 of every tissue at ``field`` (1.5 or 3 tesla).

    Returns:
        :class:`TissueProperties` with arrays of shape ``(len(TISSUES),)``, float32
        (float64 under x64); times in seconds.
    """
    return TissueProperties(
        *(jnp.asarray(_column(field, p, "mean")) for p in ("pd", "t1", "t2"))
    )


def tissue_property_std(field: float = 1.5) -> TissueProperties:
    """Population standard deviations matching :func:`default_tissue_properties`."""
    return TissueProperties(
        *(jnp.asarray(_column(field, p, "std")) for p in ("pd", "t1", "t2"))
    )


def sample_tissue_properties(
    key: jax.Array, n: int | None = None, *, field: float = 1.5, truncation: float = 2.0
) -> TissueProperties:
    """Draw per-subject tissue properties from truncated normal distributions.

    Each property of each tissue is drawn independently from a normal with the
    literature mean and standard deviation, truncated at ``truncation`` standard
    deviations and, below, at 20 percent of the mean so values stay physical.

    Args:
        key: PRNG key.
        n: number of draws; ``None`` for a single draw.
        field: main field in tesla, 1.5 or 3.
        truncation: truncation in standard deviations, in (0, 3].

    Returns:
        :class:`TissueProperties` of shape ``(len(TISSUES),)`` or
        ``(n, len(TISSUES))``.

    Raises:
        ValueError: for an unknown field, ``n < 1`` or truncation outside (0, 3].
    """
    _check_field(field)
    if not 0.0 < truncation <= 3.0:
        raise ValueError(f"truncation must lie in (0, 3]; got {truncation}")
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n must be a positive integer or None; got {n}")
    shape = (len(TISSUES),) if n is None else (int(n), len(TISSUES))
    draws = []
    for i, prop in enumerate(("pd", "t1", "t2")):
        mean, std = _column(field, prop, "mean"), _column(field, prop, "std")
        safe_std = np.where(std > 0, std, 1.0)
        lower = np.maximum(-truncation, (0.2 * mean - mean) / safe_std)
        z = jax.random.truncated_normal(
            jax.random.fold_in(key, i), lower, truncation, shape
        )
        draws.append(jnp.asarray(mean) + z * jnp.asarray(std))
    pd, t1, t2 = draws
    return TissueProperties(pd=pd, t1=t1, t2=t2)


def check_tissue(tissue: TissueProperties, name: str = "tissue") -> None:
    """Raise ``ValueError`` if concrete properties leave :data:`PROPERTY_RANGES`
    (or a tissue axis is not ``len(TISSUES)`` long); tracers are skipped."""
    if not isinstance(tissue, TissueProperties):
        raise TypeError(
            f"{name} must be a TissueProperties; got {type(tissue).__name__}"
        )
    for field in ("pd", "t1", "t2"):
        shape = jnp.shape(getattr(tissue, field))
        if not shape or shape[-1] != len(TISSUES):
            raise ValueError(
                f"{name}.{field} must have a last axis of len(TISSUES)="
                f"{len(TISSUES)}; got shape {shape}"
            )
    lo, hi = PROPERTY_RANGES["pd"]
    check_range(f"{name}.pd", tissue.pd, low=lo, high=hi, low_inclusive=True)
    lo, hi = PROPERTY_RANGES["t1"]
    check_range(f"{name}.t1", tissue.t1, low=lo, high=hi, unit="s")
    check_range(f"{name}.t2", tissue.t2, low=PROPERTY_RANGES["t2"][0], unit="s")
    check_range(
        f"{name}.t2 - {name}.t1",
        jnp.asarray(tissue.t2) - jnp.asarray(tissue.t1),
        high=0.0,
        unit="s (T2 must not exceed T1)",
    )


register_parameters(
    TissueProperties,
    ParameterSpec(
        fields=(
            FieldBounds("pd", *PROPERTY_RANGES["pd"], event_ndim=1),
            FieldBounds("t1", *PROPERTY_RANGES["t1"], event_ndim=1),
            FieldBounds(
                "t2", PROPERTY_RANGES["t2"][0], lambda v: v["t1"], event_ndim=1
            ),
        )
    ),
)
