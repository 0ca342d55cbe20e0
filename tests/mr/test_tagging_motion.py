"""The phantom's material motion (end_diastolic_positions) against its LV shapes.

The shapes come from ``lv_shape`` and ``heart_pose`` (the phantom's own kinematics):
points on the end-systolic endocardium and epicardium must land on the
end-diastolic endocardium and epicardium, the myocardium is incompressible (the
map's Jacobian determinant is 1 in the wall), end-diastole is the identity, the
apex is fixed, distant anatomy does not move, and the map is differentiable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.phantoms import (
    default_subject,
    end_diastolic_positions,
    end_systolic_phase,
    lv_shape,
)
from jaxsim.phantoms._heart import heart_pose
from jaxsim.phantoms._motion import BASE_HEIGHT

X64 = bool(jax.config.read("jax_enable_x64"))
N = 64  # points per call: one compiled shape
TOL = 1e-9 if X64 else 2e-5  # relative, on normalised ellipsoid radii


@pytest.fixture(scope="module")
def subject():
    return default_subject("female")


def _frame(subject):
    pose = heart_pose(subject)
    return np.asarray(pose.rot, np.float64), np.asarray(pose.apex, np.float64), pose


def _surface(shape, which, theta, phi, subject):
    """World points on an LV surface at polar angle theta, azimuth phi (NumPy)."""
    rot, apex, _ = _frame(subject)
    r, s = (shape.a, shape.c) if which == "endo" else (shape.radius, shape.center)
    r, s, centre = float(r), float(s), float(shape.center)
    q = np.stack(
        [
            r * np.sin(theta) * np.cos(phi),
            r * np.sin(theta) * np.sin(phi),
            centre + s * np.cos(theta),
        ],
        -1,
    )
    return apex + q @ rot.T


def _radius(shape, which, world, subject):
    """Normalised ellipsoid radius of world points w.r.t. an LV surface (1: on it)."""
    rot, apex, _ = _frame(subject)
    q = (np.asarray(world, np.float64) - apex) @ rot
    r, s = (shape.a, shape.c) if which == "endo" else (shape.radius, shape.center)
    z = q[..., 2] - float(shape.center)
    return np.sqrt(
        (q[..., 0] ** 2 + q[..., 1] ** 2) / float(r) ** 2 + z**2 / float(s) ** 2
    )


@pytest.mark.parametrize("which", ["endo", "epi"])
@pytest.mark.parametrize("fraction", [0.5, 1.0])  # mid-systole, end-systole
def test_surfaces_map_onto_end_diastolic_surfaces(subject, which, fraction):
    phase = fraction * float(end_systolic_phase(subject))
    now, ed = lv_shape(subject, phase), lv_shape(subject, 0.0)
    # below the base plane: cos(theta) < BASE_HEIGHT for the cavity
    rng = np.random.default_rng(0)
    theta = rng.uniform(np.arccos(BASE_HEIGHT * 0.9), np.pi, N)
    phi = rng.uniform(0, 2 * np.pi, N)
    points = _surface(now, which, theta, phi, subject)
    mapped = np.asarray(end_diastolic_positions(subject, jnp.asarray(points), phase))
    if which == "epi":  # keep epicardial points below the base plane too
        rot, apex, _ = _frame(subject)
        keep = ((points - apex) @ rot)[:, 2] < float(now.base) - 1.0
        points, mapped = points[keep], mapped[keep]
    np.testing.assert_allclose(_radius(ed, which, mapped, subject), 1.0, atol=TOL * 5)
    # and the points really moved (the test can fail)
    assert np.max(np.linalg.norm(np.asarray(mapped) - points, axis=-1)) > 3.0


@pytest.mark.parametrize("fraction", [0.5, 1.0])  # mid-systole, end-systole
def test_wall_motion_is_volume_preserving(subject, fraction):
    phase = fraction * float(end_systolic_phase(subject))
    now = lv_shape(subject, phase)
    rot, apex, _ = _frame(subject)
    points = []
    for theta in np.linspace(np.arccos(0.4), np.pi - 0.05, 12):
        for w in (0.2, 0.5, 0.8):  # across the wall, between the two spheroids
            r = (1 - w) * float(now.a) + w * float(now.radius)
            s = (1 - w) * float(now.c) + w * float(now.center)
            q = [r * np.sin(theta), 0.0, float(now.center) + s * np.cos(theta)]
            if q[2] < float(now.base) - 2.0:
                points.append(apex + rot @ np.array(q))
    points = jnp.asarray(np.stack(points))

    def one(x):
        return end_diastolic_positions(subject, x[None], phase)[0]

    det = np.linalg.det(np.asarray(jax.vmap(jax.jacfwd(one))(points)))
    assert len(det) >= 24
    np.testing.assert_allclose(det, 1.0, atol=0.01)


def test_identity_at_end_diastole_apex_fixed_far_static(subject):
    rot, apex, _ = _frame(subject)
    rng = np.random.default_rng(1)
    points = apex + rng.normal(size=(N, 3)) * 40.0
    same = end_diastolic_positions(subject, jnp.asarray(points), 0.0)
    np.testing.assert_allclose(same, points, atol=1e-3 if not X64 else 1e-9)
    es = float(end_systolic_phase(subject))
    far = np.zeros((N, 3))
    far[1:4] = [[250.0, 0, 0], [0, -200.0, 0], [0, 0, 300.0]]  # far[0]: the apex
    far = apex + far
    moved = end_diastolic_positions(subject, jnp.asarray(far), es)
    np.testing.assert_allclose(moved[:4], far[:4], atol=1e-3)


def test_systole_thickens_wall_and_shortens_axis(subject):
    """Mid-wall at the equator: ED position is further from the axis (the wall was
    thinner and the cavity larger); along the axis it is further from the apex."""
    es = float(end_systolic_phase(subject))
    now = lv_shape(subject, es)
    mid = lv_shape(subject, es)._replace(
        a=0.5 * (now.a + now.radius), c=0.5 * (now.c + now.center)
    )
    points = _surface(mid, "endo", np.full(N, 2.0), np.full(N, 0.3), subject)
    rot, apex, _ = _frame(subject)
    ed = (
        np.asarray(end_diastolic_positions(subject, jnp.asarray(points), es)) - apex
    ) @ rot
    q = (points - apex) @ rot
    assert np.hypot(ed[0, 0], ed[0, 1]) > np.hypot(q[0, 0], q[0, 1]) + 3.0
    assert ed[0, 2] > q[0, 2]


def test_gradients_finite(subject):
    es = float(end_systolic_phase(subject))
    _, apex, _ = _frame(subject)
    points = jnp.asarray(apex + np.random.default_rng(2).normal(size=(N, 3)) * 30.0)

    def loss(s, p):
        return jnp.sum(end_diastolic_positions(s, p, es) ** 2)

    g_subject, g_points = jax.jit(jax.grad(loss, argnums=(0, 1)))(subject, points)
    assert np.all(np.isfinite(np.asarray(g_points)))
    for leaf in jax.tree_util.tree_leaves(g_subject):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert abs(float(g_subject.edv)) > 0
