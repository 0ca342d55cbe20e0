"""Patient twins: moments of label maps, input checks, and the fit recovering a
label map the phantom rendered itself."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxsim.fit import fit_twin, label_moments
from jaxsim.geometry import ImageGeometry
from jaxsim.labels import ACDC, task_labels
from jaxsim.metrics import dice_score
from jaxsim.phantoms import (
    default_subject,
    residual_deformation,
    short_axis_geometry,
)


def _synthetic(axis, rv_dir, spacing=(4.0, 2.0, 2.0), shape=(24, 48, 48)):
    """NumPy labels: a truncated ellipsoidal LV (blood in a shell of myocardium,
    cut by a base plane) along ``axis`` and an RV ball towards ``rv_dir``."""
    geom = ImageGeometry.axis_aligned(shape=shape, spacing=spacing)
    x = np.asarray(geom.voxel_centers(), np.float64)  # (nz, ny, nx, 3)
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    t = x @ axis
    r = np.linalg.norm(x - t[..., None] * axis, axis=-1)
    below = t < 12.0  # base plane at +12 mm: the base is towards +axis
    outer = (r / 16.0) ** 2 + (t / 32.0) ** 2 < 1.0
    inner = (r / 10.0) ** 2 + (t / 26.0) ** 2 < 1.0
    labels = np.zeros(shape, np.uint8)
    labels[outer & below] = 2
    labels[inner & below] = 3
    rv_dir = np.asarray(rv_dir, float) / np.linalg.norm(rv_dir)
    ball = np.linalg.norm(x - 24.0 * rv_dir, axis=-1) < 9.0
    labels[ball & (labels == 0)] = 1
    return labels, geom


@pytest.mark.parametrize(
    "axis, rv_dir",
    [((0.2, -0.1, 1.0), (1.0, 0.0, -0.2)), ((0.0, 0.3, -1.0), (0.0, 1.0, 0.3))],
)
def test_label_moments_find_axis_base_and_rv(axis, rv_dir):
    labels, geom = _synthetic(axis, rv_dir)
    m = label_moments(labels, geom)
    axis = np.asarray(axis) / np.linalg.norm(axis)
    assert m.e_long @ axis > np.cos(np.radians(10.0))  # points to the base
    rv_perp = np.asarray(rv_dir) - (np.asarray(rv_dir) @ m.e_long) * m.e_long
    assert m.e_rv @ (rv_perp / np.linalg.norm(rv_perp)) > np.cos(np.radians(10.0))
    voxel_ml = 4.0 * 2.0 * 2.0 / 1000.0
    for value in (1, 2, 3):
        assert m.volumes[value] == pytest.approx(np.sum(labels == value) * voxel_ml)


def test_fit_twin_rejects_bad_labels():
    labels, geom = _synthetic((0, 0, 1), (1, 0, 0))
    with pytest.raises(ValueError, match="ACDC values"):
        fit_twin(labels + 4 * (labels == 3), geom)
    with pytest.raises(ValueError, match="grid's shape"):
        fit_twin(labels[:-1], geom)
    with pytest.raises(ValueError, match="no RV voxels"):
        fit_twin(np.where(labels == 1, 0, labels), geom)
    with pytest.raises(ValueError, match="labels_es"):
        fit_twin(labels, geom, labels_es=labels[..., :-1])
    with pytest.raises(ValueError, match="steps must be two ints"):
        fit_twin(labels, geom, steps=(5, -1))
    with pytest.raises(ValueError, match="margin must be finite and > 0"):
        fit_twin(labels, geom, margin=-1.0)
    with pytest.raises(ValueError, match="regularisation must be two weights"):
        fit_twin(labels, geom, regularisation=(1e-3, -1.0))
    with pytest.raises(TypeError, match="geometry must be an ImageGeometry"):
        fit_twin(labels, np.eye(4))


@pytest.mark.slow
def test_twin_recovers_a_label_map_the_phantom_rendered():
    """Labels rendered by a known (deformed, resized) subject on a short-axis stack
    are fitted from the moment-matched default: Dice near 1 for every structure
    at ED and ES, above the initial guess; a cine simulated from the twin on the
    twin's grid labels the same voxels."""
    from jaxsim.mr import simulate_cine
    from jaxsim.phantoms import end_systolic_phase, label_map

    truth = default_subject("female").replace(
        edv=np.float32(150.0), esv=np.float32(60.0), wall_thickness=np.float32(9.0)
    )
    d = residual_deformation(truth, grid_shape=(3, 3, 3), max_displacement=8.0)
    control = 1.5 * jax.random.normal(jax.random.key(0), d.control.shape)
    truth = truth.replace(deformation=d.replace(control=control))
    geom = short_axis_geometry(truth, shape=(8, 40, 40), spacing=(10.0, 3.0, 3.0))
    es = float(end_systolic_phase(truth))
    real_ed = task_labels(np.asarray(label_map(truth, geom, supersample=(2, 1, 1))))
    real_es = task_labels(
        np.asarray(label_map(truth, geom, cardiac_phase=es, supersample=(2, 1, 1)))
    )
    # the fit sees only labels and an axis-aligned grid of the same spacing
    plain = ImageGeometry.axis_aligned(shape=geom.shape, spacing=(10.0, 3.0, 3.0))
    result = fit_twin(
        real_ed, plain, labels_es=real_es, steps=(30, 60), grid_shape=(3, 3, 3)
    )
    for phase in ("ED", "ES"):
        for name in ("LV", "MYO", "RV"):
            assert result.dice[phase][name] >= 0.85, (phase, result.dice)
    mean = np.mean([v for d_ in result.dice.values() for v in d_.values()])
    mean0 = np.mean([v for d_ in result.initial_dice.values() for v in d_.values()])
    assert mean > mean0 and mean > 0.9
    assert result.losses[-1] < result.losses[0]
    assert abs(float(result.subject.edv) - 150.0) < 25.0
    cine = simulate_cine(jax.random.key(1), result.subject, result.geometry)
    cine_acdc = task_labels(np.asarray(cine.labels[0]), ACDC)
    agree = dice_score(cine_acdc, result.labels["ED"], labels=[1, 2, 3])
    assert min(agree.values()) > 0.9
    assert np.all(np.isfinite(np.asarray(cine.image)))


