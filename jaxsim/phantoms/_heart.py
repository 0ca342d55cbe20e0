"""Heart anatomy: the heart frame and the cardiac layers as signed distances.

Heart frame: columns ``(e_rv, e_3, e_long)`` of a rotation; ``e_long`` points from the
LV apex to the base (posterior, superior, to the patient's right), ``e_rv`` from the
LV axis towards the RV, ``e_3 = e_long x e_rv``. Its origin is the epicardial apex,
which stays fixed over the cardiac cycle (the base descends in systole).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from . import _sdf
from ._labels import TISSUE_INDEX
from ._motion import LVShape, lv_shape, respiratory_shift
from ._subject import Subject

__all__ = [
    "HeartPose",
    "heart_pose",
    "heart_layers",
    "chamber_distances",
    "chamber_bounds",
    "vessel_layers",
]

CHAMBER_TISSUES = tuple(
    TISSUE_INDEX[name]
    for name in (
        "lv_blood",
        "lv_myocardium",
        "rv_blood",
        "rv_myocardium",
        "la_blood",
        "ra_blood",
    )
)
HEART_RESPIRATORY_FRACTION = 0.6  # heart z excursion / diaphragm excursion
# RV crescent thickness (mm) per rv_lv_ratio * a^2 c / (A L); calibrated so that the
# realised RV volume of the default subjects is about rv_lv_ratio * edv.
RV_THICKNESS_GAIN = 1.65


class HeartPose(NamedTuple):
    """Placement of the heart frame in the world (mm)."""

    rot: object  # (3, 3), columns e_rv, e_3, e_long
    apex: object  # (3,) epicardial apex
    ed: LVShape  # LV shape at end-diastole (for the atria, vessels and planning)


def _axes(subject: Subject):
    az, el, roll = subject.heart_azimuth, subject.heart_elevation, subject.heart_roll
    # apex direction: anterior rotated towards the patient's left (-x), tilted down
    apex_dir = jnp.stack(
        [-jnp.sin(az) * jnp.cos(el), jnp.cos(az) * jnp.cos(el), -jnp.sin(el)]
    )
    e_long = -apex_dir
    right = jnp.asarray([1.0, 0.0, 0.0], e_long.dtype)
    ref = right - jnp.dot(right, e_long) * e_long
    ref = ref / jnp.linalg.norm(ref)
    other = jnp.cross(e_long, ref)
    e_rv = jnp.cos(roll) * ref + jnp.sin(roll) * other
    e_3 = jnp.cross(e_long, e_rv)
    return jnp.stack([e_rv, e_3, e_long], axis=1)


def heart_pose(subject: Subject, respiratory_phase=0.0) -> HeartPose:
    """World placement of the heart frame for one subject.

    The LV long-axis midpoint (apex to base centre, end-diastole) sits at the
    nominal point ``(-0.15 lateral, 0.28 ap, 0)`` plus ``heart_offset``, shifted
    along z by ``HEART_RESPIRATORY_FRACTION`` of the diaphragm excursion.
    """
    rot = _axes(subject)
    ed = lv_shape(subject, 0.0)
    dz = HEART_RESPIRATORY_FRACTION * respiratory_shift(subject, respiratory_phase)
    mid = jnp.stack(
        [-0.15 * subject.body_lateral, 0.28 * subject.body_ap, dz]
    ) + jnp.asarray(subject.heart_offset)
    apex = mid - 0.5 * ed.base * rot[:, 2]
    return HeartPose(rot, apex, ed)


def chamber_distances(subject: Subject, pose: HeartPose, shape: LVShape, p):
    """Distances (mm) of the chamber regions: LV blood, LV epicardium, RV blood, RV
    outer wall, LA, RA, and the pericardial fat envelope, in that order."""
    q1, q2, q3 = _sdf.rotate(p, pose.rot, pose.apex)
    ed = pose.ed
    hs = subject.heart_scale
    base = shape.base
    below_base = q3 - base
    lv_blood = _sdf.intersect(
        _sdf.ellipsoid(q1, q2, q3 - shape.center, shape.a, shape.a, shape.c),
        below_base,
    )
    lv_epi = _sdf.intersect(
        _sdf.ellipsoid(
            q1, q2, q3 - shape.center, shape.radius, shape.radius, shape.center
        ),
        below_base,
    )
    # RV: an ellipsoid offset towards e_rv; the LV epicardium (higher priority)
    # carves the septum, leaving a crescent that wraps the LV.
    blood = shape.a * shape.a * shape.c  # proportional to the LV blood volume
    thick = RV_THICKNESS_GAIN * subject.rv_lv_ratio * blood / (shape.radius * base)
    off = 0.7 * shape.radius
    r1 = shape.radius + thick - off
    r2 = 1.3 * shape.radius
    r3 = 0.5 * base
    zc = 0.6 * base
    tricuspid = q3 - (base + 3.0)
    rv_blood = _sdf.intersect(
        _sdf.ellipsoid(q1 - off, q2, q3 - zc, r1, r2, r3), tricuspid
    )
    t_rv = subject.rv_wall_thickness
    rv_outer = _sdf.intersect(
        _sdf.ellipsoid(q1 - off, q2, q3 - zc, r1 + t_rv, r2 + t_rv, r3 + t_rv),
        tricuspid,
    )
    # Atria sit on the base plane and fill while the ventricles eject.
    fill = (1.0 + 0.3 * shape.progress) ** (1.0 / 3.0)
    r_la = 24.0 * hs * fill
    la = _sdf.ellipsoid(
        q1 + 0.35 * ed.radius,
        q2 + 0.25 * ed.radius,
        q3 - base - 0.8 * r_la,
        1.1 * r_la,
        r_la,
        0.85 * r_la,
    )
    r_ra = 23.0 * hs * fill
    ra = _sdf.ellipsoid(
        q1 - 1.05 * ed.radius,
        q2 + 0.1 * ed.radius,
        q3 - base - 0.7 * r_ra,
        r_ra,
        r_ra,
        1.1 * r_ra,
    )
    ventricles = _sdf.union(lv_epi, rv_outer)
    pericardial = ventricles - subject.pericardial_fat
    return [lv_blood, lv_epi, rv_blood, rv_outer, la, ra, pericardial]


def heart_layers(subject: Subject, pose: HeartPose, shape: LVShape, p):
    """Cardiac layers in priority order, as ``(tissue_index, distance)`` pairs.

    Args:
        subject: one ``Subject``.
        pose: its ``HeartPose``.
        shape: the LV shape at the current phase (``lv_shape``).
        p: tuple ``(x, y, z)`` of broadcastable world arrays (mm).

    Returns:
        List of ``(int, array)``: tissue index into ``TISSUES`` and approximate signed
        distance (mm, negative inside) of the region that tissue claims.
    """
    chambers = chamber_distances(subject, pose, shape, p)
    return (
        [(t, chambers[n]) for n, t in enumerate(CHAMBER_TISSUES)]
        + vessel_layers(subject, pose, p)
        + [(TISSUE_INDEX["fat"], chambers[6])]
    )


def vessel_layers(subject: Subject, pose: HeartPose, p):
    """Aorta and pulmonary artery layers ``[(tissue_index, distance), ...]``."""
    aorta, pulmonary = _vessels(subject, pose, p)
    return [
        (TISSUE_INDEX["aorta"], aorta),
        (TISSUE_INDEX["pulmonary_artery"], pulmonary),
    ]


def chamber_bounds(subject: Subject, pose: HeartPose):
    """A sphere ``(centre (3,), radius)`` in mm holding every chamber layer.

    Conservative over the whole cycle (systole shrinks the ventricles; the atria grow
    by at most the factor used in ``chamber_distances``), so points outside it have
    chamber distances far above any soft-boundary width.
    """
    ed, hs = pose.ed, subject.heart_scale
    atrium = 24.0 * hs * 1.3 ** (1.0 / 3.0) * 1.1
    length = ed.base + 3.0 + 2.0 * atrium
    blood = ed.a * ed.a * ed.c
    thick = RV_THICKNESS_GAIN * subject.rv_lv_ratio * blood / (ed.radius * ed.base)
    radial = 1.3 * ed.radius + thick + atrium + subject.rv_wall_thickness
    centre = pose.apex + 0.5 * length * pose.rot[:, 2]
    radius = jnp.sqrt((0.5 * length + 3.0) ** 2 + radial**2)
    return centre, radius + subject.pericardial_fat + 10.0


def _vessels(subject: Subject, pose: HeartPose, p):
    """Aorta (root, ascending, arch, descending) and pulmonary trunk with branches."""
    rot, ed, hs = pose.rot, pose.ed, subject.heart_scale
    e_rv, e_3, e_long = rot[:, 0], rot[:, 1], rot[:, 2]
    base_centre = pose.apex + ed.base * e_long
    up = jnp.asarray([0.0, 0.0, 1.0], rot.dtype)
    right = jnp.asarray([1.0, 0.0, 0.0], rot.dtype)
    ant = jnp.asarray([0.0, 1.0, 0.0], rot.dtype)
    spine_y = -0.55 * subject.body_ap
    root = base_centre + 0.15 * ed.radius * e_rv + 0.3 * ed.radius * e_3
    asc_top = root + 60.0 * hs * up + 8.0 * right
    arch_back = jnp.stack([-18.0 * hs, spine_y + 35.0, asc_top[2] + 10.0 * hs])
    desc_low = jnp.stack([-22.0 * hs, spine_y + 30.0, -0.45 * subject.torso_length])
    aorta = _sdf.union(
        _sdf.capsule(p, root, asc_top, 15.0 * hs),
        _sdf.capsule(p, asc_top, arch_back, 13.0 * hs),
        _sdf.capsule(p, arch_back, desc_low, 11.0 * hs),
    )
    pa_root = base_centre + 0.6 * ed.radius * e_3 - 0.2 * ed.radius * e_rv
    pa_root = pa_root + 8.0 * e_long
    bif = pa_root + hs * (35.0 * up - 30.0 * ant - 12.0 * right)
    lpa = bif + hs * jnp.asarray([-45.0, -25.0, 0.0], rot.dtype)
    rpa = bif + hs * jnp.asarray([55.0, -20.0, -5.0], rot.dtype)
    pulmonary = _sdf.union(
        _sdf.capsule(p, pa_root, bif, 13.0 * hs),
        _sdf.capsule(p, bif, lpa, 9.0 * hs),
        _sdf.capsule(p, bif, rpa, 9.0 * hs),
    )
    return aorta, pulmonary
