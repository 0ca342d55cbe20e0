"""Clinical indices from label maps: voxelised ellipsoids against their analytic
volumes within a proven voxelisation bound, and EF / LV mass arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxsim.labels import ACDC, LabelScheme
from jaxsim.metrics import MYOCARDIAL_DENSITY, cardiac_indices, label_volumes

SPACING = (1.5, 1.0, 1.25)  # (sz, sy, sx) mm
SHAPE = (44, 60, 56)
CENTRE = np.array([21.5, 29.5, 27.5])


def _ellipsoid(axes_mm, centre=CENTRE, spacing=SPACING, shape=SHAPE):
    """Voxels whose centre lies inside the ellipsoid with semi-axes (z, y, x) mm."""
    grid = np.indices(shape).astype(float)
    q = sum(((grid[i] - centre[i]) * spacing[i] / axes_mm[i]) ** 2 for i in range(3))
    return q <= 1.0


def _bounds(axes_mm, spacing=SPACING):
    """Volume bounds (mL) of a voxelised ellipsoid E.

    Every voxel whose centre is in E lies in E + B(h), h the half voxel diagonal,
    and every point of E - B(h) lies in such a voxel. With t = h / (smallest
    semi-axis), B(h) is inside t E, so (1 - t) E is in E - B(h) and E + B(h) is in
    (1 + t) E: the voxel volume lies within (1 -+ t)^3 of 4/3 pi a b c.
    """
    h = 0.5 * math.sqrt(sum(s * s for s in spacing))
    t = h / min(axes_mm)
    v = 4 / 3 * math.pi * np.prod(axes_mm) / 1000
    return v * (1 - t) ** 3, v * (1 + t) ** 3, v


def test_ellipsoid_volume_within_voxelisation_bound():
    axes = (25.0, 22.0, 28.0)
    labels = _ellipsoid(axes).astype(np.uint8) * 3  # LV blood
    lo, hi, exact = _bounds(axes)
    vol = label_volumes(labels, spacing=SPACING)
    assert lo <= vol["LV"] <= hi
    assert vol["RV"] == 0.0 and vol["MYO"] == 0.0
    # the bound is loose (+-~11 %); the actual error is far smaller
    assert vol["LV"] == pytest.approx(exact, rel=0.01)


def _heart(lv_axes, wall_mm, rv_axes):
    lv = _ellipsoid(lv_axes)
    outer = _ellipsoid(tuple(a + wall_mm for a in lv_axes))
    rv = _ellipsoid(rv_axes, centre=CENTRE + np.array([0.0, 0.0, -14.0])) & ~outer
    labels = np.zeros(SHAPE, np.uint8)
    labels[rv] = 1
    labels[outer & ~lv] = 2
    labels[lv] = 3
    return labels


def test_cardiac_indices_of_analytic_ventricles():
    ed = _heart((24.0, 20.0, 20.0), 6.0, (26.0, 18.0, 14.0))
    es = _heart((20.0, 15.0, 15.0), 8.0, (22.0, 14.0, 10.0))
    got = cardiac_indices(ed, es, spacing=SPACING)
    voxel_ml = np.prod(SPACING) / 1000
    # volumes and EF from explicit voxel counts
    lv_edv, lv_esv = (ed == 3).sum() * voxel_ml, (es == 3).sum() * voxel_ml
    rv_edv, rv_esv = (ed == 1).sum() * voxel_ml, (es == 1).sum() * voxel_ml
    assert got.lv_edv == pytest.approx(lv_edv)
    assert got.rv_esv == pytest.approx(rv_esv)
    assert got.lv_ef == pytest.approx(100 * (lv_edv - lv_esv) / lv_edv)
    assert got.rv_ef == pytest.approx(100 * (rv_edv - rv_esv) / rv_edv)
    # and against the analytic ellipsoids: LV volumes and the ED myocardial shell
    lo, hi, _ = _bounds((24.0, 20.0, 20.0))
    assert lo <= got.lv_edv <= hi
    lo_o, hi_o, _ = _bounds((30.0, 26.0, 26.0))
    shell_lo, shell_hi = (lo_o - hi) * 1.05, (hi_o - lo) * 1.05
    assert shell_lo <= got.lv_mass <= shell_hi
    assert got.lv_mass == pytest.approx((ed == 2).sum() * voxel_ml * MYOCARDIAL_DENSITY)
    exact_ef = 100 * (1 - (20 * 15 * 15) / (24 * 20 * 20))
    assert got.lv_ef == pytest.approx(exact_ef, abs=1.0)


def test_scheme_without_rv_and_undefined_ef():
    lv_only = LabelScheme("lv", ("background", "LV"), (("lv_blood",),))
    labels = _ellipsoid((10.0, 10.0, 10.0)).astype(np.uint8)
    got = cardiac_indices(labels, labels, spacing=SPACING, scheme=lv_only)
    assert got.lv_ef == 0.0 and got.rv_edv is None and got.lv_mass is None
    empty = np.zeros(SHAPE, np.uint8)
    assert cardiac_indices(empty, empty, spacing=SPACING).lv_ef is None


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x: label_volumes(x + 4, spacing=SPACING), ValueError, "outside"),
        (lambda x: label_volumes(x[0], spacing=SPACING), ValueError, "3 axes"),
        (lambda x: label_volumes(x * 1.0, spacing=SPACING), TypeError, "integer"),
        (lambda x: label_volumes(x, spacing=(1.0, 1.0)), ValueError, "one value"),
        (lambda x: label_volumes(x, spacing=(1.0, -1.0, 1.0)), ValueError, "> 0"),
        (
            lambda x: label_volumes(x, spacing=SPACING, scheme="acdc"),
            TypeError,
            "Label",
        ),
        (
            lambda x: cardiac_indices(x, x, spacing=SPACING, myocardial_density=0),
            ValueError,
            "myocardial_density",
        ),
    ],
)
def test_bad_input_is_named(call, error, match):
    x = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(error, match=match):
        call(x)


def test_acdc_is_the_default_scheme():
    labels = np.zeros((2, 2, 2), np.uint8)
    labels[0, 0, 0] = 1
    vol = label_volumes(labels, spacing=(10.0, 10.0, 10.0))
    assert set(vol) == set(ACDC.classes[1:]) and vol["RV"] == 1.0
