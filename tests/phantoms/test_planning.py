"""Scan planning on the subject's own LV long axis."""

from __future__ import annotations

import numpy as np
import pytest

from jaxsim.phantoms import (
    axial_geometry,
    four_chamber_geometry,
    lv_long_axis,
    lv_shape,
    short_axis_geometry,
    two_chamber_geometry,
)


@pytest.mark.parametrize("who", ["male", "female"])
def test_short_axis_stack_is_planned_on_the_long_axis(who, request):
    subject = request.getfixturevalue(who)
    geom = short_axis_geometry(subject)
    assert geom.shape == (12, 256, 256)
    np.testing.assert_allclose(np.asarray(geom.spacing), [8.0, 1.25, 1.25], rtol=1e-5)
    apex, base = (np.asarray(p, np.float64) for p in lv_long_axis(subject))
    long_axis = (apex - base) / np.linalg.norm(apex - base)
    axes = np.asarray(geom.axes, np.float64)
    np.testing.assert_allclose(axes[2], long_axis, atol=1e-5)  # k: base -> apex
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(np.asarray(geom.center), 0.5 * (apex + base), atol=1e-3)
    # the axis length is the analytic apex-to-base distance at end-diastole
    length = float(lv_shape(subject, 0.0).base)
    np.testing.assert_allclose(np.linalg.norm(apex - base), length, rtol=1e-5)
    # rows run posterior (down the screen), so anterior is at the top
    assert axes[1][1] < 0


@pytest.mark.parametrize("planner", [four_chamber_geometry, two_chamber_geometry])
def test_long_axis_views_contain_the_long_axis(male, planner):
    geom = planner(male)
    apex, base = (np.asarray(p, np.float64) for p in lv_long_axis(male))
    normal = np.asarray(geom.axes, np.float64)[2]
    centre = np.asarray(geom.center, np.float64)
    for point in (apex, base):
        assert abs(np.dot(point - centre, normal)) < 1e-3


def test_four_and_two_chamber_planes_are_orthogonal(male):
    n4 = np.asarray(four_chamber_geometry(male).axes)[2]
    n2 = np.asarray(two_chamber_geometry(male).axes)[2]
    assert abs(float(np.dot(n4, n2))) < 1e-5


def test_axial_geometry_is_radiological(male):
    geom = axial_geometry(male, shape=(3, 10, 10), spacing=(2.0, 1.0, 1.0))
    np.testing.assert_allclose(
        np.asarray(geom.axes), [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], atol=1e-7
    )


def test_planning_rejects_bad_shapes(male):
    with pytest.raises(ValueError, match="spacing and shape"):
        short_axis_geometry(male, shape=(12, 256))
