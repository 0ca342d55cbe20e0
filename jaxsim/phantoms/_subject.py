"""The virtual subject: a frozen pytree of anatomical and physiological parameters."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels.checks import check_finite, check_range, is_concrete
from jaxsim.parameters import FieldBounds, ParameterSpec, register_parameters

from ._residual import ResidualDeformation, check_deformation

__all__ = [
    "Subject",
    "default_subject",
    "check_subject",
    "sex_code",
    "FIELD_SPECS",
    "ES_PHASE_RANGE",
]


class FieldSpec(NamedTuple):
    """Allowed range, unit and the adult male / female defaults of one field."""

    low: float
    high: float
    unit: str
    male: float | tuple[float, ...]
    female: float | tuple[float, ...]


# Defaults are population means (see _population.py for the sources); ranges are the
# physically meaningful limits enforced by `check_subject`, deliberately wider than
# the sampled population.
FIELD_SPECS: dict[str, FieldSpec] = {
    "sex": FieldSpec(0.0, 1.0, "(0 male, 1 female)", 0.0, 1.0),
    "body_ap": FieldSpec(60.0, 250.0, "mm", 127.0, 119.0),
    "body_lateral": FieldSpec(80.0, 300.0, "mm", 166.0, 142.0),
    "torso_length": FieldSpec(250.0, 900.0, "mm", 600.0, 560.0),
    "fat_thickness": FieldSpec(1.0, 60.0, "mm", 12.0, 17.0),
    "muscle_thickness": FieldSpec(2.0, 40.0, "mm", 12.0, 9.0),
    "heart_scale": FieldSpec(0.6, 1.6, "", 1.0, 0.92),
    "edv": FieldSpec(30.0, 400.0, "mL", 160.0, 135.0),
    "esv": FieldSpec(5.0, 300.0, "mL", 50.0, 42.0),
    "wall_thickness": FieldSpec(3.0, 20.0, "mm", 8.5, 7.2),
    "lv_aspect": FieldSpec(1.2, 3.5, "", 2.0, 2.0),
    "longitudinal_shortening": FieldSpec(0.0, 0.35, "", 0.15, 0.15),
    "rv_lv_ratio": FieldSpec(0.6, 1.8, "", 1.19, 1.1),
    "rv_wall_thickness": FieldSpec(1.0, 10.0, "mm", 3.5, 3.2),
    "heart_azimuth": FieldSpec(0.0, 1.5, "rad", 0.75, 0.75),
    "heart_elevation": FieldSpec(-0.3, 1.2, "rad", 0.45, 0.45),
    "heart_roll": FieldSpec(-1.2, 1.2, "rad", 0.0, 0.0),
    "heart_offset": FieldSpec(-60.0, 60.0, "mm", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    "diaphragm_height": FieldSpec(-200.0, 50.0, "mm", -55.0, -50.0),
    "rr_interval": FieldSpec(0.3, 2.0, "s", 0.9, 0.86),
    "es_time": FieldSpec(0.1, 0.7, "s", 0.33, 0.33),
    "lung_scale": FieldSpec(0.6, 1.5, "", 1.0, 0.93),
    "liver_scale": FieldSpec(0.6, 1.5, "", 1.0, 0.92),
    "pericardial_fat": FieldSpec(0.0, 15.0, "mm", 2.5, 2.0),
    "respiratory_amplitude": FieldSpec(0.0, 40.0, "mm", 12.0, 10.0),
}


#: Allowed end-systolic phase ``es_time / rr_interval``.
ES_PHASE_RANGE = (0.15, 0.65)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Subject:
    """One virtual subject (or a batch of them: every field gains leading axes).

    Every field is an array leaf (float), so a batch slices with ``tree_map`` and every
    value can be traced and differentiated. World frame: RAS+ mm, origin at the
    centre of the torso cross-section at the nominal heart level.

    Attributes:
        sex: 0.0 male, 1.0 female.
        body_ap, body_lateral: torso (skin) semi-axes, anterior-posterior and
            left-right, mm.
        torso_length: torso extent along z, mm.
        fat_thickness: subcutaneous fat thickness, mm.
        muscle_thickness: chest wall muscle thickness, mm.
        heart_scale: size factor of the atria and great vessels (1 = average man).
        edv, esv: LV blood volume at end-diastole and end-systole, mL (realised
            exactly by the analytic LV model).
        wall_thickness: LV equatorial wall thickness at end-diastole, mm.
        lv_aspect: LV cavity long/short semi-axis ratio at end-diastole.
        longitudinal_shortening: fractional shortening of the LV cavity length
            from ED to ES.
        rv_lv_ratio: RV / LV end-diastolic size ratio.
        rv_wall_thickness: RV free-wall thickness, mm.
        heart_azimuth: angle of the LV apex direction from anterior towards the
            patient's left in the axial plane, rad.
        heart_elevation: angle of the apex direction below the axial plane, rad.
        heart_roll: rotation of the RV about the LV long axis, rad.
        heart_offset: ``(..., 3)`` shift of the heart from its nominal place, mm.
        diaphragm_height: z of the diaphragm at the torso centre (end-expiration), mm.
        rr_interval: cardiac cycle length, s.
        es_time: time from end-diastole to end-systole, s.
        lung_scale, liver_scale: organ size factors.
        pericardial_fat: thickness of the fat layer around the ventricles, mm.
        respiratory_amplitude: diaphragm excursion from expiration to inspiration, mm.
        deformation: optional :class:`ResidualDeformation` of the heart (shapes
            beyond the analytic family, volume-preserving); ``None`` (the default)
            is the analytic heart. Not a parameter of the unconstrained bijection
            (its ``control`` is already unconstrained): it is carried over as data.
    """

    sex: jax.Array
    body_ap: jax.Array
    body_lateral: jax.Array
    torso_length: jax.Array
    fat_thickness: jax.Array
    muscle_thickness: jax.Array
    heart_scale: jax.Array
    edv: jax.Array
    esv: jax.Array
    wall_thickness: jax.Array
    lv_aspect: jax.Array
    longitudinal_shortening: jax.Array
    rv_lv_ratio: jax.Array
    rv_wall_thickness: jax.Array
    heart_azimuth: jax.Array
    heart_elevation: jax.Array
    heart_roll: jax.Array
    heart_offset: jax.Array
    diaphragm_height: jax.Array
    rr_interval: jax.Array
    es_time: jax.Array
    lung_scale: jax.Array
    liver_scale: jax.Array
    pericardial_fat: jax.Array
    respiratory_amplitude: jax.Array
    deformation: ResidualDeformation | None = None

    def replace(self, **changes) -> Subject:
        """A copy with some fields changed (values converted to arrays)."""
        return dataclasses.replace(self, **changes)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading (batch) shape shared by all fields; ``()`` for one subject."""
        return tuple(jnp.shape(self.edv))


