"""Initial guess of a patient twin from the label map's moments.

The real stack's geometry places its voxels in the image's world; the twin's heart
is placed by a rigid map from that world into the phantom's, chosen so that the
real LV's centroid, long axis and the direction towards the RV match the
phantom's. Sizes come from the labelled volumes.
"""

from __future__ import annotations

import numpy as np

from jaxsim.geometry import ImageGeometry
from jaxsim.phantoms import FIELD_SPECS, Subject, lv_shape, lv_volumes

__all__ = ["LabelMoments", "label_moments", "initial_subject", "initial_pose"]

RV, MYO, LV = 1, 2, 3  # ACDC values


class LabelMoments:
    """World-frame moments of an ACDC label map (float64 NumPy).

    Attributes:
        lv_centroid: ``(3,)`` mm, centroid of LV blood and myocardium.
        e_long: ``(3,)`` unit LV long axis, apex to base.
        e_rv: ``(3,)`` unit direction from the LV axis towards the RV centroid.
        volumes: ``{value: mL}`` per label value 1..3.
        lv_length: mm, extent of the LV blood pool along ``e_long`` (slice
            thickness included).
        lv_radius: mm, equivalent radius of the largest LV blood cross-section.
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _world_points(geometry: ImageGeometry, mask):
    k, j, i = np.nonzero(mask)
    index = np.stack([i, j, k], axis=1).astype(np.float64)
    a = np.asarray(geometry.affine, np.float64)
    return index @ a[:3, :3].T + a[:3, 3]


def label_moments(labels: np.ndarray, geometry: ImageGeometry) -> LabelMoments:
    """Moments of an ACDC label map (0 bg, 1 RV, 2 MYO, 3 LV) on ``geometry``.

    The long axis is the principal axis of the LV (blood and myocardium) when it
    lies within 50 degrees of the slice normal, else the slice normal (short-axis
    stacks are planned on the long axis); it points to the base, the end with
    more mass (a truncated ellipsoid is skewed towards its base).

    Raises:
        ValueError: a structure (LV, MYO or RV) is missing.
    """
    labels = np.asarray(labels)
    for value, name in ((LV, "LV"), (MYO, "MYO"), (RV, "RV")):
        if not np.any(labels == value):
            raise ValueError(f"labels hold no {name} voxels (value {value})")
    a = np.asarray(geometry.affine, np.float64)
    voxel = abs(np.linalg.det(a[:3, :3])) / 1000.0
    pts = _world_points(geometry, (labels == LV) | (labels == MYO))
    centroid = pts.mean(0)
    cov = np.cov((pts - centroid).T)
    w, v = np.linalg.eigh(cov)
    axis = v[:, -1]
    normal = a[:3, 2] / np.linalg.norm(a[:3, 2])
    if abs(axis @ normal) < np.cos(np.radians(50.0)):
        axis = normal
    s = (pts - centroid) @ axis
    if np.mean(s**3) > 0:  # the long tail is the apex
        axis = -axis
    rv = _world_points(geometry, labels == RV).mean(0) - centroid
    rv = rv - (rv @ axis) * axis
    e_rv = rv / np.linalg.norm(rv)
    blood = _world_points(geometry, labels == LV)
    t = (blood - centroid) @ axis
    thickness = abs(np.linalg.norm(a[:3, 2]) * (normal @ axis))
    per_slice = np.bincount(np.nonzero(labels == LV)[0])
    area = per_slice.max() * voxel * 1000.0 / np.linalg.norm(a[:3, 2])
    return LabelMoments(
        lv_centroid=centroid,
        e_long=axis,
        e_rv=e_rv,
        volumes={v_: float(np.sum(labels == v_)) * voxel for v_ in (RV, MYO, LV)},
        lv_length=float(t.max() - t.min() + thickness),
        lv_radius=float(np.sqrt(area / np.pi)),
    )


def _clip(name, value):
    spec = FIELD_SPECS[name]
    span = spec.high - spec.low
    return float(np.clip(value, spec.low + 0.02 * span, spec.high - 0.02 * span))


def initial_subject(
    template: Subject, ed: LabelMoments, es: LabelMoments | None
) -> Subject:
    """The template with LV/RV sizes from the labelled volumes.

    ``edv`` is the ED LV blood volume, ``esv`` the ES one (or 40 % of ``edv``),
    ``rv_lv_ratio`` the ED RV/LV volume ratio, ``lv_aspect`` from the blood pool's
    length and radius, and ``wall_thickness`` solved (bisection) so that the
    analytic myocardial volume equals the labelled one.
    """
    edv = _clip("edv", ed.volumes[LV])
    esv = 0.4 * edv if es is None else min(es.volumes[LV], 0.9 * edv)
    c = ed.lv_length / (1.0 + 0.45)
    subject = template.replace(
        edv=np.asarray(edv, np.float32),
        esv=np.asarray(_clip("esv", esv), np.float32),
        rv_lv_ratio=np.asarray(
            _clip("rv_lv_ratio", ed.volumes[RV] / ed.volumes[LV]), np.float32
        ),
        lv_aspect=np.asarray(_clip("lv_aspect", c / ed.lv_radius), np.float32),
    )
    target = ed.volumes[MYO]
    lo, hi = FIELD_SPECS["wall_thickness"].low, FIELD_SPECS["wall_thickness"].high
    lo, hi = lo + 0.1, hi - 0.1
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        myo = float(lv_volumes(subject.replace(wall_thickness=mid), 0.0)[1])
        lo, hi = (mid, hi) if myo < target else (lo, mid)
    dtype = np.asarray(template.edv).dtype
    values = {
        f: np.asarray(getattr(subject, f), dtype)
        for f in ("edv", "esv", "rv_lv_ratio", "lv_aspect")
    }
    return subject.replace(wall_thickness=np.asarray(0.5 * (lo + hi), dtype), **values)


def _phantom_lv_centroid(subject: Subject, rot, apex):
    """Centroid (mm) of the phantom's ED LV (truncated epicardial spheroid)."""
    shape = lv_shape(subject, 0.0)
    radius, centre, base = (float(v) for v in (shape.radius, shape.center, shape.base))
    z = np.linspace(0.0, base, 2001)
    area = np.maximum(1.0 - ((z - centre) / centre) ** 2, 0.0) * radius**2
    zbar = np.sum(z * area) / np.sum(area)
    return np.asarray(apex, np.float64) + zbar * np.asarray(rot, np.float64)[:, 2]


def initial_pose(subject: Subject, moments: LabelMoments, pose):
    """Rigid map image world -> phantom world as ``(rotation (3, 3), centre_image
    (3,), centre_phantom (3,))``: ``x_ph = R (x - c_img) + c_ph``, matching the
    LV centroid, long axis and RV direction (float64 NumPy)."""
    e_long, e_rv = moments.e_long, moments.e_rv
    real = np.stack([e_rv, np.cross(e_long, e_rv), e_long], axis=1)
    rot_ph = np.asarray(pose.rot, np.float64)
    rotation = rot_ph @ real.T
    centre_ph = _phantom_lv_centroid(subject, rot_ph, pose.apex)
    return rotation, moments.lv_centroid, centre_ph
