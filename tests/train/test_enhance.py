"""The SPADE enhancer: configuration, condition, twin matching and its refusals;
training (learning, resume, checkpoints), application to a database and the
pairs of a real twin (integration)."""

from __future__ import annotations

import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.train import (
    EnhancerConfig,
    EnhancerPairs,
    EnhancerTrainer,
    Preprocessing,
    enhance,
    enhance_database,
    enhancer_condition,
    enhancer_pairs,
    load_enhancer,
    match_cases,
    run_enhancer,
)

TINY = dict(shape=(32, 32), ngf=2, hidden=4, ndf=4, n_layers_d=2)


def tiny_pairs(n=4, size=32) -> EnhancerPairs:
    """Discs of three classes; the 'real' image has another contrast and a
    texture the physics image lacks."""
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r = np.hypot(yy - size / 2 - i, xx - size / 2)
        labels[i, r < 10] = 2
        labels[i, r < 6] = 3
        labels[i, (np.abs(yy - size / 2) < 3) & (xx < 6)] = 1
    physics = (0.2 + 0.7 * (labels == 3) + 0.1 * (labels == 2)).astype(np.float32)
    real = 0.3 + 0.5 * (labels == 3) + 0.4 * (labels == 1)
    real = (real + 0.05 * np.sin(xx / 2.0)).astype(np.float32)
    names = tuple(f"case.h5:{i}" for i in range(n))
    return EnhancerPairs(labels, physics, real, labels.copy(), names)


# -- configuration and condition ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (48, 48)}, "multiples of 32"),
        ({"shape": (96, 96), "num_upsampling_layers": "more"}, "multiples of 64"),
        ({"num_upsampling_layers": "many"}, "num_upsampling_layers"),
        ({"lr_g": 0.0}, "lr_g"),
        ({"beta1": 1.0}, "beta1"),
        ({"steps": 5, "decay_steps": 6}, "decay_steps"),
        ({"data_spacing": (1.0, 2.0)}, "data_spacing"),
        ({"lambda_l1": -1.0}, "lambda_l1"),
        ({"ngf": 0}, "ngf"),
    ],
)
def test_bad_configuration_names_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnhancerConfig(**kwargs)


def test_defaults_follow_gaugan():
    c = EnhancerConfig()
    assert (c.lr_g, c.lr_d, c.beta1, c.beta2) == (1e-4, 4e-4, 0.0, 0.9)  # TTUR
    assert (c.lambda_feat, c.lambda_gan, c.n_layers_d, c.num_d) == (10.0, 1.0, 4, 2)
    assert c.num_upsampling_layers == "normal" and c.spectral and c.decay_steps == 0
    assert EnhancerConfig.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_condition_is_one_hot_labels_and_the_image():
    labels = np.array([[[0, 1], [2, 3]]], np.uint8)
    image = np.array([[[0.0, 0.5], [1.0, 2.0]]], np.float32)
    c = np.asarray(enhancer_condition(image, labels))
    assert c.shape == (1, 2, 2, 5)
    np.testing.assert_array_equal(c[..., :4].argmax(-1), labels)
    np.testing.assert_array_equal(c[..., :4].sum(-1), 1.0)
    np.testing.assert_allclose(c[..., 4], [[[-1.0, 0.0], [1.0, 1.0]]])  # clipped
    soft = np.full((1, 2, 2, 4), 0.25, np.float32)
    np.testing.assert_allclose(
        np.asarray(enhancer_condition(image, soft))[..., :4], soft
    )
    with pytest.raises(ValueError, match="labels must be"):
        enhancer_condition(image, labels[:, :1])
    with pytest.raises(ValueError, match="soft labels"):
        enhancer_condition(image, soft[..., :3])


# -- matching real files with their twins ---------------------------------------


def _real(path, shape=(2, 32, 32)):
    with h5py.File(path, "w") as f:
        f["image"] = np.random.default_rng(0).random(shape).astype(np.float32)
        f["label"] = np.zeros(shape, np.uint8)
    return path


