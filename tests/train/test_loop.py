"""The training loop with a tiny network: it learns, it resumes exactly, it refuses
another network's checkpoint, and its logs are complete."""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsim.train import SliceData, TrainConfig, Trainer, dice_per_class, fit


class Tiny(nnx.Module):
    """Two convolutions with batch norm and dropout (every kind of state)."""

    def __init__(self, rngs, width=8, classes=4):
        self.a = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.b = nnx.Conv(width, classes, (3, 3), rngs=rngs)

    def __call__(self, x):
        return self.b(self.drop(jax.nn.relu(self.bn(self.a(x)))))


def cross_entropy(model, images, labels):
    logits = model(images[..., None])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def blobs(n=16, size=24, seed=0):
    """Bright discs (class 3) in rings (class 2) on a dark background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    images = np.zeros((n, size, size), np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(7, size - 7, 2)
        r = np.hypot(y - cy, x - cx)
        labels[i][r < 6] = 2
        labels[i][r < 3.5] = 3
        images[i] = np.choose(labels[i], [0.1, 0.0, 0.5, 1.0]) + 0.05 * rng.normal(
            size=(size, size)
        )
    return images, labels


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _trainer(steps, **kw):
    config = TrainConfig(
        model="tiny",
        steps=steps,
        batch_size=4,
        shape=(24, 24),
        eval_every=5,
        checkpoint_every=5,
        learning_rate=3e-2,
        **kw,
    )
    data = SliceData(*blobs())
    return Trainer(config, Tiny(nnx.Rngs(config.seed)), cross_entropy, data)


def test_it_learns(tmp_path):
    images, labels = blobs(8, seed=1)
    trainer = _trainer(60, augment=False)
    result = fit(
        trainer, tmp_path, validation=(images, labels), meta={}, progress=False
    )
    assert result.step == 60
    assert np.mean(result.losses[-5:]) < 0.3 * np.mean(result.losses[:3])
    assert result.validation[-1]["dice_mean"] > 0.7
    rows = _rows(tmp_path / "metrics.csv")
    assert len(rows) == 60 and "dice_LV" in rows[-1]
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_resumed_run_equals_uninterrupted(tmp_path):
    full = _trainer(10)
    fit(full, tmp_path / "full", validation=None, meta={}, progress=False)
    part = _trainer(10)
    fit(part, tmp_path / "part", validation=None, meta={}, progress=False, until=5)
    assert part.step_count == 5
    again = _trainer(10)  # a new process would start here
    fit(again, tmp_path / "part", validation=None, meta={}, progress=False, resume=True)
    assert again.step_count == 10
    for a, b in zip(
        jax.tree.leaves(full.state), jax.tree.leaves(again.state), strict=True
    ):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rows = _rows(tmp_path / "part" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 11))


def test_checkpoint_of_another_network_is_refused(tmp_path):
    trainer = _trainer(10)  # the configuration of the resume test: compiled once
    fit(trainer, tmp_path, validation=None, meta={}, progress=False, until=2)
    config = trainer.config
    wider = Trainer(config, Tiny(nnx.Rngs(0), width=12), cross_entropy, trainer.data)
    with pytest.raises(ValueError, match="another network"):
        fit(wider, tmp_path, validation=None, meta={}, progress=False, resume=True)


def test_dice_per_class_by_hand():
    pred = np.array([[0, 1, 1, 2], [3, 3, 0, 0]])
    true = np.array([[0, 1, 2, 2], [3, 0, 0, 0]])
    d = dice_per_class(pred, true, 4)
    # class 1: |P|=2, |T|=1, overlap 1 -> 2/3; class 2: 1,2,1 -> 2/3; class 3: 2,1,1
    np.testing.assert_allclose(d, [2 / 3, 2 / 3, 2 / 3])
    assert np.isnan(dice_per_class(np.zeros((2, 2)), np.zeros((2, 2)), 3)).all()


def test_invalid_configurations_raise():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="seed"):
        TrainConfig(seed=-1)
