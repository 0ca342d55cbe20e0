"""Sim-to-real translation runs: CUT, FastCUT and CycleGAN on unpaired 2D slices.

A run learns a generator that turns simulated slices (the on-device sampler or a
jaxsim database) into images that look like a folder of real ones. Both sides go
through the same :class:`~jaxsim.train.Preprocessing` as segmentation training
(resampled to the run's pixel size, divided by the 99.5th percentile per slice),
then to ``[-1, 1]`` (values above the percentile clip at 1).

``RUN_DIR`` holds ``config.json``, ``metrics.csv`` (losses), ``samples/`` (a PNG
grid of source / translated / target every ``sample_every`` steps) and orbax
checkpoints of the whole training state (every network, both optimisers, the
image pools); ``resume`` continues a run to the result an uninterrupted run
reaches, because step ``s`` draws everything from ``fold_in(key(seed), s)``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.io import CheckpointStore, atomic_path
from jaxsim.losses import NCE_NEGATIVES
from jaxsim.models import patchgan_output_size
from jaxsim.random import stream

from ._data import Preprocessing, open_data
from ._loop import _from_store, _to_store, _write_csv
from ._translate_steps import build_networks, initial_state, make_step

__all__ = [
    "TRANSLATION_METHODS",
    "TRANSLATION_FORMAT",
    "TranslationConfig",
    "TranslationResult",
    "TranslationTrainer",
    "load_translator",
    "run_translation",
    "to_unit_range",
]

TRANSLATION_METHODS = ("cut", "fastcut", "cyclegan")
TRANSLATION_FORMAT = "jaxsim-translation"
#: CUT's feature layers of the generator (``--nce_layers``).
CUT_NCE_LAYERS = (0, 4, 8, 12, 16)
#: The references' network sizes (``--reference``): CycleGAN/CUT at 256 px.
REFERENCE_SIZES = {"ngf": 64, "n_blocks": 9, "ndf": 64, "shape": (256, 256)}


def _positive_int(name, value, low=1):
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class TranslationConfig:
    """A translation run, saved as ``RUN_DIR/config.json``.

    Attributes:
        method: ``"cut"`` (PatchNCE on translated and identity images, lambda_NCE
            1), ``"fastcut"`` (no identity NCE, lambda_NCE 10, flip
            equivariance) or ``"cyclegan"`` (two generators, cycle and identity
            L1, image pools).
        source: ``"sim"`` (on-device sampler) or a jaxsim database ``.h5``.
        target: a folder (or file) of real images: ACDC as distributed, NIfTI
            image/label pairs, nnU-Net raw, or HDF5 image/label files.
        steps: optimisation steps (one batch of source and target each).
        batch_size: images per side and step (1 in the references).
        shape: ``(H, W)`` slice size in pixels (multiples of 4).
        spacing: in-plane pixel size, mm.
        ngf, n_blocks: generator width and residual blocks (reference 64, 9).
        ndf, n_layers_d: discriminator width and stride-2 stages (64, 3).
        antialias: blurred down/up-sampling (``None``: on for CUT and FastCUT,
            off for CycleGAN, as in the references).
        init: ``"xavier"`` or ``"normal"``, gain 0.02 (``None``: each method's
            reference, xavier for CUT and FastCUT, normal for CycleGAN).
        learning_rate: Adam's rate (beta = (0.5, 0.999)), 2e-4.
        decay_steps: steps of linear decay to zero at the end (``None``: half).
        nce_layers: generator layer indices for PatchNCE (``None``: CUT's
            0, 4, 8, 12, 16, the last capped at the last residual block).
        num_patches: patches per layer and image (256).
        nce_width: PatchNCE MLP width (256).
        nce_temperature: tau (0.07).
        nce_negatives: ``"image"`` (same-image negatives, CUT's default) or
            ``"batch"`` (every patch of the batch; matters only with
            ``batch_size > 1``).
        lambda_gan: GAN weight (1).
        lambda_nce: NCE weight (``None``: 1 for CUT, 10 for FastCUT).
        lambda_cycle: CycleGAN's cycle weight (10).
        lambda_identity: CycleGAN's identity weight as a fraction of
            ``lambda_cycle`` (0.5).
        pool_size: CycleGAN's image pool (50).
        sample_every: steps between PNG grids.
        checkpoint_every: steps between checkpoints.
        seed: seed of the initial weights and of every batch.
        data_spacing: ``(sz, sy, sx)`` mm for target files that store none (HDF5).
        sampler: :class:`~jaxsim.population.SamplerSpec` overrides for ``"sim"``.
    """

    method: str = "cut"
    source: str = "sim"
    target: str = ""
    steps: int = 2000
    batch_size: int = 1
    shape: tuple = (128, 128)
    spacing: float = 2.5
    ngf: int = 16
    n_blocks: int = 4
    ndf: int = 32
    n_layers_d: int = 3
    antialias: bool | None = None
    init: str | None = None
    learning_rate: float = 2e-4
    decay_steps: int | None = None
    nce_layers: tuple | None = None
    num_patches: int = 256
    nce_width: int = 256
    nce_temperature: float = 0.07
    nce_negatives: str = "image"
    lambda_gan: float = 1.0
    lambda_nce: float | None = None
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    sample_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    data_spacing: tuple | None = None
    sampler: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.method not in TRANSLATION_METHODS:
            raise ValueError(
                f"method must be one of {TRANSLATION_METHODS}; got {self.method!r}"
            )
        for name in ("steps", "batch_size", "sample_every", "checkpoint_every"):
            _positive_int(name, getattr(self, name))
        for name in ("ngf", "ndf", "n_layers_d", "num_patches", "nce_width"):
            _positive_int(name, getattr(self, name))
        _positive_int("n_blocks", self.n_blocks, 0)
        _positive_int("pool_size", self.pool_size, 0)
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 2 or min(shape) < 16 or any(n % 4 for n in shape):
            raise ValueError(
                f"shape must be (H, W), multiples of 4 and >= 16; got {self.shape}"
            )
        object.__setattr__(self, "shape", shape)
        if not self.spacing > 0:
            raise ValueError(f"spacing must be > 0 mm; got {self.spacing}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if self.decay_steps is not None and not 0 <= self.decay_steps <= self.steps:
            raise ValueError(
                f"decay_steps must lie in [0, steps={self.steps}]; got "
                f"{self.decay_steps}"
            )
        if not self.nce_temperature > 0:
            raise ValueError(f"nce_temperature must be > 0; got {self.nce_temperature}")
        if self.nce_negatives not in NCE_NEGATIVES:
            raise ValueError(
                f"nce_negatives must be one of {NCE_NEGATIVES}; got "
                f"{self.nce_negatives!r}"
            )
        for name in ("lambda_gan", "lambda_cycle", "lambda_identity"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.init is not None and self.init not in ("xavier", "normal"):
            raise ValueError(f"init must be 'xavier' or 'normal'; got {self.init!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2^31); got {self.seed!r}")
        if self.nce_layers is not None:
            object.__setattr__(
                self, "nce_layers", tuple(int(i) for i in self.nce_layers)
            )
        if self.data_spacing is not None:
            object.__setattr__(self, "data_spacing", tuple(self.data_spacing))
        if patchgan_output_size(min(shape), self.n_layers_d, self.antialias_on) < 1:
            raise ValueError(
                f"shape {shape} is too small for a discriminator with n_layers_d="
                f"{self.n_layers_d}: use fewer layers or larger slices"
            )

    # -- derived settings -------------------------------------------------
    @property
    def antialias_on(self) -> bool:
        if self.antialias is not None:
            return bool(self.antialias)
        return self.method != "cyclegan"

    @property
    def init_used(self) -> str:
        if self.init is not None:
            return self.init
        return "normal" if self.method == "cyclegan" else "xavier"

    @property
    def nce_layers_used(self) -> tuple[int, ...]:
        if self.nce_layers is not None:
            return self.nce_layers
        last_block = 12 + self.n_blocks - 1
        layers = [i for i in CUT_NCE_LAYERS if i < 12]
        if self.n_blocks:
            layers += sorted({12, min(16, last_block)})
        return tuple(layers)

    @property
    def lambda_nce_used(self) -> float:
        if self.lambda_nce is not None:
            return float(self.lambda_nce)
        return 10.0 if self.method == "fastcut" else 1.0

    @property
    def nce_idt_used(self) -> bool:
        return self.method == "cut"

    @property
    def decay_steps_used(self) -> int:
        return self.steps // 2 if self.decay_steps is None else int(self.decay_steps)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TranslationConfig:
        data = dict(data)
        for key in ("shape", "nce_layers", "data_spacing"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(shape=self.shape, spacing=self.spacing)


@dataclasses.dataclass(frozen=True)
class TranslationResult:
    """What a run did: final step, per-step losses, wall time (s)."""

    run_dir: Path
    step: int
    losses: list[dict]
    seconds: float


def to_unit_range(images) -> jax.Array:
    """Normalised slices ``(B, H, W)`` (0 to about 1) as network input
    ``(B, H, W, 1)`` in ``[-1, 1]`` (clipped); float32, or the input's float
    dtype (float64 stays float64)."""
    x = jnp.asarray(images)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return (jnp.clip(x, 0.0, 1.0) * 2.0 - 1.0)[..., None]


class TranslationTrainer:
    """The networks, state, data and compiled step of one run.

    Args:
        config: the run's :class:`TranslationConfig`.
        source, target: sources with ``batch(key, n) -> (images (n, H, W), ...)``
            (normalised slices); ``None`` to only restore and translate.
    """

    def __init__(self, config: TranslationConfig, source=None, target=None):
        self.config = config
        self.nets = build_networks(config)
        self.state = initial_state(config, self.nets, (*config.shape, 1))
        self.source, self.target = source, target
        self.root = jax.random.key(config.seed)
        self._step = make_step(config, self.nets)

    @property
    def step_count(self) -> int:
        return int(self.state["step"])

    def batch(self, step: int):
        """``(source, target)`` network inputs of step ``step``."""
        n = self.config.batch_size
        a = self.source.batch(
            jax.random.fold_in(stream(self.root, "tr.source"), step), n
        )
        b = self.target.batch(
            jax.random.fold_in(stream(self.root, "tr.target"), step), n
        )
        return to_unit_range(a[0]), to_unit_range(b[0])

    def step(self) -> dict:
        real_a, real_b = self.batch(self.step_count)
        key = jax.random.fold_in(stream(self.root, "tr.step"), self.step_count)
        self.state, losses = self._step(self.state, key, real_a, real_b)
        return {k: float(v) for k, v in losses.items()}

    @property
    def generator_name(self) -> str:
        return "G_A" if self.config.method == "cyclegan" else "G"

    def generator(self):
        """The source-to-target generator with the current weights."""
        name = self.generator_name
        return self.nets.module(name, self.state["g"][name])

    def save(self, store: CheckpointStore, meta: dict) -> None:
        flat, layout = _to_store(self.state)
        store.save(self.step_count, flat, {**meta, "layout": layout})

    def restore(self, store: CheckpointStore, step: int | None = None) -> dict:
        flat_like, layout = _to_store(self.state)
        meta = store.read_meta(step)
        if meta.get("layout") != layout:
            raise ValueError(
                f"the checkpoint in {store.directory} holds other networks than "
                "this configuration builds"
            )
        flat, meta = store.restore(flat_like, step)
        self.state = _from_store(flat, self.state)
        return meta


@jax.jit
def _apply(model, x):
    return model(x)


def translate_batch(generator, images, *, batch: int = 8) -> np.ndarray:
    """Translate normalised slices ``(N, H, W)`` (0..1); returns ``(N, H, W)``
    float32 in ``[0, 1]`` (the generator's ``[-1, 1]`` mapped back)."""
    images = np.asarray(images, np.float32)
    out = []
    for i in range(0, len(images), batch):
        y = _apply(generator, to_unit_range(images[i : i + batch]))
        out.append(np.asarray((y[..., 0] + 1.0) * 0.5))
    return np.concatenate(out) if out else np.zeros_like(images)


def _write_grid(path: Path, source, translated, target, step: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(source)
    fig, axes = plt.subplots(3, n, figsize=(2.0 * n, 6.2), dpi=100, squeeze=False)
    rows = (("source", source), ("translated", translated), ("target", target))
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name)
    fig.suptitle(f"step {step}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True, what="sample grid") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _read_csv(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {k: float(v) if k != "step" else int(v) for k, v in r.items()}
            for r in csv.DictReader(f)
            if int(r["step"]) <= upto
        ]


def _describe(config: TranslationConfig, trainer: TranslationTrainer) -> dict:
    p = config.preprocessing()
    return {
        "format": TRANSLATION_FORMAT,
        "config": config.to_json(),
        "generator": trainer.generator_name,
        "preprocessing": {
            "shape": list(p.shape),
            "spacing": p.spacing,
            "percentile": p.percentile,
        },
    }


def open_sides(config: TranslationConfig):
    """``(source, target)`` data sources of a configuration."""
    p = config.preprocessing()
    if config.source != "sim" and not str(config.source).endswith((".h5", ".hdf5")):
        raise ValueError(
            f"source must be 'sim' or a jaxsim database .h5; got {config.source!r}"
        )
    source = open_data(config.source, p, sampler=config.sampler)
    if not config.target:
        raise ValueError("target must name a folder (or file) of real images")
    target = open_data(config.target, p, spacing=config.data_spacing)
    return source, target


def run_translation(
    config: TranslationConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    until: int | None = None,
    source=None,
    target=None,
    n_show: int = 4,
) -> TranslationResult:
    """Train a translation model as ``config`` says, in ``run_dir``.

    Args:
        config: the run's configuration.
        run_dir: output folder.
        resume: continue the run in ``run_dir`` (only ``steps`` may differ).
        overwrite: start afresh in a folder that holds another run.
        progress: tqdm progress bar.
        until: stop (with a checkpoint) after this many steps.
        source, target: data sources to use instead of opening ``config.source``
            and ``config.target``.
        n_show: images per row of the PNG grids.

    Raises:
        FileExistsError: ``run_dir`` holds a run and neither ``resume`` nor
            ``overwrite`` is set.
        ValueError: bad configuration, or a resumed run configured otherwise.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if config_path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{run_dir} holds a run; resume it or choose another folder "
            "(overwrite=True / --force starts afresh)"
        )
    if resume and config_path.exists():
        saved = json.loads(config_path.read_text())
        if saved.get("format") != TRANSLATION_FORMAT:
            raise ValueError(f"{config_path} is not a jaxsim translation run")
        old = TranslationConfig.from_json(saved["config"])
        if {**old.to_json(), "steps": config.steps} != config.to_json():
            raise ValueError(
                f"the run in {run_dir} was configured differently; resume it with "
                "its own options (only the number of steps may change)"
            )
    if source is None or target is None:
        opened = open_sides(config)
        source = opened[0] if source is None else source
        target = opened[1] if target is None else target
    trainer = TranslationTrainer(config, source, target)
    meta = _describe(config, trainer)
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        import shutil

        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(run_dir / "samples", ignore_errors=True)
        (run_dir / "metrics.csv").unlink(missing_ok=True)
    with atomic_path(config_path, overwrite=True, what="run configuration") as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    preview_key = stream(jax.random.key(config.seed), "tr.preview")
    show_a = np.asarray(source.batch(preview_key, n_show)[0])
    show_b = np.asarray(target.batch(preview_key, n_show)[0])
    rows: list[dict] = []
    t0 = time.perf_counter()
    with CheckpointStore(run_dir) as store:
        if resume and store.latest is not None:
            trainer.restore(store)
            rows = _read_csv(run_dir / "metrics.csv", trainer.step_count)
        stop = config.steps if until is None else min(int(until), config.steps)
        bar = tqdm(total=config.steps, initial=trainer.step_count, desc=config.method,
                   unit="step", disable=not progress)  # fmt: skip
        while trainer.step_count < stop:
            losses = trainer.step()
            if not all(math.isfinite(v) for v in losses.values()):
                raise FloatingPointError(
                    f"a loss became non-finite at step {trainer.step_count}: {losses}"
                    "; lower the learning rate or check the data"
                )
            step = trainer.step_count
            rows.append({"step": step, **losses, "seconds": time.perf_counter() - t0})
            bar.update(1)
            bar.set_postfix(g=f"{losses['loss_g']:.3f}", d=f"{losses['loss_d']:.3f}")
            last = step == stop
            if step % config.sample_every == 0 or last:
                fake = translate_batch(trainer.generator(), show_a)
                _write_grid(run_dir / "samples" / f"step_{step:06d}.png",
                            show_a, fake, show_b, step)  # fmt: skip
            if step % config.checkpoint_every == 0 or last:
                trainer.save(store, meta)
                _write_csv(run_dir / "metrics.csv", rows)
        bar.close()
    return TranslationResult(
        run_dir=run_dir,
        step=trainer.step_count,
        losses=rows,
        seconds=time.perf_counter() - t0,
    )


def load_translator(run_dir: str | os.PathLike):
    """``(generator, preprocessing, description)`` of a translation run (its last
    checkpoint): the source-to-target network, the slice layout it was trained
    on, and ``config.json``'s content.

    Raises:
        FileNotFoundError: no run or no checkpoint in ``run_dir``.
        ValueError: the folder holds another kind of run.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} holds no translation run (no config.json)")
    meta = json.loads(path.read_text())
    if meta.get("format") != TRANSLATION_FORMAT:
        raise ValueError(f"{path} is not a jaxsim translation run")
    config = TranslationConfig.from_json(meta["config"])
    trainer = TranslationTrainer(config)
    with CheckpointStore(run_dir) as store:
        saved = trainer.restore(store)
    del saved
    meta = {**meta, "step": trainer.step_count}
    return trainer.generator(), config.preprocessing(), meta
