"""Sim-to-real translation runs: configuration, schedule, data mapping, measures
(fast), and training, resume, apply and the CLI on tiny networks (integration)."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.train import (
    SliceData,
    TranslationConfig,
    TranslationTrainer,
    linear_decay_schedule,
    normalize,
    run_translation,
    slice_scale,
    tissue_ks,
    to_unit_range,
)

TINY = dict(
    target="unused", shape=(16, 16), ngf=4, n_blocks=1, ndf=4, n_layers_d=2,
    num_patches=16, nce_width=8, pool_size=2, sample_every=100, checkpoint_every=2,
)  # fmt: skip


# ----------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "pix2pix"}, "method must be one of"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"shape": (30, 32)}, "multiples of 4"),
        ({"shape": (8, 8)}, ">= 16"),
        ({"n_blocks": -1}, "n_blocks must be an integer >= 0"),
        ({"decay_steps": 5000}, r"decay_steps must lie in \[0, steps=2000\]"),
        ({"nce_temperature": 0.0}, "nce_temperature must be > 0"),
        ({"nce_negatives": "all"}, "nce_negatives must be one of"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"spacing": 0.0}, "spacing must be > 0 mm"),
        ({"pool_size": -1}, "pool_size must be an integer >= 0"),
        ({"lambda_cycle": -1.0}, "lambda_cycle must be >= 0"),
        ({"shape": (16, 16)}, "too small for a discriminator with n_layers_d=3"),
    ],
)
def test_bad_configuration_names_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TranslationConfig(**kwargs)


def test_method_defaults_follow_the_references():
    cut, fast = TranslationConfig(method="cut"), TranslationConfig(method="fastcut")
    cycle = TranslationConfig(method="cyclegan")
    assert (cut.lambda_nce_used, cut.nce_idt_used, cut.antialias_on) == (1, True, True)
    assert (fast.lambda_nce_used, fast.nce_idt_used) == (10, False)
    assert cycle.antialias_on is False
    assert (cut.init_used, cycle.init_used) == ("xavier", "normal")
    # CUT's layers 0, 4, 8, 12, 16; the last capped at the last residual block
    assert TranslationConfig(n_blocks=9).nce_layers_used == (0, 4, 8, 12, 16)
    assert TranslationConfig(n_blocks=4).nce_layers_used == (0, 4, 8, 12, 15)
    assert TranslationConfig(n_blocks=1).nce_layers_used == (0, 4, 8, 12)
    assert TranslationConfig(n_blocks=0).nce_layers_used == (0, 4, 8)
    assert TranslationConfig(steps=10).decay_steps_used == 5
    c = TranslationConfig(nce_layers=[0, 4], data_spacing=[10, 1.5, 1.5])
    assert TranslationConfig.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_linear_decay_schedule_is_the_reference_rule():
    # CycleGAN's lambda_rule: 1 - max(0, t - n_const) / (n_decay + 1)
    s = linear_decay_schedule(2e-4, 10, 4)
    expected = [2e-4 * (1 - max(0, t - 6) / 5) for t in range(11)]
    np.testing.assert_allclose([float(s(t)) for t in range(11)], expected, rtol=1e-6)
    assert float(s(6)) == pytest.approx(2e-4)
    assert float(s(10)) == pytest.approx(2e-4 / 5)


def test_unit_range_and_slice_scale():
    x = np.array([[[-0.5, 0.0], [0.5, 2.0]]])
    np.testing.assert_allclose(to_unit_range(x)[..., 0], [[[-1, -1], [0, 1]]])
    rng = np.random.default_rng(0)
    vol = rng.uniform(0, 100, (3, 20, 10))
    vol[2] = 0
    # the divisor of the training normalisation (the same k-th largest value)
    norm = np.asarray(normalize(jnp.asarray(vol, jnp.float32)))
    np.testing.assert_allclose(
        slice_scale(vol)[:2], vol[:2, 0, 0] / norm[:2, 0, 0], rtol=1e-5
    )
    assert slice_scale(vol)[2] == 1.0
    k = math.ceil((1.0 - 99.5 / 100.0) * 200)  # normalize's k, as written there
    assert slice_scale(vol)[0] == np.sort(vol[0].ravel())[-k]


def test_tissue_ks():
    rng = np.random.default_rng(1)
    labels = np.zeros((2, 8, 8), np.uint8)
    labels[:, :4] = 1
    labels[:, 4:, :4] = 3
    a = rng.uniform(0, 1, labels.shape)
    b = a.copy()
    b[labels == 3] += 10.0  # LV intensities entirely above: KS 1
    ks = tissue_ks((a, labels), (b, labels))
    assert ks["RV"] == 0.0 and ks["LV"] == 1.0 and math.isnan(ks["MYO"])


def test_existing_run_is_not_overwritten(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="holds a run"):
        run_translation(TranslationConfig(**TINY), tmp_path)


def test_source_must_be_sim_or_a_database(tmp_path):
    from jaxsim.train._translate import open_sides

    with pytest.raises(ValueError, match="source must be 'sim'"):
        open_sides(TranslationConfig(source=str(tmp_path), target=str(tmp_path)))


# ----------------------------------------------------------------- training (slow)
def _data(seed, n=4, size=16, power=1.0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n, size, size)) ** power
    return SliceData(images, np.zeros((n, size, size), np.uint8))


def _leaves(state):
    return [np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype,
            jax.dtypes.prng_key) else x) for x in jax.tree.leaves(state)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cut", "cyclegan"])
def test_resume_equals_uninterrupted(method, tmp_path):
    config = TranslationConfig(method=method, steps=4, **TINY)
    a, b = _data(0), _data(1, power=2.0)
    whole = run_translation(config, tmp_path / "whole", source=a, target=b,
                            progress=False)  # fmt: skip
    run_translation(config, tmp_path / "split", source=a, target=b, progress=False,
                    until=2)  # fmt: skip
    resumed = run_translation(config, tmp_path / "split", source=a, target=b,
                              progress=False, resume=True)  # fmt: skip
    assert whole.step == resumed.step == 4
    t1 = TranslationTrainer(config)
    t2 = TranslationTrainer(config)
    from jaxsim.io import CheckpointStore

    with (
        CheckpointStore(tmp_path / "whole") as s1,
        CheckpointStore(tmp_path / "split") as s2,
    ):
        t1.restore(s1)
        t2.restore(s2)
    for x, y in zip(_leaves(t1.state), _leaves(t2.state), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert [r["step"] for r in resumed.losses] == [1, 2, 3, 4]
    # the state did change from the initial one
    t0 = TranslationTrainer(config)
    changed = [not np.array_equal(x, y) for x, y in zip(_leaves(t0.state["g"]),
               _leaves(t1.state["g"]), strict=True)]  # fmt: skip
    assert any(changed)
    assert sorted(p.name for p in (tmp_path / "whole" / "samples").iterdir()) == [
        "step_000004.png"
    ]
    with pytest.raises(ValueError, match="configured differently"):
        other = TranslationConfig(method=method, steps=4, **{**TINY, "ngf": 8})
        run_translation(other, tmp_path / "whole", source=a, target=b,
                        progress=False, resume=True)  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(("method", "term"), [("cut", "nce"), ("cyclegan", "cycle")])
def test_content_loss_falls_on_a_tiny_batch(method, term):
    """The content term (PatchNCE for CUT, cycle L1 for CycleGAN) falls when the
    networks train on one fixed pair of images."""
    config = TranslationConfig(method=method, steps=60, learning_rate=2e-3,
                               decay_steps=0, **TINY)  # fmt: skip
    trainer = TranslationTrainer(config, _data(0, n=1), _data(1, n=1, power=2.0))
    losses = [trainer.step()[term] for _ in range(60)]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.7 * first, (first, last)


@pytest.mark.integration
def test_batch_wide_negatives_train():
    """CUT with two images per batch and negatives from both: PatchNCE falls."""
    config = TranslationConfig(method="cut", steps=60, learning_rate=2e-3,
                               decay_steps=0, batch_size=2, nce_negatives="batch",
                               **TINY)  # fmt: skip
    trainer = TranslationTrainer(config, _data(0, n=2), _data(1, n=2, power=2.0))
    losses = [trainer.step()["nce"] for _ in range(60)]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert np.all(np.isfinite(losses)) and last < 0.7 * first, (first, last)


@pytest.mark.integration
def test_training_on_translated_slices(tmp_path):
    """`TrainConfig.translator`: every training image passes through the
    translator's generator (checked against applying it by hand), labels kept;
    the run records the model; a layout other than the translator's is refused."""
    from jaxsim.train import (
        Preprocessing,
        TrainConfig,
        TransformedData,
        load_translator,
        normalize,
        run_training,
    )

    config = TranslationConfig(method="cyclegan", steps=2, **TINY)
    run_translation(config, tmp_path / "tr", source=_data(0), target=_data(1),
                    progress=False)  # fmt: skip
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, (6, 16, 16)).astype(np.uint8)
    base = SliceData(rng.uniform(0, 1, (6, 16, 16)), labels)
    layout = Preprocessing(shape=(16, 16), spacing=2.5)
    data = TransformedData(base, tmp_path / "tr", layout)
    key = jax.random.key(0)
    images, got_labels = data.batch(key, 3)
    raw, raw_labels = base.batch(key, 3)
    np.testing.assert_array_equal(np.asarray(got_labels), np.asarray(raw_labels))
    generator, _, _ = load_translator(tmp_path / "tr")
    generator.eval()
    y = (generator(to_unit_range(raw))[..., 0] + 1.0) * 0.5
    np.testing.assert_allclose(
        np.asarray(images), np.asarray(normalize(y)), rtol=1e-5, atol=1e-6
    )
    assert np.all(np.isfinite(np.asarray(images)))
    assert data.describe()["translated_by"]["method"] == "cyclegan"
    with pytest.raises(ValueError, match="same --shape and --spacing"):
        TransformedData(base, tmp_path / "tr", Preprocessing(shape=(32, 32)))

    train = TrainConfig(steps=2, batch_size=2, shape=(16, 16), eval_every=2,
                        validation_size=2, translator=str(tmp_path / "tr"),
                        model_options={"channels": [4, 8], "strides": [2]})  # fmt: skip
    run_training(train, tmp_path / "seg", data=data, progress=False)
    meta = json.loads((tmp_path / "seg" / "config.json").read_text())
    assert meta["config"]["translator"] == str(tmp_path / "tr")
    assert meta["data"]["translated_by"]["model"] == str((tmp_path / "tr").resolve())
