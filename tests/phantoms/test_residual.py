"""The residual deformation: identity at zero, bounded, invertible, volume-preserving,
differentiable, and honoured by the rasteriser and the material motion map."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.parameters import from_unconstrained, to_unconstrained
from jaxsim.phantoms import (
    TISSUE_INDEX,
    ResidualDeformation,
    check_subject,
    deform_points,
    displacement_grid,
    end_diastolic_positions,
    end_systolic_phase,
    heart_pose,
    label_map,
    lv_volumes,
    residual_deformation,
    short_axis_geometry,
    tissue_fractions,
    velocity_grid,
)

LV, MYO = TISSUE_INDEX["lv_blood"], TISSUE_INDEX["lv_myocardium"]


def _deformed(subject, seed=0, scale=1.0, **kw):
    d = residual_deformation(subject, **kw)
    control = scale * jax.random.normal(jax.random.key(seed), d.control.shape)
    return subject.replace(deformation=d.replace(control=control))


def _box_points(d, n, seed=1, inset=0.0):
    lo, hi = np.asarray(d.lower), np.asarray(d.upper)
    u = np.random.default_rng(seed).uniform(inset, 1.0 - inset, (n, 3))
    return lo + u * (hi - lo)


def _world(subject, q):
    pose = heart_pose(subject)
    return np.asarray(pose.apex) + q @ np.asarray(pose.rot).T


# --------------------------------------------------------------------- identity
@pytest.mark.integration
def test_zero_control_reproduces_the_phantom_bit_for_bit(male):
    geom = short_axis_geometry(male, shape=(3, 20, 20), spacing=(10.0, 5.0, 5.0))
    zero = male.replace(deformation=residual_deformation(male))
    es = float(end_systolic_phase(male))
    for phase in (0.0, es):
        a = tissue_fractions(male, geom, cardiac_phase=phase)
        b = tissue_fractions(zero, geom, cardiac_phase=phase)
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(
        np.asarray(label_map(male, geom)), np.asarray(label_map(zero, geom))
    )
    pts = jnp.asarray(_world(male, _box_points(zero.deformation, 64)), jnp.float32)
    assert np.array_equal(np.asarray(deform_points(zero, pts)), np.asarray(pts))
    # the material map's graph differs (fused otherwise), so equal to rounding
    np.testing.assert_allclose(
        np.asarray(end_diastolic_positions(zero, pts, 0.3)),
        np.asarray(end_diastolic_positions(male, pts, 0.3)),
        atol=1e-4,
    )


@pytest.mark.integration
def test_a_nonzero_deformation_changes_the_anatomy(male):
    geom = short_axis_geometry(male, shape=(3, 20, 20), spacing=(10.0, 5.0, 5.0))
    bent = _deformed(male, scale=2.0)
    a = np.asarray(tissue_fractions(male, geom))
    b = np.asarray(tissue_fractions(bent, geom))
    assert np.abs(a[LV] - b[LV]).max() > 0.3
    np.testing.assert_allclose(b.sum(0), 1.0, atol=1e-5)


# ------------------------------------------------------------------ the field
def _bspline64(t):
    a = np.abs(t)
    return np.where(
        a < 1, 2 / 3 - a**2 + a**3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0)
    )


def _potential64(d, q):
    """Float64 NumPy reference of the B-spline vector potential at points q."""
    control = np.asarray(d.control, np.float64)
    h = np.asarray(d.knot_spacing)
    psi_max = d.max_displacement * h.min() / (2 * 1.5 * np.sqrt(3))
    coef = psi_max * np.tanh(control)
    t = (q - np.asarray(d.lower)) / h  # (N, 3) in knot units
    basis = [
        _bspline64(t[:, a, None] - (np.arange(n)[None, :] + 2.0))
        for a, n in enumerate(d.grid_shape)
    ]
    return np.einsum("ni,nj,nk,ijkc->nc", *basis, coef)


def test_velocity_is_the_curl_of_the_potential_and_divergence_free(male):
    """Against a float64 reference: central differences of the B-spline potential
    (no analytic derivatives) give the curl at the lattice nodes, and its
    divergence by differences vanishes."""
    bent = _deformed(male, scale=1.5, grid_shape=(4, 4, 5))
    d = bent.deformation
    v = np.asarray(velocity_grid(d), np.float64)
    m = v.shape[:3]
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(1, n - 1, 40) for n in m], axis=1)
    lo, hi = np.asarray(d.lower), np.asarray(d.upper)
    q = lo + idx / (np.asarray(m) - 1) * (hi - lo)
    e = 1e-3

    def jac(f, q):  # (N, 3 comps, 3 axes)
        cols = []
        for a in range(3):
            dq = np.zeros(3)
            dq[a] = e
            cols.append((f(d, q + dq) - f(d, q - dq)) / (2 * e))
        return np.stack(cols, axis=-1)

    g = jac(_potential64, q)
    curl = np.stack(
        [g[:, 2, 1] - g[:, 1, 2], g[:, 0, 2] - g[:, 2, 0], g[:, 1, 0] - g[:, 0, 1]],
        axis=1,
    )
    got = v[idx[:, 0], idx[:, 1], idx[:, 2]]
    scale = np.abs(curl).max()
    assert scale > 0.5  # mm: a real field
    np.testing.assert_allclose(got, curl, atol=2e-4 * scale + 1e-5)

    def curl_ref(d, q):
        g = jac(_potential64, q)
        return np.stack(
            [g[:, 2, 1] - g[:, 1, 2], g[:, 0, 2] - g[:, 2, 0], g[:, 1, 0] - g[:, 0, 1]],
            axis=1,
        )

    div = np.trace(jac(curl_ref, q), axis1=1, axis2=2)
    assert np.abs(div).max() < 1e-3 * scale


@pytest.mark.parametrize("inverse", [True, False])
def test_displacement_is_bounded_and_vanishes_on_the_box(male, inverse):
    bent = _deformed(male, scale=50.0, max_displacement=7.0)  # saturated tanh
    u = np.asarray(displacement_grid(bent.deformation, inverse=inverse))
    norm = np.linalg.norm(u, axis=-1)
    assert 0.5 < norm.max() <= 7.0
    for a in range(3):
        for end in (0, -1):
            assert np.all(np.take(u, end, axis=a) == 0.0)
    pts = _world(male, _box_points(bent.deformation, 50) - 200.0)  # far outside
    pts = jnp.asarray(pts, jnp.float32)
    assert np.array_equal(np.asarray(deform_points(bent, pts)), np.asarray(pts))


def test_forward_inverts_the_pull_back(male):
    """phi(phi^-1(x)) = x up to the lattice interpolation, whose error shrinks
    with a finer lattice (second order)."""
    bent = _deformed(male, scale=1.5)
    pts = jnp.asarray(_world(male, _box_points(bent.deformation, 400)), jnp.float32)
    errors = []
    for resolution in (3, 6):
        s = bent.replace(deformation=bent.deformation.replace(resolution=resolution))
        back = deform_points(s, pts, inverse=True)
        moved = np.linalg.norm(np.asarray(back - pts), axis=-1).max()
        assert moved > 2.0  # mm: a real displacement
        again = deform_points(s, back, inverse=False)
        errors.append(np.linalg.norm(np.asarray(again - pts), axis=-1))
    assert errors[0].max() < 0.08 * moved and np.median(errors[0]) < 0.01 * moved
    assert errors[1].max() < 0.5 * errors[0].max()


def test_jacobian_is_positive_and_volume_preserving(male):
    bent = _deformed(male, scale=2.0)
    q = _box_points(bent.deformation, 200, inset=0.05)
    pts = _world(male, q)
    e = 0.05  # mm; central differences of the map (piecewise trilinear)
    cols = []
    for a in range(3):
        step = np.zeros(3)
        step[a] = e
        hi = deform_points(bent, jnp.asarray(pts + step, jnp.float32))
        lo = deform_points(bent, jnp.asarray(pts - step, jnp.float32))
        cols.append(np.asarray(hi - lo, np.float64) / (2 * e))
    jac = np.stack(cols, axis=-1)
    det = np.linalg.det(jac)
    assert np.all(det > 0)
    assert np.abs(np.asarray(jac) - np.eye(3)).max() > 0.05  # not the identity
    np.testing.assert_allclose(det, 1.0, atol=0.12)
    # and the mean over the box (the volume change) is far closer to 1
    assert abs(det.mean() - 1.0) < 0.02


# --------------------------------------------------------------- differentiable
@pytest.mark.integration
def test_fractions_differentiate_in_the_control_values_x64(male):
    """Directional derivative of a weighted LV-blood sum w.r.t. the control values
    (forward mode) equals a central finite difference, in float64."""
    with jax.enable_x64(True):
        s = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), male)
        geom = short_axis_geometry(s, shape=(2, 10, 10), spacing=(12.0, 6.0, 6.0))
        d = residual_deformation(s, grid_shape=(3, 3, 3))
        c0 = 0.5 * jax.random.normal(jax.random.key(3), d.control.shape, jnp.float64)
        t = jax.random.normal(jax.random.key(4), d.control.shape, jnp.float64)
        w = jnp.linspace(-1.0, 1.0, 10, dtype=jnp.float64)[None, :, None]

        def moment(c):
            f = tissue_fractions(
                s.replace(deformation=d.replace(control=c)), geom, supersample=1
            )
            return jnp.sum(f[LV] * w) + jnp.sum(f[MYO] * w.transpose(0, 2, 1))

        _, slope = jax.jvp(moment, (c0,), (t,))
        h = 1e-5
        fd = (moment(c0 + h * t) - moment(c0 - h * t)) / (2 * h)
        assert abs(float(slope)) > 1e-2
        np.testing.assert_allclose(float(slope), float(fd), rtol=1e-5)


# ---------------------------------------------------------------- the cycle
@pytest.mark.integration
def test_myocardial_volume_is_conserved_over_the_cycle(male, heart_box):
    """Deformed heart on a 2 mm grid: LV myocardium at ED and ES, and LV blood at
    ED, equal the analytic volumes within the phantom's 5 % tolerance, while the
    shape differs from the analytic heart."""
    bent = _deformed(male, scale=2.0)
    geom = heart_box(male, spacing=2.0, shape=(72, 72, 72))
    es = float(end_systolic_phase(male))
    myo_ref = float(lv_volumes(male, 0.0)[1])
    ml = float(geom.voxel_volume) / 1000.0
    f_ed = np.asarray(tissue_fractions(bent, geom, cardiac_phase=0.0))
    f_es = np.asarray(tissue_fractions(bent, geom, cardiac_phase=es))
    myo_ed, myo_es = f_ed[MYO].sum() * ml, f_es[MYO].sum() * ml
    np.testing.assert_allclose(myo_ed, myo_ref, rtol=0.05)
    np.testing.assert_allclose(myo_es, myo_ref, rtol=0.05)
    np.testing.assert_allclose(myo_es, myo_ed, rtol=0.03)
    np.testing.assert_allclose(f_ed[LV].sum() * ml, float(male.edv), rtol=0.05)
    np.testing.assert_allclose(f_es[LV].sum() * ml, float(male.esv), rtol=0.05)
    plain = np.asarray(tissue_fractions(male, geom, cardiac_phase=0.0))
    overlap = 2 * np.minimum(plain[MYO], f_ed[MYO]).sum()
    assert overlap / (plain[MYO].sum() + f_ed[MYO].sum()) < 0.97  # 1: identity


@pytest.mark.integration
def test_material_motion_conjugates_the_deformation(male):
    """With a deformation, ED positions are phi(M_t^-1(phi^-1(x))): at phase 0 the
    identity (to the scaling-and-squaring error), and at any phase equal to the
    composition of the public maps."""
    bent = _deformed(male, scale=1.5)
    pts = jnp.asarray(_world(male, _box_points(bent.deformation, 200)), jnp.float32)
    at_ed = end_diastolic_positions(bent, pts, 0.0)
    assert np.abs(np.asarray(at_ed - pts)).max() < 0.3
    phase = 0.3
    got = end_diastolic_positions(bent, pts, phase)
    back = deform_points(bent, pts, inverse=True)
    ref = deform_points(bent, end_diastolic_positions(male, back, phase))
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-3)


# ----------------------------------------------------------------- validation
def test_bad_deformations_are_rejected(male):
    d = residual_deformation(male)
    with pytest.raises(ValueError, match="control must have shape"):
        ResidualDeformation(jnp.zeros((3, 3, 3)), d.lower, d.upper)
    with pytest.raises(ValueError, match="upper must exceed lower"):
        ResidualDeformation(d.control, d.upper, d.lower)
    with pytest.raises(ValueError, match="max_displacement must be > 0"):
        d.replace(max_displacement=0.0)
    with pytest.raises(ValueError, match="steps must be an int in"):
        d.replace(steps=0)
    with pytest.raises(ValueError, match="grid_shape"):
        residual_deformation(male, grid_shape=(0, 4, 4))
    bad = male.replace(
        deformation=d.replace(control=d.control.at[0, 0, 0, 0].set(np.nan))
    )
    with pytest.raises(ValueError, match="subject.deformation.control"):
        check_subject(bad)
    with pytest.raises(TypeError, match="ResidualDeformation"):
        check_subject(male.replace(deformation=np.zeros(3)))


def test_the_bijection_carries_the_deformation(male):
    bent = _deformed(male)
    back = from_unconstrained(to_unconstrained(bent) + 0.1, bent)
    assert back.deformation is bent.deformation
    assert float(back.edv) != float(bent.edv)