def test_twin_from_parameters_round_trip_and_missing_entries():
    from jaxsim.fit import twin_from_parameters
    from jaxsim.phantoms import FIELD_SPECS

    s = default_subject()
    d = residual_deformation(s, grid_shape=(2, 2, 3))
    control = np.arange(d.control.size, dtype=np.float32).reshape(d.control.shape)
    params = {
        "subject": {f: np.asarray(getattr(s, f)).tolist() for f in FIELD_SPECS},
        "deformation": {
            "control": (control / 10).tolist(),
            "lower_mm": list(d.lower),
            "upper_mm": list(d.upper),
            "max_displacement_mm": 9.0,
            "steps": 5,
            "resolution": 2,
        },
        "twin_affine": np.diag([2.0, 2.0, 10.0, 1.0]).tolist(),
        "grid_shape": [4, 8, 8],
    }
    subject, geometry = twin_from_parameters(params)
    assert geometry.shape == (4, 8, 8)
    np.testing.assert_allclose(np.asarray(geometry.spacing), [10.0, 2.0, 2.0])
    np.testing.assert_allclose(np.asarray(subject.deformation.control), control / 10)
    assert subject.deformation.max_displacement == 9.0
    assert float(subject.edv) == float(s.edv)
    del params["deformation"]["steps"]
    with pytest.raises(ValueError, match="'steps'"):
        twin_from_parameters(params)


@pytest.mark.slow
def test_a_deformed_subject_feeds_the_tagged_and_ct_simulators():
    """Tagged MR and CT of a deformed subject (as a twin is): finite images whose
    labels are the deformed phantom's own label maps at the same phases."""
    from jaxsim.ct import CTAcquisition, simulate_ct
    from jaxsim.mr import simulate_tagged
    from jaxsim.phantoms import axial_geometry, label_map

    s = default_subject()
    d = residual_deformation(s, grid_shape=(3, 3, 3), max_displacement=8.0)
    bent = s.replace(
        deformation=d.replace(
            control=1.5 * jax.random.normal(jax.random.key(2), d.control.shape)
        )
    )
    geom = short_axis_geometry(bent, shape=(1, 32, 32), spacing=(8.0, 4.0, 4.0))
    tagged = simulate_tagged(jax.random.key(0), bent, geom, cardiac_phases=(0.0, 0.3))
    assert np.all(np.isfinite(np.asarray(tagged.image)))
    for p, phase in enumerate((0.0, 0.3)):
        ref = np.asarray(label_map(bent, geom, cardiac_phase=phase))
        assert np.mean(np.asarray(tagged.labels[p]) == ref) > 0.99
    plain = simulate_tagged(jax.random.key(0), s, geom, cardiac_phases=(0.3,))
    assert not np.allclose(np.asarray(plain.image[0]), np.asarray(tagged.image[1]))
    ax = axial_geometry(bent, shape=(4, 24, 24), spacing=(6.0, 8.0, 8.0))
    ct = simulate_ct(
        jax.random.key(1),
        bent,
        geometry=ax,
        acquisition=CTAcquisition(n_views=24, noise="gaussian"),
    )
    assert np.all(np.isfinite(np.asarray(ct.image)))
    ref = label_map(bent, ax, supersample=2)
    agree = np.mean(np.asarray(ct.labels) == np.asarray(ref))
    assert agree > 0.97
