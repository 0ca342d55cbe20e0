"""GLO shape training: projection, masked Dice, latent Gaussian, sampling, cases,
checkpoints and resuming; learning and the whole pipeline under ``integration``."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsim.fit import initial_pose, initial_subject, label_moments, twin_labels
from jaxsim.geometry import ImageGeometry
from jaxsim.io import CheckpointStore
from jaxsim.labels import ACDC, task_labels
from jaxsim.losses import soft_dice_loss
from jaxsim.metrics import dice_score
from jaxsim.models import ShapeGLO
from jaxsim.phantoms import (
    check_subject,
    default_subject,
    end_systolic_phase,
    heart_pose,
    label_map,
    short_axis_geometry,
)
from jaxsim.train import (
    GLOCase,
    ShapeGLOConfig,
    ShapeGLOTrainer,
    fit_latent_gaussian,
    masked_soft_dice,
    project_to_ball,
    sample_shapes,
    train_shape_glo,
)

SPACING = (10.0, 4.0, 4.0)


def _case(name, **fields):
    """A "real" case rendered from a known phantom subject on a small grid."""
    s = default_subject("male").replace(
        **{k: jnp.asarray(v, jnp.float32) for k, v in fields.items()}
    )
    g = short_axis_geometry(s, spacing=SPACING, shape=(8, 40, 40))
    es_phase = float(end_systolic_phase(s))
    ed = np.asarray(task_labels(np.asarray(label_map(s, g)), ACDC))
    es = np.asarray(
        task_labels(np.asarray(label_map(s, g, cardiac_phase=es_phase)), ACDC)
    )
    # The real stack's own frame: axis-aligned, unrelated to the phantom's.
    geom = ImageGeometry.axis_aligned(shape=g.shape, spacing=SPACING)
    return GLOCase(name, ed, geom, labels_es=es)


@pytest.fixture(scope="module")
def cases():
    return [
        _case("small", edv=115.0, esv=45.0, wall_thickness=7.0),
        _case("large", edv=210.0, esv=95.0, wall_thickness=10.5),
    ]


def _config(**kw):
    base = dict(
        latent_dim=4,
        hidden=16,
        grid_shape=(2, 2, 3),
        warm_steps=6,
        steps=0,
        learning_rate=1e-2,
        supersample=(1, 1, 1),
        checkpoint_every=2,
    )
    base.update(kw)
    return ShapeGLOConfig(**base)


def test_project_to_ball_matches_numpy():
    z = np.asarray([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [-1.0, 0.0]], np.float32)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    expected = z / np.maximum(norm, 1.0)
    np.testing.assert_allclose(np.asarray(project_to_ball(jnp.asarray(z))), expected)
    assert (
        np.linalg.norm(np.asarray(project_to_ball(jnp.asarray(z))), axis=1).max()
        <= 1 + 1e-6
    )


def test_masked_soft_dice_matches_monai_form_and_numpy():
    rng = np.random.default_rng(0)
    p = rng.random((4, 3, 5, 6)).astype(np.float32)
    p /= p.sum(0, keepdims=True)
    labels = rng.integers(0, 4, (3, 5, 6))
    g = (labels[None] == np.arange(4)[:, None, None, None]).astype(np.float32)
    ones = np.ones((3, 5, 6), np.float32)
    ref = soft_dice_loss(
        jnp.asarray(p)[None],
        jnp.asarray(g)[None],
        activation=None,
        include_background=False,
        channel_axis=1,
    )
    got = masked_soft_dice(jnp.asarray(p), jnp.asarray(g), jnp.asarray(ones))
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    m = (rng.random((3, 5, 6)) < 0.5).astype(np.float64)
    pm, gm = p[1:].astype(np.float64) * m, g[1:] * m
    inter = (pm * gm).sum((1, 2, 3))
    den = pm.sum((1, 2, 3)) + gm.sum((1, 2, 3))
    expected = np.mean(1 - (2 * inter + 1e-5) / (den + 1e-5))
    got = masked_soft_dice(jnp.asarray(p), jnp.asarray(g), jnp.asarray(m, jnp.float32))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


@pytest.mark.parametrize("n, k", [(12, 3), (4, 6), (1, 2)])
def test_latent_gaussian_matches_numpy(n, k):
    z = np.random.default_rng(1).normal(size=(n, k))
    g = fit_latent_gaussian(z)
    lam = min(1.0, k / n)
    assert g["shrinkage"] == pytest.approx(lam)
    np.testing.assert_allclose(g["mean"], z.mean(0), rtol=1e-12)
    s = np.cov(z.T) if n > 1 else np.zeros((k, k))
    expected = (1 - lam) * s + lam * np.diag(np.diag(s))
    np.testing.assert_allclose(np.asarray(g["cov"]), expected, rtol=1e-12, atol=1e-15)
    if n > 1:
        full = fit_latent_gaussian(z, shrinkage=0.0)
        np.testing.assert_allclose(np.asarray(full["cov"]), s, rtol=1e-12)
    with pytest.raises(ValueError, match="shrinkage"):
        fit_latent_gaussian(z, shrinkage=1.5)
    with pytest.raises(ValueError, match="latents"):
        fit_latent_gaussian(np.full((3, 2), np.nan))


def test_sample_shapes_is_valid_and_keyed():
    g = ShapeGLO(
        latent_dim=3, hidden=8, grid_shape=(2, 2, 2), zero_init=False, rngs=nnx.Rngs(0)
    )
    gauss = {"mean": [0.1, -0.2, 0.0], "cov": np.diag([0.2, 0.1, 0.3]).tolist()}
    a = sample_shapes(g, jax.random.key(4), 3, gaussian=gauss)
    b = sample_shapes(g, jax.random.key(4), 3, gaussian=gauss)
    c = sample_shapes(g, jax.random.key(5), 3, gaussian=gauss)
    assert a.edv.shape == (3,) and a.deformation.control.shape == (3, 2, 2, 2, 3)
    np.testing.assert_array_equal(np.asarray(a.edv), np.asarray(b.edv))
    assert not np.allclose(np.asarray(a.edv), np.asarray(c.edv))
    for i in range(3):
        check_subject(jax.tree.map(lambda x, i=i: x[i], a))
    with pytest.raises(ValueError, match="n must be"):
        sample_shapes(g, jax.random.key(0), 0, gaussian=gauss)
    with pytest.raises(ValueError, match="gaussian"):
        sample_shapes(g, jax.random.key(0), 2)


def test_cases_share_a_crop_and_start_at_the_twin_pose(cases):
    t = ShapeGLOTrainer(cases, _config())
    d = t.data
    assert d.targets.shape == (2, 2, 4, *d.shape) and d.masks.shape == (2, *d.shape)
    # every labelled voxel of every case is inside its crop
    for i, c in enumerate(cases):
        for p, real in enumerate((c.labels_ed, c.labels_es)):
            assert d.targets[i, p, 1:].sum() == np.count_nonzero(real)
    m = label_moments(cases[0].labels_ed, cases[0].geometry)
    s0 = initial_subject(
        t.model.template, m, label_moments(cases[0].labels_es, cases[0].geometry)
    )
    rot, c_img, c_ph = initial_pose(s0, m, heart_pose(s0))
    np.testing.assert_allclose(d.rotation0[0], rot, atol=1e-6)
    np.testing.assert_allclose(d.centre_phantom[0], c_ph, rtol=1e-6)
    # latents start inside the unit ball
    assert np.linalg.norm(np.asarray(t.params["latents"]), axis=1).max() <= 1 + 1e-6


def test_bad_cases_and_config(cases):
    c = cases[0]
    with pytest.raises(ValueError, match="grid's shape"):
        GLOCase("x", c.labels_ed[:-1], c.geometry)
    with pytest.raises(ValueError, match="ACDC values"):
        GLOCase("x", c.labels_ed + 4, c.geometry)
    with pytest.raises(ValueError, match="hold no RV"):
        GLOCase("x", np.where(c.labels_ed == 1, 0, c.labels_ed), c.geometry)
    with pytest.raises(ValueError, match="latent_dim"):
        ShapeGLOConfig(latent_dim=0)
    with pytest.raises(ValueError, match="learning_rate"):
        ShapeGLOConfig(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="unique"):
        ShapeGLOTrainer([c, c], _config())


def _restored(cases, config, folder):
    t = ShapeGLOTrainer(cases, config)
    with CheckpointStore(folder) as store:
        t.restore(store)
    return t


def test_checkpoint_round_trip_and_resume_equality(cases, tmp_path):
    config = _config()
    train_shape_glo(cases, config, out=tmp_path / "a", progress=False, report=False)
    train_shape_glo(
        cases, config, out=tmp_path / "b", progress=False, until=3, report=False
    )
    with pytest.raises(FileExistsError, match="resume"):
        train_shape_glo(cases, config, out=tmp_path / "b", progress=False, report=False)
    train_shape_glo(
        cases, config, out=tmp_path / "b", resume=True, progress=False, report=False
    )
    a, b = (
        _restored(cases, config, tmp_path / "a"),
        _restored(cases, config, tmp_path / "b"),
    )
    assert a.step_count == b.step_count == 6
    for x, y in zip(
        jax.tree.leaves((a.params, a.opt_state)),
        jax.tree.leaves((b.params, b.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the warm start moved the weights and kept latents in the ball
    fresh = ShapeGLOTrainer(cases, config)
    moved = [
        not np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(
            jax.tree.leaves(a.params["generator"]),
            jax.tree.leaves(fresh.params["generator"]),
            strict=True,
        )
    ]
    assert any(moved)
    assert np.linalg.norm(np.asarray(a.params["latents"]), axis=1).max() <= 1 + 1e-6
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    with pytest.raises(ValueError, match="another config"):
        train_shape_glo(
            cases,
            _config(hidden=8),
            out=tmp_path / "b",
            resume=True,
            progress=False,
            report=False,
        )


def test_a_frozen_generator_fits_only_latents_and_poses(cases):
    """GLO inversion (``train_generator=False``) with a trained generator (the
    initial one's head is zero, so latents get no gradient through it): the
    warm start moves the latents, the generator's weights stay bit for bit."""
    trained = ShapeGLOTrainer(cases, _config())
    for _ in range(3):
        trained.step()
    t = ShapeGLOTrainer(cases, _config(seed=1), train_generator=False)
    t.params = {**t.params, "generator": trained.params["generator"]}
    t.opt_state = t.tx.init(t.params)
    before = jax.tree.map(np.asarray, t.params)
    for _ in range(3):
        t.step()
    for x, y in zip(jax.tree.leaves(before["generator"]),
                    jax.tree.leaves(t.params["generator"]), strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, np.asarray(y))
    assert not np.array_equal(before["latents"], np.asarray(t.params["latents"]))


def _reconstruction_dice(trainer, cases):
    """Mean Dice (LV, MYO, RV at ED and ES) of the decoded cases on their grids."""
    subjects = trainer.generator().subjects(trainer.params["latents"])
    scores = []
    for i, c in enumerate(cases):
        s = jax.tree.map(lambda a, i=i: a[i], subjects)
        affine = trainer.case_affine(
            trainer.params, i, affine=jnp.asarray(c.geometry.affine, jnp.float32)
        )
        geom = ImageGeometry(affine=affine, shape=c.geometry.shape)
        for phase, real in (
            (0.0, c.labels_ed),
            (float(end_systolic_phase(s)), c.labels_es),
        ):
            pred = twin_labels(s, geom, cardiac_phase=phase, supersample=(1, 1, 1))
            scores += list(dice_score(pred, real, labels=[1, 2, 3]).values())
    return float(np.mean(scores))


@pytest.mark.integration
def test_glo_learns_to_reconstruct_known_subjects(cases):
    config = _config(warm_steps=0, steps=40, pose_learning_rate=2e-2)
    t = ShapeGLOTrainer(cases, config)
    before = _reconstruction_dice(t, cases)
    losses = [t.step()["loss"] for _ in range(config.steps)]
    after = _reconstruction_dice(t, cases)
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.05
    assert after > before + 0.05, (before, after)
    assert after > 0.75


@pytest.mark.slow
def test_whole_run_resume_report_and_generate(cases, tmp_path):
    from jaxsim.io import Database
    from jaxsim.population import PRESETS
    from jaxsim.train import generated_design, load_shape_glo, shape_model_checksum

    config = _config(warm_steps=4, steps=4)
    run = tmp_path / "run"
    ref = tmp_path / "ref"
    train_shape_glo(cases, config, out=ref / "shape", progress=False, report=False)
    train_shape_glo(
        cases, config, out=run / "shape", progress=False, until=6, report=False
    )
    report = train_shape_glo(
        cases, config, out=run / "shape", resume=True, progress=False, n_generated=2
    )
    a, b = (
        _restored(cases, config, ref / "shape"),
        _restored(cases, config, run / "shape"),
    )
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    saved = json.loads((run / "shape" / "report.json").read_text())
    assert set(saved["dice"]) == {"small", "large"}
    assert set(saved["dice"]["small"]) == {"ED", "ES"}
    assert 0.0 <= saved["plausibility"]["pass_rate"] <= 1.0
    assert (run / "shape" / "shape.png").stat().st_size > 0
    assert report["checksum"] == shape_model_checksum(run)
    model, gauss = load_shape_glo(run)
    np.testing.assert_allclose(
        gauss["mean"], np.load(run / "shape" / "latents.npy").mean(0)
    )
    # a database of generated subjects, with the preset's schema
    preset = PRESETS["quick"]
    design = generated_design(run, 2, preset, 3)
    from jaxsim.io import generate_database

    generate_database(design, tmp_path / "gen.h5")
    with Database(tmp_path / "gen.h5") as db:
        assert db.n_records == 2 * 2 * len(preset.contrasts)
        assert db.design["subject_source"]["checksum"] == report["checksum"]
        subj = db.subjects()
        assert subj["deformation_control"].shape == (2, 2, 2, 3, 3)
        image, labels, _ = db.record(0)
        assert labels.max() > 0 and np.isfinite(image).all()


def _twin_parameters(case, rotation, shift, edv=150.0):
    from jaxsim.fit import posed_affine
    from jaxsim.phantoms import FIELD_SPECS, residual_deformation

    s = default_subject("male").replace(edv=jnp.asarray(edv, jnp.float32))
    d = residual_deformation(s, grid_shape=(2, 2, 3))
    control = np.full((2, 2, 3, 3), 0.1, np.float32)
    affine = posed_affine(rotation, np.zeros(3), shift, case.geometry.affine)
    return {
        "subject": {f: np.asarray(getattr(s, f)).tolist() for f in FIELD_SPECS},
        "deformation": {
            "control": control.tolist(),
            "lower_mm": list(d.lower),
            "upper_mm": list(d.upper),
            "max_displacement_mm": d.max_displacement,
            "steps": d.steps,
            "resolution": d.resolution,
        },
        "twin_affine": np.asarray(affine).tolist(),
        "grid_shape": list(case.geometry.shape),
    }


def test_twins_set_the_initial_pose_and_warm_start_targets(cases):
    import dataclasses

    from jaxsim.fit import posed_affine, rotation_matrix
    from jaxsim.parameters import to_unconstrained

    rotation = np.asarray(rotation_matrix(jnp.asarray([0.3, -0.5, 0.2])))
    shift = np.asarray([5.0, -12.0, 30.0], np.float32)
    twin = _twin_parameters(cases[0], rotation, shift)
    with_twin = [dataclasses.replace(cases[0], twin=twin), cases[1]]
    t = ShapeGLOTrainer(with_twin, _config())
    d = t.data
    assert d.has_twin.tolist() == [True, False]
    # the initial pose maps the real grid where the twin's affine does
    a = posed_affine(
        d.rotation0[0], d.centre_image[0], d.centre_phantom[0], cases[0].geometry.affine
    )
    np.testing.assert_allclose(
        np.asarray(a), np.asarray(twin["twin_affine"]), atol=1e-3
    )
    u = np.asarray(
        to_unconstrained(default_subject("male").replace(edv=jnp.asarray(150.0)))
    )
    u0 = np.asarray(to_unconstrained(t.model.template))
    idx = list(t.model.indices)
    np.testing.assert_allclose(d.init_delta[0], (u - u0)[idx], atol=1e-5)
    np.testing.assert_allclose(d.init_control[0], 0.1)
    np.testing.assert_array_equal(d.init_control[1], 0.0)
    scaled = dict(
        twin,
        twin_affine=(
            np.diag([2.0, 2.0, 2.0, 1.0]) @ np.asarray(twin["twin_affine"])
        ).tolist(),
    )
    with pytest.raises(ValueError, match="rigidly"):
        ShapeGLOTrainer([dataclasses.replace(cases[0], twin=scaled)], _config())
