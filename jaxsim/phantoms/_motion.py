"""Cardiac and respiratory motion, and the analytic left-ventricular shell.

The LV is a pair of confocal-free, co-centred prolate spheroids truncated by one base
plane: the cavity has semi-axes ``(a, a, c)``, the epicardium ``(A, A, C)``, both
centred ``C`` above the epicardial apex on the long axis, and the base plane lies
``h c`` above the centre (``h = BASE_HEIGHT``). The volume of a spheroid of semi-axes
``(r, r, s)`` cut at height ``z_b`` above its centre is
``pi r^2 (z_b + 2 s / 3 - z_b^3 / (3 s^2))`` — closed form, so the cavity realises any
blood volume exactly and the epicardial radius that keeps the myocardial volume fixed
is a square root.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from ._subject import Subject

__all__ = [
    "BASE_HEIGHT",
    "LVShape",
    "end_systolic_phase",
    "lv_shape",
    "lv_volumes",
    "volume_curve",
    "respiratory_shift",
]

BASE_HEIGHT = 0.45  # base plane above the cavity centre, in cavity long semi-axes
APEX_WALL_RATIO = 0.8  # apical / equatorial wall thickness at end-diastole
APEX_THICKENING = 0.5  # fractional apical wall thickening at end-systole
_MM3_PER_ML = 1000.0


def end_systolic_phase(subject: Subject):
    """Phase of end-systole in the cardiac cycle, ``es_time / rr_interval``.

    Args:
        subject: a ``Subject`` (any batch shape).

    Returns:
        Array of the subject's batch shape, in (0, 1); about 0.3–0.4 at rest.
    """
    return subject.es_time / subject.rr_interval


def _smoothstep(t):
    t = jnp.clip(t, 0.0, 1.0)
    return 0.5 - 0.5 * jnp.cos(jnp.pi * t)


def volume_curve(cardiac_phase, es_phase):
    """Normalised LV volume ``g``: 1 at end-diastole (phase 0), 0 at end-systole.

    Systole is a half-cosine ejection; diastole has rapid filling (80 % of the
    stroke volume over the first 40 % of diastole), diastasis, and the atrial kick
    (the last 20 %) — a C1, periodic, physiological shape.

    Args:
        cardiac_phase: phase in [0, 1) (broadcasts).
        es_phase: end-systolic phase in (0, 1) (broadcasts).

    Returns:
        ``g`` in [0, 1], broadcast shape.
    """
    phase = jnp.mod(cardiac_phase, 1.0)
    systole = 1.0 - _smoothstep(phase / es_phase)
    tau = (phase - es_phase) / (1.0 - es_phase)
    diastole = 0.8 * _smoothstep(tau / 0.4) + 0.2 * _smoothstep((tau - 0.8) / 0.2)
    return jnp.where(phase <= es_phase, systole, diastole)


def _truncated_volume(r, s, z_base):
    """Volume (mm^3) of the spheroid (r, r, s) below the plane ``z_base`` (centre 0)."""
    return jnp.pi * r * r * (z_base + 2.0 * s / 3.0 - z_base**3 / (3.0 * s * s))


class LVShape(NamedTuple):
    """LV dimensions at one phase (mm); distances along the axis from the epi apex."""

    a: object  # cavity radial semi-axis
    c: object  # cavity long semi-axis
    radius: object  # epicardial radial semi-axis (A)
    center: object  # apex-to-centre distance = epicardial long semi-axis (C)
    base: object  # apex-to-base-plane distance
    progress: object  # systolic progress 1 - g (0 at ED, 1 at ES)


def _cavity_ed(subject):
    h = BASE_HEIGHT
    f = (h + 1.0) - (h**3 + 1.0) / 3.0
    a = (subject.edv * _MM3_PER_ML / (jnp.pi * subject.lv_aspect * f)) ** (1.0 / 3.0)
    return a, subject.lv_aspect * a, f


def lv_shape(subject: Subject, cardiac_phase=0.0) -> LVShape:
    """Analytic LV dimensions at a cardiac phase.

    The cavity length shortens by ``longitudinal_shortening * progress``; its radius
    follows from the target volume ``esv + (edv - esv) g(phase)``. The apical wall
    thickens by ``APEX_THICKENING * progress`` and the epicardial radius is solved
    so that the myocardial volume stays at its end-diastolic value.

    Args:
        subject: one ``Subject`` (scalar leaves; vmap for batches).
        cardiac_phase: scalar phase in [0, 1).

    Returns:
        ``LVShape`` of scalars in mm.
    """
    h = BASE_HEIGHT
    a_ed, c_ed, f = _cavity_ed(subject)
    t_apex_ed = APEX_WALL_RATIO * subject.wall_thickness
    center_ed = c_ed + t_apex_ed
    radius_ed = a_ed + subject.wall_thickness
    myo = _truncated_volume(radius_ed, center_ed, h * c_ed) - _truncated_volume(
        a_ed, c_ed, h * c_ed
    )
    g = volume_curve(cardiac_phase, end_systolic_phase(subject))
    progress = 1.0 - g
    blood = (subject.esv + (subject.edv - subject.esv) * g) * _MM3_PER_ML
    c = c_ed * (1.0 - subject.longitudinal_shortening * progress)
    a = jnp.sqrt(blood / (jnp.pi * c * f))
    center = c + t_apex_ed * (1.0 + APEX_THICKENING * progress)
    unit = _truncated_volume(1.0, center, h * c)
    radius = jnp.sqrt((myo + blood) / unit)
    return LVShape(a, c, radius, center, center + h * c, progress)


def lv_volumes(subject: Subject, cardiac_phase=0.0):
    """Analytic LV blood and myocardial volumes (mL) at a phase.

    Computed from the shape returned by :func:`lv_shape` (not from the targets), so it
    checks the solver: blood equals ``edv`` at phase 0 and ``esv`` at end-systole, and
    the myocardium is constant.

    Returns:
        ``(blood, myocardium)`` scalars in mL.
    """
    shape = lv_shape(subject, cardiac_phase)
    z_base = shape.base - shape.center
    blood = _truncated_volume(shape.a, shape.c, z_base)
    outer = _truncated_volume(shape.radius, shape.center, z_base)
    return blood / _MM3_PER_ML, (outer - blood) / _MM3_PER_ML


def respiratory_shift(subject: Subject, respiratory_phase):
    """Diaphragm displacement along z (mm, <= 0): 0 at end-expiration (phase 0),
    ``-respiratory_amplitude`` at end-inspiration (phase 0.5)."""
    return -subject.respiratory_amplitude * _smoothstep(
        1.0 - jnp.abs(1.0 - 2.0 * jnp.mod(respiratory_phase, 1.0))
    )