def sex_code(sex) -> float:
    """Map ``"male"``/``"female"``/``0``/``1`` to 0.0/1.0, raising on anything else."""
    if isinstance(sex, str):
        table = {"male": 0.0, "m": 0.0, "female": 1.0, "f": 1.0}
        if sex.lower() not in table:
            raise ValueError(f"sex must be 'male' or 'female' (or 0/1); got {sex!r}")
        return table[sex.lower()]
    if isinstance(sex, (int, float, np.integer, np.floating)) and float(sex) in (0, 1):
        return float(sex)
    raise ValueError(f"sex must be 'male' or 'female' (or 0/1); got {sex!r}")


def default_subject(sex="male", *, dtype=None) -> Subject:
    """The population-mean adult of the given sex.

    Args:
        sex: ``"male"`` or ``"female"`` (or 0 / 1).
        dtype: float dtype of the leaves (default: JAX's default float).

    Returns:
        A ``Subject`` with scalar leaves (``heart_offset`` has shape ``(3,)``).

    Example:
        >>> s = default_subject("female")
        >>> float(s.edv)
        135.0
    """
    code = sex_code(sex)
    dtype = dtype or jnp.zeros(()).dtype
    values = {
        name: jnp.asarray(spec.female if code else spec.male, dtype)
        for name, spec in FIELD_SPECS.items()
    }
    return Subject(**values)


