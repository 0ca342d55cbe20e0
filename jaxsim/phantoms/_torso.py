"""Torso anatomy (everything but the heart) as signed distances in world mm.

RAS+ world: ``+x`` patient right, ``+y`` anterior, ``+z`` superior; the origin is the
centre of the torso cross-section at the nominal heart level.
"""

from __future__ import annotations

import jax.numpy as jnp

from . import _sdf
from ._labels import TISSUE_INDEX
from ._motion import respiratory_shift
from ._subject import Subject

__all__ = ["torso_layers", "diaphragm_height"]

RIB_PITCH = 30.0  # mm between consecutive ribs along z (for a 600 mm torso)
RIB_SLOPE = 0.35  # ribs descend anteriorly: dz / dy


def _cavity(subject: Subject):
    """Semi-axes and AP centre of the inner (visceral) cavity ellipse."""
    wall = subject.fat_thickness + subject.muscle_thickness
    lat = subject.body_lateral - wall
    ap = subject.body_ap - wall - 10.0  # paraspinal muscles: posterior wall thicker
    return lat, ap, 10.0


def diaphragm_height(subject: Subject, x, y, respiratory_phase=0.0):
    """z (mm) of the diaphragm surface above ``(x, y)``; the right dome is higher."""
    lat, ap, shift = _cavity(subject)
    u, v = x / lat, (y - shift) / ap
    return (
        subject.diaphragm_height
        + respiratory_shift(subject, respiratory_phase)
        + 0.08 * x
        - 45.0 * u * u
        - 25.0 * v * v
    )


def torso_layers(subject: Subject, p, respiratory_phase=0.0):
    """Non-cardiac layers in priority order, as ``(tissue_index, distance)`` pairs.

    Args:
        subject: one ``Subject``.
        p: tuple ``(x, y, z)`` of broadcastable world arrays (mm).
        respiratory_phase: scalar in [0, 1); 0 is end-expiration.

    Returns:
        List of ``(int, array)`` pairs (tissue index, signed distance in mm).
    """
    x, y, z = p
    length = subject.torso_length
    z_slab = jnp.abs(z + 0.05 * length) - 0.5 * length
    lat, ap, shift = _cavity(subject)
    yc = y - shift
    cavity = _sdf.intersect(_sdf.ellipse(x, yc, lat, ap), z_slab)
    muscle_out = subject.body_lateral - subject.fat_thickness
    muscle = _sdf.intersect(
        _sdf.ellipse(x, y, muscle_out, subject.body_ap - subject.fat_thickness),
        z_slab,
    )
    body = _sdf.intersect(
        _sdf.ellipse(x, y, subject.body_lateral, subject.body_ap), z_slab
    )

    bone = _bones(subject, x, y, z, lat, ap, shift)
    z_d = diaphragm_height(subject, x, y, respiratory_phase)
    above = z_d - z
    below = z - z_d
    drop = respiratory_shift(subject, respiratory_phase)
    ls, vs = subject.lung_scale, subject.liver_scale
    lung_top = 0.25 * length
    lung_zc = 0.5 * (lung_top + subject.diaphragm_height - 60.0)
    lung_rz = ls * 0.5 * (lung_top - subject.diaphragm_height + 60.0)
    right_lung = _sdf.ellipsoid(
        x - 0.47 * lat, yc + 0.05 * ap, z - lung_zc, 0.5 * lat * ls, 0.95 * ap, lung_rz
    )
    left_lung = _sdf.ellipsoid(
        x + 0.49 * lat, yc + 0.05 * ap, z - lung_zc, 0.48 * lat * ls, 0.95 * ap, lung_rz
    )
    lung = _sdf.intersect(_sdf.union(right_lung, left_lung), above, cavity)
    hd = subject.diaphragm_height + drop
    liver = _sdf.intersect(
        _sdf.ellipsoid(
            x - 0.3 * lat, yc, z - hd + 60.0 * vs, 0.75 * lat * vs, 0.8 * ap, 95.0 * vs
        ),
        below,
        cavity,
    )
    stomach = _sdf.intersect(
        _sdf.ellipsoid(x + 0.45 * lat, yc - 0.3 * ap, z - hd + 55.0, 45.0, 38.0, 55.0),
        below,
    )
    spleen = _sdf.intersect(
        _sdf.ellipsoid(x + 0.68 * lat, yc + 0.5 * ap, z - hd + 60.0, 28.0, 45.0, 55.0),
        below,
        cavity,
    )
    return [
        (TISSUE_INDEX["bone"], bone),
        (TISSUE_INDEX["lung"], lung),
        (TISSUE_INDEX["spleen"], spleen),
        (TISSUE_INDEX["stomach"], stomach),
        (TISSUE_INDEX["liver"], liver),
        (TISSUE_INDEX["body"], cavity),
        (TISSUE_INDEX["muscle"], muscle),
        (TISSUE_INDEX["fat"], body),
    ]


def _bones(subject: Subject, x, y, z, lat, ap, shift):
    """Spine (vertebral bodies and posterior elements), ribs and sternum."""
    length = subject.torso_length
    z_slab = jnp.abs(z + 0.05 * length) - 0.5 * length
    spine_y = shift - ap - 22.0
    spine = _sdf.union(
        _sdf.ellipse(x, y - spine_y, 19.0, 15.0),
        _sdf.ellipse(x, y - spine_y + 32.0, 9.0, 12.0),
    )
    spine = _sdf.intersect(spine, z_slab)
    # Ribs: one periodic elliptic tube around the cavity, inclined anteriorly and
    # open in front (costal cartilage), over the thoracic cage.
    ring = _sdf.ellipse(x, y - shift, lat + 5.0, ap + 5.0)
    pitch = RIB_PITCH * length / 600.0
    u = z + RIB_SLOPE * (y - shift) - subject.diaphragm_height
    dz = jnp.mod(u, pitch) - 0.5 * pitch
    tube = _sdf.ellipse(ring, dz, 4.5, 6.0)
    cage = _sdf.intersect(
        tube,
        jnp.abs(u - 0.2 * length) - 0.2 * length - 10.0,
        (y - shift) - 0.6 * ap,
    )
    sternum_y = shift + ap + 4.0
    sternum = _sdf.intersect(
        _sdf.ellipse(x, y - sternum_y, 15.0, 6.0),
        jnp.abs(z - subject.diaphragm_height - 0.2 * length) - 0.17 * length,
    )
    return _sdf.union(spine, cage, sternum)
