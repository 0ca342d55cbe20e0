"""Enhancer runs: the run folder, checkpoints, sample grids, and loading.

``RUN_DIR`` holds ``config.json``, ``metrics.csv``, ``samples/`` (PNG grids
of labels / physics / enhanced / real every ``sample_every`` steps) and orbax
checkpoints of the whole state (both networks with their spectral-norm
vectors and both optimisers). Step ``s`` draws its batch from
``fold_in(key(seed), s)``, so a resumed run reaches the result of an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import jax
import numpy as np

from jaxsim.io import CheckpointStore, atomic_path
from jaxsim.random import stream

from ._enhance import ENHANCER_FORMAT, EnhancerConfig, EnhancerTrainer, enhance
from ._loop import _write_csv
from ._translate import _read_csv

__all__ = ["EnhancerResult", "enhance_batch", "load_enhancer", "run_enhancer"]


@dataclasses.dataclass(frozen=True)
class EnhancerResult:
    """What a run did: final step, per-step losses, wall time (s)."""

    run_dir: Path
    step: int
    losses: list[dict]
    seconds: float


@jax.jit
def _enhance_jit(model, image, labels):
    return enhance(model, image, labels)


def enhance_batch(generator, images, labels, *, batch: int = 8) -> np.ndarray:
    """:func:`enhance` over ``(N, H, W)`` slices in batches; ``(N, H, W)``
    float32 NumPy in ``[0, 1]``."""
    images = np.asarray(images, np.float32)
    out = []
    for i in range(0, len(images), batch):
        y = _enhance_jit(generator, images[i : i + batch], labels[i : i + batch])
        out.append(np.asarray(y))
    return np.concatenate(out) if out else np.zeros_like(images)


def _write_grid(path: Path, rows: dict, step: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(
        len(rows), n, figsize=(2.0 * n, 2.05 * len(rows)), dpi=100, squeeze=False
    )
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            if name == "labels":
                ax.imshow(np.asarray(images[c]), cmap="viridis", vmin=0, vmax=3,
                          interpolation="nearest")  # fmt: skip
            else:
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


def _describe(config: EnhancerConfig, pairs) -> dict:
    p = config.preprocessing()
    meta = {
        "format": ENHANCER_FORMAT,
        "config": config.to_json(),
        "condition": ["background", "RV", "MYO", "LV", "physics image"],
        "preprocessing": {
            "shape": list(p.shape),
            "spacing": p.spacing,
            "percentile": p.percentile,
        },
    }
    if pairs is not None and hasattr(pairs, "describe"):
        meta["data"] = pairs.describe()
    return meta


def open_pairs(config: EnhancerConfig, *, progress: bool = False):
    """The :class:`~jaxsim.train.EnhancerPairs` of a configuration."""
    from ._enhance_data import enhancer_pairs

    if not config.real or not config.twins:
        raise ValueError("real and twins must name the real files and their twins")
    if config.data_spacing is None:
        raise ValueError(
            "data_spacing (sz, sy, sx) mm of the real HDF5 files is required (they "
            "store none)"
        )
    return enhancer_pairs(
        config.real, config.twins, spacing=config.data_spacing,
        preprocessing=config.preprocessing(), seed=config.seed, progress=progress,
    )  # fmt: skip


def _check_resume(run_dir: Path, config: EnhancerConfig) -> None:
    saved = json.loads((run_dir / "config.json").read_text())
    if saved.get("format") != ENHANCER_FORMAT:
        raise ValueError(f"{run_dir / 'config.json'} is not a jaxsim enhancer run")
    old = EnhancerConfig.from_json(saved["config"])
    if {**old.to_json(), "steps": config.steps} != config.to_json():
        raise ValueError(
            f"the run in {run_dir} was configured differently; resume it with its "
            "own options (only the number of steps may change)"
        )


def run_enhancer(
    config: EnhancerConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    until: int | None = None,
    pairs=None,
    n_show: int = 4,
) -> EnhancerResult:
    """Train the enhancer as ``config`` says, in ``run_dir``.

    Args:
        config: the run's configuration.
        run_dir: output folder.
        resume: continue the run in ``run_dir`` (only ``steps`` may differ).
        overwrite: start afresh in a folder that holds another run.
        progress: tqdm progress bars.
        until: stop (with a checkpoint) after this many steps.
        pairs: :class:`~jaxsim.train.EnhancerPairs` to use instead of rendering
            ``config.real`` / ``config.twins``.
        n_show: pairs per PNG grid.

    Returns:
        :class:`EnhancerResult`.

    Raises:
        FileExistsError: ``run_dir`` holds a run and neither ``resume`` nor
            ``overwrite`` is set.
        ValueError: bad configuration or data, or a resumed run configured
            otherwise.
        FloatingPointError: a loss became non-finite.
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
        _check_resume(run_dir, config)
    if pairs is None:
        pairs = open_pairs(config, progress=progress)
    trainer = EnhancerTrainer(config, pairs)
    meta = _describe(config, pairs)
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        import shutil

        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(run_dir / "samples", ignore_errors=True)
        (run_dir / "metrics.csv").unlink(missing_ok=True)
    with atomic_path(config_path, overwrite=True, what="run configuration") as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    show = pairs.batch(stream(jax.random.key(config.seed), "enh.preview"), n_show)
    show = [np.asarray(a) for a in show]
    rows: list[dict] = []
    t0 = time.perf_counter()
    with CheckpointStore(run_dir) as store:
        if resume and store.latest is not None:
            trainer.restore(store)
            rows = _read_csv(run_dir / "metrics.csv", trainer.step_count)
        stop = config.steps if until is None else min(int(until), config.steps)
        bar = tqdm(total=config.steps, initial=trainer.step_count, desc="enhancer",
                   unit="step", disable=not progress)  # fmt: skip
        while trainer.step_count < stop:
            losses = trainer.step()
            if not all(math.isfinite(v) for v in losses.values()):
                raise FloatingPointError(
                    f"a loss became non-finite at step {trainer.step_count}: {losses}"
                    "; lower the learning rates or check the data"
                )
            step = trainer.step_count
            rows.append({"step": step, **losses, "seconds": time.perf_counter() - t0})
            bar.update(1)
            bar.set_postfix(g=f"{losses['loss_g']:.3f}", d=f"{losses['loss_d']:.3f}",
                            l1=f"{losses['l1']:.3f}")  # fmt: skip
            last = step == stop
            if step % config.sample_every == 0 or last:
                fake = enhance_batch(trainer.generator(), show[1], show[0])
                grid = {"labels": show[0], "physics": show[1], "enhanced": fake,
                        "real": show[2]}  # fmt: skip
                _write_grid(run_dir / "samples" / f"step_{step:06d}.png", grid, step)
            if step % config.checkpoint_every == 0 or last:
                trainer.save(store, meta)
                _write_csv(run_dir / "metrics.csv", rows)
        bar.close()
    return EnhancerResult(
        run_dir=run_dir,
        step=trainer.step_count,
        losses=rows,
        seconds=time.perf_counter() - t0,
    )


def load_enhancer(run_dir: str | os.PathLike):
    """``(generator, preprocessing, description)`` of an enhancer run (its last
    checkpoint): the generator in evaluation mode, the slice layout it was
    trained on, and ``config.json``'s content plus ``"step"``.

    Raises:
        FileNotFoundError: no run or no checkpoint in ``run_dir``.
        ValueError: the folder holds another kind of run.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} holds no enhancer run (no config.json)")
    meta = json.loads(path.read_text())
    if meta.get("format") != ENHANCER_FORMAT:
        raise ValueError(f"{path} is not a jaxsim enhancer run")
    config = EnhancerConfig.from_json(meta["config"])
    trainer = EnhancerTrainer(config)
    with CheckpointStore(run_dir) as store:
        if store.latest is None:
            raise FileNotFoundError(f"{run_dir} holds no checkpoint yet")
        trainer.restore(store)
    meta = {**meta, "step": trainer.step_count}
    return trainer.generator(), config.preprocessing(), meta