def check_subject(subject: Subject, name: str = "subject") -> None:
    """Raise ``ValueError`` if a concrete subject is invalid (skipped when traced).

    Checks every field's range, that ``sex`` is 0 or 1, ``esv < edv``, that the
    end-systolic phase ``es_time / rr_interval`` lies in [0.15, 0.65], that
    ``heart_offset`` has a trailing axis of 3, and that a ``deformation`` is a
    :class:`ResidualDeformation` with finite control values.
    """
    if not isinstance(subject, Subject):
        raise TypeError(f"{name} must be a Subject; got {type(subject).__name__}")
    if subject.deformation is not None:
        check_deformation(subject.deformation, f"{name}.deformation")
    leaves = [getattr(subject, f) for f in FIELD_SPECS]
    if not is_concrete(*leaves):
        return
    for field, spec in FIELD_SPECS.items():
        value = np.asarray(getattr(subject, field), dtype=np.float64)
        label = f"{name}.{field}"
        check_finite(label, value)
        if field == "sex":
            if not np.all((value == 0.0) | (value == 1.0)):
                bad = value[(value != 0.0) & (value != 1.0)]
                raise ValueError(
                    f"{label} must be 0 (male) or 1 (female); got {bad.ravel()[0]!r}"
                )
            continue
        check_range(label, value, low=spec.low, high=spec.high, unit=spec.unit)
    offset = np.asarray(subject.heart_offset)
    if offset.ndim < 1 or offset.shape[-1] != 3:
        raise ValueError(
            f"{name}.heart_offset must have a trailing axis of 3; got {offset.shape}"
        )
    edv, esv = np.asarray(subject.edv), np.asarray(subject.esv)
    if not np.all(esv < edv):
        raise ValueError(
            f"{name}.esv must be smaller than {name}.edv; got esv={esv.max():.6g} mL "
            f"and edv={edv.min():.6g} mL"
        )
    phase = np.asarray(subject.es_time) / np.asarray(subject.rr_interval)
    check_range(
        f"{name}.es_time / {name}.rr_interval (end-systolic phase)",
        phase,
        low=ES_PHASE_RANGE[0],
        high=ES_PHASE_RANGE[1],
        low_inclusive=True,
    )


def _subject_bounds() -> tuple[FieldBounds, ...]:
    """The learnable fields of a Subject with the ranges of FIELD_SPECS, plus the
    joint constraints of :func:`check_subject` (``esv < edv``; the end-systolic
    phase inside ``ES_PHASE_RANGE``), as bounds on fields decoded later."""
    es = FIELD_SPECS["es_time"]
    esv = FIELD_SPECS["esv"]
    special = {
        "esv": FieldBounds("esv", esv.low, lambda v: jnp.minimum(esv.high, v["edv"])),
        "es_time": FieldBounds(
            "es_time",
            lambda v: jnp.maximum(es.low, ES_PHASE_RANGE[0] * v["rr_interval"]),
            lambda v: jnp.minimum(es.high, ES_PHASE_RANGE[1] * v["rr_interval"]),
        ),
        "heart_offset": FieldBounds(
            "heart_offset",
            FIELD_SPECS["heart_offset"].low,
            FIELD_SPECS["heart_offset"].high,
            event_ndim=1,
        ),
    }
    order = [n for n in FIELD_SPECS if n not in ("sex", "esv", "es_time")]
    # dependent fields after the fields they depend on
    order += ["esv", "es_time"]
    return tuple(
        special.get(n, FieldBounds(n, FIELD_SPECS[n].low, FIELD_SPECS[n].high))
        for n in order
    )


# The discrete sex is data (the sampler's choice), not a learnable coordinate; the
# residual deformation is unconstrained already and carried over from the template.
register_parameters(
    Subject, ParameterSpec(fields=_subject_bounds(), data=("sex", "deformation"))
)