def _twin(folder, ed, es=None, *, es_phase=0.35, spacing=(10, 1.5, 1.5),
          grid=(2, 32, 32)):  # fmt: skip
    folder.mkdir(parents=True)
    report = {
        "parameters": {"grid_shape": list(grid), "es_phase": es_phase},
        "input": {"labels": f"../data/{ed}", "es": None if es is None else
                  f"../data/{es}", "spacing_mm": list(spacing)},
    }  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_real_files_match_their_twins_by_name(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    a1, a2 = _real(data / "a_frame01.h5"), _real(data / "a_frame02.h5")
    _twin(tmp_path / "twins" / "a", "a_frame01.h5", "a_frame02.h5")
    cases = match_cases([data], [tmp_path / "twins"], spacing=(10, 1.5, 1.5))
    assert [(c.real, c.phase, c.cardiac_phase) for c in cases] == [
        (a1, "ED", 0.0), (a2, "ES", 0.35)
    ]  # fmt: skip
    # the ED file alone brings its ES frame from the same folder
    cases = match_cases([a1], [tmp_path / "twins"], spacing=(10, 1.5, 1.5))
    assert [c.real for c in cases] == [a1, a2]
    assert [c.real for c in match_cases([a2], [tmp_path / "twins"],
                                        spacing=(10, 1.5, 1.5))] == [a2]  # fmt: skip


def test_twin_refusals(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _real(data / "a_frame01.h5")
    b = _real(data / "b_frame01.h5")
    twins = tmp_path / "twins"
    _twin(twins / "a", "a_frame01.h5", "a_frame02.h5", es_phase=None)
    sp = (10, 1.5, 1.5)
    with pytest.raises(
        ValueError, match="no twin was fitted to the real file .*b_frame01"
    ):
        match_cases([data], [twins], spacing=sp)
    with pytest.raises(ValueError, match="another grid"):
        match_cases([data / "a_frame01.h5"], [twins], spacing=(8, 1.5, 1.5))
    _real(data / "a_frame02.h5")
    with pytest.raises(ValueError, match="no ES phase"):
        match_cases([data / "a_frame02.h5"], [twins], spacing=sp)
    with pytest.raises(FileNotFoundError, match="no report.json"):
        match_cases([data], [data], spacing=sp)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        match_cases([data / "c.h5"], [twins], spacing=sp)
    # a real file of another shape than its twin's grid, before any rendering
    _twin(twins / "b", "b_frame01.h5", grid=(3, 32, 32))
    p = Preprocessing(shape=(32, 32), spacing=2.5)
    with pytest.raises(ValueError, match="another grid"):
        enhancer_pairs([b], [twins], spacing=sp, preprocessing=p)
    _twin(tmp_path / "more" / "b2", "b_frame01.h5")
    with pytest.raises(ValueError, match="both fitted"):
        match_cases([b], [twins, tmp_path / "more"], spacing=sp)


def test_existing_run_is_not_overwritten(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="holds a run"):
        run_enhancer(EnhancerConfig(**TINY), tmp_path, pairs=tiny_pairs())
    with pytest.raises(FileNotFoundError, match="no enhancer run"):
        load_enhancer(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a jaxsim enhancer run"):
        load_enhancer(tmp_path)


def test_pairs_validate_their_shapes():
    p = tiny_pairs()
    with pytest.raises(ValueError, match="physics must have"):
        EnhancerPairs(p.labels, p.physics[:2], p.real, p.real_labels, p.names)
    labels, physics, real = p.batch(jax.random.key(0), 3)
    assert labels.shape == physics.shape == real.shape == (3, 32, 32)


# -- training, checkpoints, application (integration) ----------------------------


@pytest.mark.integration
def test_a_tiny_generator_overfits_one_pair():
    pairs = tiny_pairs(n=1)
    config = EnhancerConfig(**TINY, steps=60, lr_g=1e-3, lr_d=1e-3)
    trainer = EnhancerTrainer(config, pairs)
    l1 = [trainer.step()["l1"] for _ in range(config.steps)]
    assert np.isfinite(l1).all()
    assert np.mean(l1[-5:]) < 0.5 * np.mean(l1[:3]), l1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("enh") / "run"
    config = EnhancerConfig(**TINY, steps=3, sample_every=2, checkpoint_every=2)
    result = run_enhancer(config, run, pairs=tiny_pairs(), progress=False)
    return run, config, result


@pytest.mark.slow
def test_resume_equals_uninterrupted(tiny_run, tmp_path):
    run, config, straight = tiny_run
    assert (run / "samples" / "step_000002.png").stat().st_size > 0
    assert (run / "samples" / "step_000003.png").stat().st_size > 0
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss_g", "loss_d", "gan", "feat", "l1"} <= set(header)
    part = tmp_path / "part"
    run_enhancer(config, part, pairs=tiny_pairs(), progress=False, until=1)
    with pytest.raises(FileExistsError):
        run_enhancer(config, part, pairs=tiny_pairs(), progress=False)
    resumed = run_enhancer(
        config, part, pairs=tiny_pairs(), progress=False, resume=True
    )
    assert resumed.step == straight.step == 3
    for a, b in zip(resumed.losses, straight.losses, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    g1, _, _ = load_enhancer(run)
    g2, _, meta = load_enhancer(part)
    assert meta["step"] == 3
    x = tiny_pairs()
    np.testing.assert_array_equal(
        np.asarray(enhance(g1, x.physics, x.labels)),
        np.asarray(enhance(g2, x.physics, x.labels)),
    )
    with pytest.raises(ValueError, match="configured differently"):
        other = EnhancerConfig(**{**TINY, "ngf": 4}, steps=3)
        run_enhancer(other, part, pairs=tiny_pairs(), progress=False, resume=True)


@pytest.mark.slow
def test_checkpoint_round_trip_and_differentiable_enhance(tiny_run):
    run, config, _ = tiny_run
    generator, preprocessing, meta = load_enhancer(run)
    assert meta["format"] == "jaxsim-enhancer" and preprocessing.shape == (32, 32)
    trainer = EnhancerTrainer(config, tiny_pairs())
    from jaxsim.io import CheckpointStore

    with CheckpointStore(run) as store:
        trainer.restore(store)
    x = tiny_pairs()
    out = np.asarray(enhance(generator, x.physics, x.labels))
    np.testing.assert_array_equal(
        out, np.asarray(enhance(trainer.generator(), x.physics, x.labels))
    )
    assert out.shape == (4, 32, 32) and out.min() >= 0 and out.max() <= 1
    # differentiable in the image and in soft labels, under jit
    soft = jax.nn.one_hot(x.labels, 4)

    @jax.jit
    def total(image, soft):
        return jnp.sum(enhance(generator, image, soft))

    gi, gs = jax.grad(total, argnums=(0, 1))(jnp.asarray(x.physics) * 0.5, soft)
    assert np.isfinite(np.asarray(gi)).all() and float(jnp.abs(gi).max()) > 0
    assert np.isfinite(np.asarray(gs)).all() and float(jnp.abs(gs).max()) > 0


@pytest.mark.integration
def test_enhance_database_keeps_labels_and_schema(tiny_run, tmp_path):
    from jaxsim.io import Database, generate_database
    from jaxsim.population import PopulationDesign, Preset

    preset = Preset(
        name="tiny", description="test design", n_male=1, n_female=0,
        shape=(2, 40, 40), spacing=(10.0, 2.5, 2.5), contrasts=(0, 14), n_coils=1,
        oversample=1, contrast_batch=2,
    )  # fmt: skip
    db = tmp_path / "tiny.h5"
    generate_database(PopulationDesign(preset, 3), db)
    run, _, _ = tiny_run
    out = tmp_path / "enh.h5"
    stats = enhance_database(run, db, out, progress=False)
    assert stats["records"] == 4
    with Database(db) as a, Database(out) as b:
        assert b.complete and b.n_records == a.n_records and b.shape == a.shape
        info = json.loads(b.attrs["enhanced_by"])
        assert info["step"] == 3 and info["method"] == "spade"
        for r in range(a.n_records):
            ia, la, ga = a.record(r)
            ib, lb, gb = b.record(r)
            np.testing.assert_array_equal(la, lb)
            np.testing.assert_array_equal(np.asarray(ga.affine), np.asarray(gb.affine))
            assert ib.shape == ia.shape and np.isfinite(ib).all() and ib.min() >= 0
            assert not np.allclose(ia, ib)
        for column, values in a.records().items():
            np.testing.assert_array_equal(values, b.records()[column])
    with pytest.raises(FileExistsError):
        enhance_database(run, db, out, progress=False)


@pytest.mark.slow
def test_pairs_of_a_real_twin(shared_data, tmp_path):
    from jaxsim.cli import main

    acdc = shared_data / "acdc"
    ed, es = acdc / "patient001_frame01.h5", acdc / "patient001_frame02.h5"
    if not ed.exists() or not es.exists():
        pytest.skip("patient001 of the shared ACDC data is absent")
    twin = tmp_path / "twin001"
    args = ["twin", str(ed), "--es", str(es), "--spacing", "10", "1.5", "1.5",
            "--steps", "2", "2", "--no-cine", "--quiet",
            "--out", str(twin)]  # fmt: skip
    code = main(args)
    assert code == 0
    p = Preprocessing(shape=(64, 64), spacing=4.0)
    pairs = enhancer_pairs([ed, es], [twin], spacing=(10, 1.5, 1.5), preprocessing=p)
    files = {n.rsplit(":", 1)[0] for n in pairs.names}
    assert files == {ed.name, es.name}
    assert pairs.physics.shape == pairs.real.shape == (len(pairs), 64, 64)
    assert set(np.unique(pairs.labels)) <= {0, 1, 2, 3} and pairs.labels.max() == 3
    assert np.isfinite(pairs.physics).all() and pairs.physics.max() > 0.5
    # every pair shows the heart in the twin or in the real labels
    assert ((pairs.labels > 0) | (pairs.real_labels > 0)).any(axis=(1, 2)).all()
    with pytest.raises(ValueError, match="no twin was fitted"):
        enhancer_pairs([acdc / "patient022_frame01.h5"], [twin],
                       spacing=(10, 1.5, 1.5), preprocessing=p)  # fmt: skip
