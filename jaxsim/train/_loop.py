"""The training loop: functional NNX steps under ``jit``, data parallel, resumable.

A step splits the network into parameters and the rest (batch statistics, dropout
RNG state), differentiates only the parameters, applies an optax update and merges
back (the pattern that works in Flax's graph and tree modes alike). Batches are
sharded along their first axis over all local devices (``jax.sharding``), the
state replicated, so a multi-device node runs the same code.

Determinism: the batch and augmentation of step ``s`` come from
``fold_in(key(seed), s)`` alone and the whole training state (network, optimiser,
dropout RNG) is checkpointed, so a run resumed from a checkpoint reaches the same
result as one that never stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxsim.io import CheckpointStore, atomic_path
from jaxsim.labels import ACDC
from jaxsim.random import stream

from ._transforms import Augmentation, augment

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "fit",
    "make_optimizer",
    "predict_batches",
    "dice_per_class",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, saved as ``RUN_DIR/config.json``.

    Attributes:
        model: network name (see :func:`jaxsim.models.build_model`).
        model_options: keyword options of the network.
        data: ``"sim"``, a database ``.h5`` or a folder of labelled images.
        validation: a folder of labelled images for validation Dice, or ``None``
            (a fixed batch from ``data``).
        steps: optimisation steps.
        batch_size: images per step (a multiple of the local device count).
        shape: ``(H, W)`` network input size in pixels; ``(D, H, W)`` for a 3D
            network (``D`` consecutive slices per stack).
        spacing: in-plane pixel size the network sees, mm.
        optimizer: ``"sgd"`` (nnU-Net: Nesterov momentum 0.99, poly decay 0.9,
            weight decay 3e-5) or ``"adamw"`` (cosine decay).
        learning_rate: peak learning rate (default 1e-2 for SGD, 1e-3 for AdamW).
        loss: ``"dice_ce"`` (nnU-Net's) or ``"focal_tversky"``.
        augment: on-device augmentation on or off.
        eval_every: steps between validation Dice evaluations.
        checkpoint_every: steps between checkpoints.
        seed: seed of the network initialisation and of every batch.
        data_spacing: ``(sz, sy, sx)`` mm for real files that store none.
        label_map: ``{file value: class value}`` for real labels.
        validation_size: images in the fixed validation batch drawn from
            ``data`` when ``validation`` is ``None``.
        sampler: :class:`~jaxsim.population.SamplerSpec` fields that ``"sim"``
            data overrides (ranges as pairs), e.g. ``{"clutter": [0, 8]}``.
        translator: a translation run folder (``jaxsim translate train``) whose
            generator every training image passes through (2D networks; the
            labels stay the simulation's): training on translated simulations.
    """

    model: str = "unet2d"
    model_options: dict = dataclasses.field(default_factory=dict)
    data: str = "sim"
    validation: str | None = None
    steps: int = 1000
    batch_size: int = 16
    shape: tuple = (128, 128)
    spacing: float = 2.5
    optimizer: str = "adamw"
    learning_rate: float | None = None
    loss: str = "dice_ce"
    augment: bool = True
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    data_spacing: tuple | None = None
    label_map: dict | None = None
    validation_size: int = 64
    sampler: dict = dataclasses.field(default_factory=dict)
    translator: str | None = None

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(
                f"optimizer must be 'sgd' or 'adamw'; got {self.optimizer!r}"
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2^31); got {self.seed!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if len(self.shape) not in (2, 3):
            raise ValueError(f"shape must be (H, W) or (D, H, W); got {self.shape}")

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if self.label_map is not None:
            out["label_map"] = {str(k): v for k, v in self.label_map.items()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        data = dict(data)
        if data.get("label_map") is not None:
            data["label_map"] = {int(k): int(v) for k, v in data["label_map"].items()}
        for key in ("shape", "data_spacing"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run did: the final step, per-step losses and validation Dice."""

    run_dir: Path
    step: int
    losses: np.ndarray
    validation: list[dict]
    seconds: float


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """nnU-Net's SGD (Nesterov 0.99, ``lr (1 - t/T)^0.9``, weight decay 3e-5) or
    AdamW with cosine decay and a short warm-up."""
    return _optimizer(config.optimizer, config.learning_rate, config.steps)


def dice_per_class(predicted, labels, n_classes: int) -> np.ndarray:
    """Dice of every foreground class over a whole set (global counts); NaN for a
    class absent from both."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    out = np.full(n_classes - 1, np.nan)
    for c in range(1, n_classes):
        p, t = predicted == c, labels == c
        total = p.sum() + t.sum()
        if total:
            out[c - 1] = 2.0 * np.logical_and(p, t).sum() / total
    return out


def _to_store(state) -> tuple[dict, list]:
    """The state's leaves as ``{"00000": array, ...}`` (typed PRNG keys as their
    raw data) and a fingerprint of the layout (shapes and dtypes)."""
    leaves = jax.tree_util.tree_leaves(jax.device_get(state))
    flat, layout = {}, []
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        flat[f"{i:05d}"] = np.asarray(leaf)
        layout.append([list(np.shape(leaf)), str(np.asarray(leaf).dtype)])
    return flat, layout


def _from_store(flat: dict, like):
    """Inverse of :func:`_to_store` into the structure of ``like``."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out = []
    for i, leaf in enumerate(leaves):
        value = flat[f"{i:05d}"]
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
        out.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, out)


@functools.cache
def _optimizer(optimizer: str, learning_rate, steps: int):
    """The optax transformation of a configuration (cached: same settings, same
    object, so compiled steps are shared)."""
    if optimizer == "sgd":
        lr = 1e-2 if learning_rate is None else learning_rate
        schedule = optax.polynomial_schedule(lr, 0.0, power=0.9, transition_steps=steps)
        return optax.chain(
            optax.add_decayed_weights(3e-5),
            optax.sgd(schedule, momentum=0.99, nesterov=True),
        )
    lr = 1e-3 if learning_rate is None else learning_rate
    warmup = max(1, min(100, steps // 20))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup, steps, end_value=lr * 0.01
    )
    return optax.adamw(schedule, weight_decay=1e-4)


@functools.cache
def _compiled_step(graphdef, optimizer: tuple, objective, augmentation):
    """The jitted training step of a network layout, optimiser, objective and
    augmentation (cached: runs of the same network compile once per process)."""
    tx = _optimizer(*optimizer)

    def train_step(state, key, images, labels):
        if augmentation is not None:
            images, labels = augment(key, images, labels, augmentation)

        def loss_fn(params, rest):
            # both as arguments: state that the forward pass updates (batch
            # statistics, dropout RNG counts) must belong to the inner trace
            model = nnx.merge(graphdef, params, rest)
            model.train()
            loss = objective(model, images, labels)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, rest

        (loss, rest), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["rest"]
        )
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"params": params, "rest": rest, "opt": opt, "step": state["step"] + 1}
        return new, loss

    return jax.jit(train_step, donate_argnums=(0,))


class Trainer:
    """One run: network state, optimiser, data, devices and the compiled step.

    Args:
        config: the run's :class:`TrainConfig`.
        model: the freshly built network (its initial weights).
        objective: ``objective(model, images, labels) -> scalar loss`` with the
            network in training mode.
        data: a source with ``batch(key, n) -> (images, labels)``.
        devices: devices the batch is split over (default: all local devices).
    """

    def __init__(self, config: TrainConfig, model, objective, data, devices=None):
        self.config = config
        self.devices = list(jax.local_devices() if devices is None else devices)
        if not self.devices:
            raise ValueError("devices must name at least one device")
        mesh = Mesh(np.array(self.devices), ("batch",))
        self.batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        self.tx = make_optimizer(config)
        state = {
            "params": params,
            "rest": rest,
            "opt": self.tx.init(params),
            "step": jnp.asarray(0, jnp.int32),
        }
        self.state = jax.device_put(state, self.replicated)
        self.data = data
        self.objective = objective
        self.augmentation = Augmentation() if config.augment else None
        self.root = jax.random.key(config.seed)
        self._compiled = _compiled_step(
            self.graphdef,
            (config.optimizer, config.learning_rate, config.steps),
            objective,
            self.augmentation,
        )

    @property
    def step_count(self) -> int:
        return int(self.state["step"])

    def batch(self, step: int):
        """``(augmentation key, images, labels)`` of step ``step`` (a function of
        the seed and the step only)."""
        key = jax.random.fold_in(stream(self.root, "train.batch"), step)
        images, labels = self.data.batch(key, self.config.batch_size)
        aug_key = jax.random.fold_in(stream(self.root, "train.augment"), step)
        return aug_key, images, labels

    def step(self) -> jax.Array:
        """One optimisation step; returns the loss (not synchronised)."""
        key, images, labels = self.batch(self.step_count)
        images = jax.device_put(images, self.batch_sharding)
        labels = jax.device_put(labels, self.batch_sharding)
        self.state, loss = self._compiled(self.state, key, images, labels)
        return loss

    def model(self):
        """The network with the current weights, in evaluation mode."""
        model = nnx.merge(self.graphdef, self.state["params"], self.state["rest"])
        model.eval()
        return model

    def save(self, store: CheckpointStore, meta: dict) -> None:
        flat, layout = _to_store(self.state)
        store.save(self.step_count, flat, {**meta, "layout": layout})

    def restore(self, store: CheckpointStore, step: int | None = None) -> dict:
        """Load a checkpoint into this run; ``ValueError`` if it holds another
        network (a different layout of arrays)."""
        _, layout = _to_store(self.state)
        meta = store.read_meta(step)
        if meta.get("layout") != layout:
            raise ValueError(
                f"the checkpoint in {store.directory} holds another network "
                f"(model {meta.get('config', {}).get('model')!r}, "
                f"{len(meta.get('layout', []))} arrays; this run: "
                f"{self.config.model!r}, {len(layout)} arrays)"
            )
        like, _ = _to_store(self.state)
        flat, meta = store.restore(like, step)
        self.state = jax.device_put(_from_store(flat, self.state), self.replicated)
        return meta


def predict_batches(model, images, *, batch: int = 16):
    """Argmax labels of ``images (N, H, W)`` by a network in evaluation mode."""

    @jax.jit
    def run(x):
        out = model(x[..., None])
        logits = out[0] if isinstance(out, tuple | list) else out
        return jnp.argmax(logits, axis=-1).astype(jnp.uint8)

    parts = [
        np.asarray(run(images[i : i + batch])) for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts)


def _write_curves(path: Path, rows: list[dict], class_names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    a.plot(steps, [r["loss"] for r in rows], lw=1)
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.set_yscale("log")
    a.grid(alpha=0.3)
    val = [r for r in rows if r.get("dice_mean") is not None]
    for name in class_names:
        b.plot(
            [r["step"] for r in val], [r[f"dice_{name}"] for r in val], "o-", label=name
        )
    b.set_xlabel("step")
    b.set_ylabel("validation Dice")
    b.set_ylim(0, 1)
    b.grid(alpha=0.3)
    if val:
        b.legend()
    fig.tight_layout()
    with atomic_path(path, overwrite=True, what="training curves") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path, overwrite=True, what="metrics table") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


def fit(
    trainer: Trainer,
    run_dir: str | os.PathLike,
    *,
    validation,
    meta: dict,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> TrainResult:
    """Run a :class:`Trainer` to ``config.steps`` with validation, logs and
    checkpoints in ``run_dir`` (``metrics.csv``, ``curves.png``,
    ``checkpoints/``); with ``resume``, continue from the last checkpoint.

    Args:
        trainer: the run.
        run_dir: output folder.
        validation: ``(images (N, H, W), labels (N, H, W))`` for Dice, or ``None``.
        meta: JSON description saved with every checkpoint.
        resume: continue an existing run (its metrics are kept).
        progress: tqdm progress bar.
        until: stop (with a checkpoint) after this many steps, short of
            ``config.steps`` (a time-limited job; ``resume`` continues it).
    """
    from tqdm.auto import tqdm

    config = trainer.config
    if config.batch_size % len(trainer.devices):
        raise ValueError(
            f"batch_size {config.batch_size} must be a multiple of the "
            f"{len(trainer.devices)} local devices"
        )
    run_dir = Path(run_dir)
    names = ACDC.classes[1:]
    rows: list[dict] = []
    t0 = time.perf_counter()
    with CheckpointStore(run_dir) as store:
        if resume and store.latest is not None:
            trainer.restore(store)
            csv_path = run_dir / "metrics.csv"
            if csv_path.exists():
                with open(csv_path, newline="") as f:
                    rows = [
                        {k: _number(v) for k, v in r.items()}
                        for r in csv.DictReader(f)
                        if int(r["step"]) <= trainer.step_count
                    ]
        bar = tqdm(
            total=config.steps,
            initial=trainer.step_count,
            desc="train",
            unit="step",
            disable=not progress,
        )
        losses = []
        stop = config.steps if until is None else min(int(until), config.steps)
        while trainer.step_count < stop:
            loss = float(trainer.step())
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss} at step {trainer.step_count}; "
                    "lower --lr or check the data"
                )
            step = trainer.step_count
            losses.append(loss)
            row = {"step": step, "loss": loss, "seconds": time.perf_counter() - t0}
            bar.update(1)
            last = step == stop
            if validation is not None and (step % config.eval_every == 0 or last):
                pred = predict_batches(trainer.model(), validation[0])
                dice = dice_per_class(pred, validation[1], ACDC.n_classes)
                row.update(
                    {f"dice_{n}": float(d) for n, d in zip(names, dice, strict=True)}
                )
                row["dice_mean"] = float(np.nanmean(dice))
                bar.set_postfix(loss=f"{loss:.3f}", dice=f"{row['dice_mean']:.3f}")
            rows.append(row)
            if step % config.checkpoint_every == 0 or last:
                trainer.save(store, meta)
                _write_csv(run_dir / "metrics.csv", rows)
                _write_curves(run_dir / "curves.png", rows, names)
        bar.close()
    return TrainResult(
        run_dir=run_dir,
        step=trainer.step_count,
        losses=np.asarray([r["loss"] for r in rows]),
        validation=[r for r in rows if r.get("dice_mean") is not None],
        seconds=time.perf_counter() - t0,
    )


def _number(text: str):
    if text in ("", None):
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value
