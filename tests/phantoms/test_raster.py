"""Rasterised anatomy: volumes, partition of unity, gradients, batching, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.phantoms import (
    TISSUE_INDEX,
    TISSUES,
    ImageGeometry,
    axial_geometry,
    end_systolic_phase,
    label_map,
    lv_volumes,
    sample_subjects,
    short_axis_geometry,
    tissue_fractions,
    volume_curve,
)

LV, MYO, RV = (TISSUE_INDEX[n] for n in ("lv_blood", "lv_myocardium", "rv_blood"))


def _volume_ml(fractions, geometry, tissue):
    return float(jnp.sum(fractions[tissue]) * geometry.voxel_volume) / 1000.0


@pytest.mark.parametrize("who", ["male", "female"])
def test_realised_lv_volumes_on_fine_grid(who, request, heart_box):
    """Fractions x voxel volume (1.5 mm grid) realise EDV, ESV and a constant
    myocardium; the reference is the subject's own targets and the analytic
    shell volume (quadrature-checked in test_motion)."""
    subject = request.getfixturevalue(who)
    geom = heart_box(subject)
    es = float(end_systolic_phase(subject))
    ed_f = tissue_fractions(subject, geom, cardiac_phase=0.0)
    es_f = tissue_fractions(subject, geom, cardiac_phase=es)
    np.testing.assert_allclose(_volume_ml(ed_f, geom, LV), float(subject.edv), 0.05)
    np.testing.assert_allclose(_volume_ml(es_f, geom, LV), float(subject.esv), 0.05)
    myo_ref = float(lv_volumes(subject, 0.0)[1])
    np.testing.assert_allclose(_volume_ml(ed_f, geom, MYO), myo_ref, 0.05)
    np.testing.assert_allclose(_volume_ml(es_f, geom, MYO), myo_ref, 0.05)
    # the RV is a crescent of about rv_lv_ratio times the LV size
    ratio = _volume_ml(ed_f, geom, RV) / float(subject.edv)
    assert 0.6 * float(subject.rv_lv_ratio) < ratio < 1.4 * float(subject.rv_lv_ratio)


def _sa_small(subject):
    # one grid shape shared by several tests, so the rasteriser compiles once
    return short_axis_geometry(subject, shape=(12, 48, 48), spacing=(8.0, 5.0, 5.0))


def test_fractions_partition_unity_everywhere(male):
    geom = _sa_small(male)
    es = float(end_systolic_phase(male))
    f = tissue_fractions(male, geom, cardiac_phase=es, respiratory_phase=0.5)
    assert f.shape == (len(TISSUES), 12, 48, 48)
    assert f.dtype == geom.affine.dtype
    np.testing.assert_allclose(np.asarray(f.sum(0)), 1.0, atol=1e-5)
    assert float(f.min()) >= -1e-6 and float(f.max()) <= 1.0 + 1e-6


def test_fine_supersampling_converges_in_bounded_blocks(male):
    """8x8x8 sub-samples (512 per voxel) run in blocks of bounded size and agree
    with 4x4x4 to the partial-volume discretisation error (LV blood volume)."""
    from jaxsim.phantoms._raster import BLOCK_SUBSAMPLES, _rows_per_block

    assert _rows_per_block(256, 256, 512) * 256 * 512 <= BLOCK_SUBSAMPLES
    geom = short_axis_geometry(male, shape=(3, 16, 16), spacing=(10.0, 6.0, 6.0))
    fine = tissue_fractions(male, geom, supersample=8)
    coarse = tissue_fractions(male, geom, supersample=4)
    np.testing.assert_allclose(np.asarray(fine.sum(0)), 1.0, atol=1e-5)
    v_fine, v_coarse = _volume_ml(fine, geom, LV), _volume_ml(coarse, geom, LV)
    assert v_fine > 1.0
    np.testing.assert_allclose(v_fine, v_coarse, rtol=0.02)


def test_mid_short_axis_slice_shows_both_ventricles(female):
    labels = np.asarray(label_map(female, _sa_small(female)))
    assert labels.dtype == np.uint8
    mid = set(np.unique(labels[5])) | set(np.unique(labels[6]))
    assert {LV, MYO, RV} <= mid
    # the stack is centred on the LV: its central voxels are LV blood
    assert LV in labels[5:7, 23:25, 23:25]
    assert {TISSUE_INDEX["lung"], TISSUE_INDEX["fat"]} <= set(np.unique(labels))


def test_derivative_of_realised_lv_volume_wrt_edv(male, heart_box):
    """d(realised LV volume)/d(edv) through the rasteriser (forward mode, only edv
    carries a tangent, so it compiles quickly) is positive, equals a central finite
    difference and the analytic derivative g(phase) of the target volume."""
    geom = heart_box(male, spacing=4.0, shape=(32, 32, 32))
    phase = 0.2

    def lv_volume(edv):
        f = tissue_fractions(
            male.replace(edv=edv), geom, cardiac_phase=phase, supersample=1
        )
        return jnp.sum(f[LV]) * geom.voxel_volume / 1000.0

    _, slope = jax.jvp(lv_volume, (male.edv,), (jnp.ones_like(male.edv),))
    h = 2.0
    fd = float(lv_volume(male.edv + h) - lv_volume(male.edv - h)) / (2 * h)
    assert float(slope) > 0
    np.testing.assert_allclose(float(slope), fd, rtol=0.03)
    g = float(volume_curve(phase, end_systolic_phase(male)))
    np.testing.assert_allclose(float(slope), g, rtol=0.05)


@pytest.mark.slow  # compiles the derivative of the whole anatomy (about a minute)
def test_forward_mode_derivatives_match_finite_differences(male, heart_box):
    """Forward mode (cheap to compile): d(realised LV volume)/d(edv) is positive,
    equals a central finite difference and the analytic g(phase); the Jacobian of
    a weighted sum of all fractions w.r.t. every parameter is finite."""
    geom = heart_box(male, spacing=4.0, shape=(32, 32, 32))
    phase = 0.2
    weights = jax.random.uniform(jax.random.key(0), (len(TISSUES), 32, 32, 32))

    def outputs(subject):
        f = tissue_fractions(subject, geom, cardiac_phase=phase, supersample=1)
        lv = jnp.sum(f[LV]) * geom.voxel_volume / 1000.0
        return jnp.stack([lv, jnp.sum(weights.astype(f.dtype) * f)])

    jac = jax.jit(jax.jacfwd(outputs))(male)
    g_edv = float(jac.edv[0])

    def lv_volume(edv):
        return float(outputs(male.replace(edv=edv))[0])

    h = 2.0
    fd = (lv_volume(male.edv + h) - lv_volume(male.edv - h)) / (2 * h)
    assert g_edv > 0
    np.testing.assert_allclose(g_edv, fd, rtol=0.03)
    # target volume esv + (edv - esv) g(phase): analytic edv-derivative g(phase)
    g = float(volume_curve(phase, end_systolic_phase(male)))
    np.testing.assert_allclose(g_edv, g, rtol=0.05)
    for name, value in vars(jac).items():
        if value is None:  # no residual deformation
            continue
        assert np.all(np.isfinite(np.asarray(value))), name
    for name in ("edv", "esv", "wall_thickness", "heart_azimuth", "heart_offset"):
        assert np.any(np.asarray(getattr(jac, name))[1] != 0), name


@pytest.mark.slow  # reverse mode compiles slowly on CPU (tens of seconds)
def test_gradients_match_finite_differences_and_are_finite(male, heart_box):
    """One reverse pass (compiled once) pulled back with two cotangents: the
    realised LV volume (its edv-derivative must be positive, equal a central finite
    difference and the analytic value), and random weights on every tissue (the
    gradient w.r.t. every parameter must be finite)."""
    geom = heart_box(male, spacing=4.0, shape=(32, 32, 32))
    phase = 0.2

    def render(subject):
        return tissue_fractions(subject, geom, cardiac_phase=phase, supersample=1)

    fractions, vjp = jax.vjp(render, male)
    vjp = jax.jit(vjp)
    lv_ct = jnp.zeros_like(fractions).at[LV].set(geom.voxel_volume / 1000.0)
    (lv_grad,) = vjp(lv_ct)
    g_edv = float(lv_grad.edv)

    def lv_volume(edv):
        return _volume_ml(render(male.replace(edv=edv)), geom, LV)

    h = 2.0
    fd = (lv_volume(male.edv + h) - lv_volume(male.edv - h)) / (2 * h)
    assert g_edv > 0
    np.testing.assert_allclose(g_edv, fd, rtol=0.03)
    # target volume esv + (edv - esv) g(phase): analytic edv-derivative g(phase)
    g = float(volume_curve(phase, end_systolic_phase(male)))
    np.testing.assert_allclose(g_edv, g, rtol=0.05)
    weights = jax.random.uniform(jax.random.key(0), fractions.shape)
    (all_grad,) = vjp(weights.astype(fractions.dtype))
    for name, value in vars(all_grad).items():
        if value is None:  # no residual deformation
            continue
        assert np.all(np.isfinite(np.asarray(value))), name
    for name in ("edv", "esv", "wall_thickness", "heart_azimuth", "heart_offset"):
        assert np.any(np.asarray(getattr(all_grad, name)) != 0), name


def test_vmap_equals_python_loop(pick):
    subjects = sample_subjects(jax.random.key(5), 2)
    geom = axial_geometry(pick(subjects, 0), shape=(2, 16, 16), spacing=(20.0, 20, 20))

    def render(s):
        return tissue_fractions(s, geom, cardiac_phase=0.2, supersample=1)

    batched = jax.vmap(render)(subjects)
    for i in range(2):
        np.testing.assert_allclose(batched[i], render(pick(subjects, i)), atol=1e-6)
    assert not np.allclose(batched[0], batched[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cardiac_phase=1.0), "cardiac_phase"),
        (dict(cardiac_phase=-0.1), "cardiac_phase"),
        (dict(respiratory_phase=float("nan")), "respiratory_phase"),
        (dict(supersample=0), "supersample"),
        (dict(supersample=(2, 2)), "supersample"),
        (dict(width=0.0), "width"),
    ],
)
def test_invalid_arguments_raise(male, kwargs, match):
    geom = ImageGeometry.axis_aligned(shape=(1, 4, 4), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=match):
        tissue_fractions(male, geom, **kwargs)


def test_invalid_subject_raises_at_rasterisation(male):
    geom = ImageGeometry.axis_aligned(shape=(1, 4, 4), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="esv must be smaller"):
        tissue_fractions(male.replace(esv=male.edv + 1.0), geom)
    with pytest.raises(TypeError, match="geometry"):
        tissue_fractions(male, np.eye(4))


@pytest.mark.slow
def test_realised_volumes_over_sampled_population(heart_box, pick):
    """Acceptance: >= 10 subjects of both sexes, 1.5 mm grid, ED / ES / cycle."""
    subjects = sample_subjects(jax.random.key(2026), 12)
    assert set(np.unique(np.asarray(subjects.sex))) == {0.0, 1.0}
    for i in range(12):
        subject = pick(subjects, i)
        geom = heart_box(subject, shape=(112, 112, 112))
        es = float(end_systolic_phase(subject))
        myo_ref = float(lv_volumes(subject, 0.0)[1])
        for phase, target in ((0.0, subject.edv), (es, subject.esv)):
            f = tissue_fractions(subject, geom, cardiac_phase=phase)
            np.testing.assert_allclose(_volume_ml(f, geom, LV), float(target), 0.05)
            np.testing.assert_allclose(_volume_ml(f, geom, MYO), myo_ref, 0.05)
            np.testing.assert_allclose(np.asarray(f.sum(0)), 1.0, atol=1e-5)
        for phase in (0.15, 0.6, 0.85):
            f = tissue_fractions(subject, geom, cardiac_phase=phase)
            np.testing.assert_allclose(_volume_ml(f, geom, MYO), myo_ref, 0.05)
