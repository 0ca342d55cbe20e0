"""Generative Latent Optimisation of the shape generator on real label maps.

GLO (Bojanowski et al., 2018; the seed-004 shape model): every training case
``i`` owns a latent ``z_i`` optimised jointly with the generator ``G`` so that
``G(z_i)`` reconstructs the case; afterwards a Gaussian fitted to the learned
latents is sampled for new subjects. Here ``G`` is :class:`jaxsim.models.ShapeGLO`
(latent -> valid ``Subject`` with a residual deformation) and the reconstruction
is scored *through the differentiable rasteriser*: the soft Dice loss between the
phantom's ACDC-class fractions (:func:`jaxsim.phantoms.tissue_fractions`) and the
real labels, at end-diastole and at the subject's end-systolic phase.

Per case, a rigid pose of the heart relative to its stack (3 rotation, 3
translation parameters; a nuisance, like the seed's rigid transform) is learned
too, initialised from the labels' moments as a patient twin does, or from a
fitted twin. Parameters (generator weights, latents, poses) are updated jointly
by ``optax.multi_transform`` (one Adam per group); after each update latents are
projected onto the unit ball, ``z / max(|z|, 1)``.

Stages (one global step counter):

1. warm start, ``warm_steps``: mean squared error between the generator's raw
   outputs and per-case targets (the size changes of the moment-matched initial
   subject, or of a twin, and a twin's deformation control values): cheap, and it
   moves the latents apart before the rasteriser stage;
2. ``steps`` steps of soft Dice through the rasteriser + ``reg[0] mean(control^2)
   + reg[1] sum(delta^2)`` on mini-batches of ``batch_size`` cases (one case per
   step is the CPU default: a step rasterises ED and ES on the common crop;
   batches are ``vmap``-ed, so a GPU takes several).

Cases are visited in a per-epoch permutation drawn from the seed, so a run
resumed from a checkpoint reaches bit-identical parameters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsim.fit import posed_affine, rotation_matrix
from jaxsim.geometry import ImageGeometry
from jaxsim.io import CheckpointStore, atomic_path
from jaxsim.labels import ACDC, task_fractions
from jaxsim.models import ShapeGLO
from jaxsim.phantoms import (
    FIELD_SPECS,
    Subject,
    default_subject,
    end_systolic_phase,
    tissue_fractions,
)

from ._glo_data import CaseStack, GLOCase, stack_cases
from ._loop import _write_csv

__all__ = [
    "ShapeGLOConfig",
    "ShapeGLOTrainer",
    "build_shape_generator",
    "train_shape_glo",
    "project_to_ball",
    "masked_soft_dice",
]

# Parameter scales (as the patient twin's): one Adam step moves every group by a
# sensible amount.
_ROTATION_SCALE = 0.3  # rad per unit
_TRANSLATION_SCALE = 20.0  # mm per unit


@dataclasses.dataclass(frozen=True)
class ShapeGLOConfig:
    """Hyperparameters of a GLO shape run (defaults sized for a 2-core CPU).

    Attributes:
        latent_dim: latent size ``K``.
        hidden: generator width.
        grid_shape: deformation control points.
        max_displacement: deformation bound (mm).
        steps: rasteriser (soft Dice) steps.
        warm_steps: MSE warm-start steps before them.
        batch_size: cases per rasteriser step.
        learning_rate, latent_learning_rate, pose_learning_rate: Adam step sizes
            of the generator, the latents and the poses.
        regularisation: weights of ``mean(control^2)`` and ``sum(delta^2)``.
        supersample: rasteriser sub-samples per voxel ``(sz, sy, sx)``.
        margin: mm of background around each case's labels in the crop.
        checkpoint_every: steps between checkpoints.
        seed: PRNG seed (latent initialisation, case order).
        template_sex: ``"male"`` or ``"female"``: the template subject
            (:func:`jaxsim.phantoms.default_subject`).
    """

    latent_dim: int = 16
    hidden: int = 64
    grid_shape: tuple[int, int, int] = (6, 6, 7)
    max_displacement: float = 30.0
    steps: int = 300
    warm_steps: int = 200
    batch_size: int = 1
    learning_rate: float = 3e-3
    latent_learning_rate: float = 3e-2
    pose_learning_rate: float = 3e-2
    regularisation: tuple[float, float] = (1e-3, 1e-3)
    supersample: tuple[int, int, int] = (2, 1, 1)
    margin: float = 12.0
    checkpoint_every: int = 50
    seed: int = 0
    template_sex: str = "male"

    def __post_init__(self):
        ints = {
            "latent_dim": (1, 512),
            "hidden": (1, 4096),
            "steps": (0, 10**7),
            "warm_steps": (0, 10**7),
            "batch_size": (1, 1024),
            "checkpoint_every": (1, 10**7),
            "seed": (0, 2**32 - 1),
        }
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an int in [{lo}, {hi}]; got {v!r}")
        for name in ("learning_rate", "latent_learning_rate", "pose_learning_rate"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0; got {v!r}")
        if not (0 < self.max_displacement <= 100):
            raise ValueError(
                f"max_displacement must lie in (0, 100] mm; got {self.max_displacement}"
            )
        if len(self.regularisation) != 2 or min(self.regularisation) < 0:
            raise ValueError(
                f"regularisation must be two weights >= 0; got {self.regularisation}"
            )
        if self.template_sex not in ("male", "female"):
            raise ValueError(
                f"template_sex must be 'male' or 'female'; got {self.template_sex!r}"
            )
        object.__setattr__(self, "grid_shape", tuple(int(n) for n in self.grid_shape))
        object.__setattr__(self, "supersample", tuple(int(n) for n in self.supersample))
        object.__setattr__(
            self, "regularisation", tuple(float(w) for w in self.regularisation)
        )

    @classmethod
    def reference(cls, **changes) -> ShapeGLOConfig:
        """GPU / reference sizes: a wider generator, 8 cases per step (vmapped),
        2000 rasteriser steps after 500 warm-start steps, 2x2x2 sub-samples."""
        values = dict(
            latent_dim=32,
            hidden=256,
            steps=2000,
            warm_steps=500,
            batch_size=8,
            supersample=(2, 2, 2),
            checkpoint_every=100,
        )
        values.update(changes)
        return cls(**values)

    @property
    def total_steps(self) -> int:
        return self.warm_steps + self.steps

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def project_to_ball(z):
    """Project rows of ``z`` ``(N, K)`` onto the unit ball: ``z / max(|z|, 1)``."""
    norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
    return z / jnp.maximum(norm, 1.0)


def masked_soft_dice(probs, target, mask, *, smooth=1e-5):
    """Mean soft Dice loss over the foreground classes, voxels weighted by ``mask``.

    ``1 - (2 sum(m p g) + s) / (sum(m p) + sum(m g) + s)`` per class ``c >= 1``
    (MONAI's ``DiceLoss`` with ``include_background=False`` when ``m = 1``).

    Args:
        probs, target: ``(C, *spatial)`` probabilities and one-hot target.
        mask: ``(*spatial)`` weights in [0, 1].

    Returns:
        Scalar loss in [0, 1].
    """
    p, g = probs[1:] * mask, target[1:] * mask
    axes = tuple(range(1, p.ndim))
    inter = jnp.sum(p * g, axis=axes)
    denom = jnp.sum(p, axis=axes) + jnp.sum(g, axis=axes)
    return jnp.mean(1.0 - (2.0 * inter + smooth) / (denom + smooth))


def make_template(config: ShapeGLOConfig) -> Subject:
    return default_subject(config.template_sex)


def build_generator(config: ShapeGLOConfig, *, seed: int | None = None) -> ShapeGLO:
    """The generator of a configuration (weights from ``seed``)."""
    return ShapeGLO(
        latent_dim=config.latent_dim,
        hidden=config.hidden,
        grid_shape=config.grid_shape,
        template=make_template(config),
        max_displacement=config.max_displacement,
        rngs=nnx.Rngs(config.seed if seed is None else seed),
    )


#: The public name of :func:`build_generator`.
build_shape_generator = build_generator


class ShapeGLOTrainer:
    """The state of a GLO shape run and its compiled steps.

    Attributes:
        params: ``{"generator", "latents" (N, K), "rotation" (N, 3),
            "translation" (N, 3)}``.
        opt_state: the ``optax.multi_transform`` state.
        step_count: global steps done (warm start included).

    Args:
        cases: the :class:`GLOCase` s.
        config: :class:`ShapeGLOConfig`.
        train_generator: ``False`` freezes the generator (its updates are zero):
            latents and poses alone are fitted, i.e. GLO inversion of new cases
            with a trained generator.
    """

    def __init__(self, cases, config: ShapeGLOConfig, *, train_generator: bool = True):
        self.config = config
        self.model = build_generator(config)
        self.graphdef, gparams, self.rest = nnx.split(self.model, nnx.Param, ...)
        self.data: CaseStack = stack_cases(
            list(cases),
            self.model.template,
            self.model.indices,
            config.grid_shape,
            margin=config.margin,
        )
        n = len(self.data.names)
        key = jax.random.key(config.seed)
        z = jax.random.normal(jax.random.fold_in(key, 1), (n, config.latent_dim))
        self.params = {
            "generator": gparams,
            "latents": project_to_ball(z / math.sqrt(config.latent_dim)),
            "rotation": jnp.zeros((n, 3)),
            "translation": jnp.zeros((n, 3)),
        }
        labels = {
            "generator": "generator",
            "latents": "latents",
            "rotation": "pose",
            "translation": "pose",
        }
        self.tx = optax.multi_transform(
            {
                "generator": optax.adam(config.learning_rate)
                if train_generator
                else optax.set_to_zero(),
                "latents": optax.adam(config.latent_learning_rate),
                "pose": optax.adam(config.pose_learning_rate),
            },
            labels,
        )
        self.opt_state = self.tx.init(self.params)
        self.step_count = 0
        self.key = key
        self._arrays = {
            k: jnp.asarray(getattr(self.data, k))
            for k in (
                "targets",
                "masks",
                "es_weight",
                "rotation0",
                "centre_image",
                "centre_phantom",
                "init_delta",
                "init_control",
            )
        }
        self._arrays["affines"] = jnp.asarray(self.data.affines, jnp.float32)
        self._warm = jax.jit(self._warm_step)
        self._dice = jax.jit(self._dice_step)

    @property
    def n_cases(self) -> int:
        return len(self.data.names)

    # ------------------------------------------------------------ the model
    def generator(self, gparams=None) -> ShapeGLO:
        gparams = self.params["generator"] if gparams is None else gparams
        return nnx.merge(self.graphdef, gparams, self.rest)

    def case_affine(self, params, i, affine=None, a=None):
        """Crop (or given) affine of case ``i`` placed in the phantom world."""
        a = self._arrays if a is None else a
        rot = a["rotation0"][i] @ rotation_matrix(
            _ROTATION_SCALE * params["rotation"][i]
        )
        shift = a["centre_phantom"][i] + _TRANSLATION_SCALE * params["translation"][i]
        return posed_affine(
            rot,
            a["centre_image"][i],
            shift,
            a["affines"][i] if affine is None else affine,
        )

    def _case_loss(self, params, i, a):
        model = self.generator(params["generator"])
        delta, control = model(params["latents"][i][None])
        subject = jax.tree.map(lambda x: x[0], model.decode(delta, control))
        geom = ImageGeometry(
            affine=self.case_affine(params, i, a=a), shape=self.data.shape
        )
        ss = self.config.supersample
        # ED and ES through one traced rasteriser (vmap over the phase): half
        # the compile time of two calls.
        phases = jnp.stack([jnp.zeros(()), end_systolic_phase(subject)])

        def dice(phase, target):
            f = tissue_fractions(subject, geom, cardiac_phase=phase, supersample=ss)
            return masked_soft_dice(task_fractions(f, ACDC), target, a["masks"][i])

        loss, es = jax.vmap(dice)(phases, a["targets"][i])
        w = self.config.regularisation
        reg = w[0] * jnp.mean(control**2) + w[1] * jnp.sum(delta**2)
        return loss + a["es_weight"][i] * es + reg, (loss, es)

    def _update(self, params, opt_state, grads):
        updates, opt_state = self.tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        params = {**params, "latents": project_to_ball(params["latents"])}
        return params, opt_state

    def _dice_step(self, params, opt_state, idx, a):
        def loss_fn(p):
            total, (ed, es) = jax.vmap(lambda i: self._case_loss(p, i, a))(idx)
            return jnp.mean(total), (jnp.mean(ed), jnp.mean(es))

        (loss, (ed, es)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        params, opt_state = self._update(params, opt_state, grads)
        return params, opt_state, {"loss": loss, "dice_loss_ed": ed, "dice_loss_es": es}

    def _warm_step(self, params, opt_state, a):
        def loss_fn(p):
            delta, control = self.generator(p["generator"])(p["latents"])
            return jnp.mean((delta - a["init_delta"]) ** 2) + jnp.mean(
                (control - a["init_control"]) ** 2
            )

        loss, grads = jax.value_and_grad(loss_fn)(params)
        params, opt_state = self._update(params, opt_state, grads)
        return params, opt_state, {"loss": loss}

    # ------------------------------------------------------------ stepping
    def batch_indices(self, step: int) -> np.ndarray:
        """Cases of rasteriser step ``step`` (counted from the stage's start)."""
        b, n = self.config.batch_size, self.n_cases
        per_epoch = -(-n // b)
        epoch, pos = divmod(step, per_epoch)
        perm = np.asarray(
            jax.random.permutation(jax.random.fold_in(self.key, 1000 + epoch), n)
        )
        return perm[(pos * b + np.arange(b)) % n].astype(np.int32)

    def step(self) -> dict:
        """One global step (warm start or rasteriser); returns its metrics."""
        s = self.step_count
        if s < self.config.warm_steps:
            self.params, self.opt_state, m = self._warm(
                self.params, self.opt_state, self._arrays
            )
            row = {"stage": "warm"}
        else:
            idx = self.batch_indices(s - self.config.warm_steps)
            self.params, self.opt_state, m = self._dice(
                self.params, self.opt_state, jnp.asarray(idx), self._arrays
            )
            row = {"stage": "dice", "cases": " ".join(self.data.names[i] for i in idx)}
        self.step_count += 1
        return {"step": self.step_count, **row, **{k: float(v) for k, v in m.items()}}

    # ------------------------------------------------------------ checkpoints
    def _state(self):
        return {"params": self.params, "opt_state": self.opt_state}

    def save(self, store: CheckpointStore, meta: dict) -> None:
        leaves = jax.tree.leaves(self._state())
        flat = {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}
        store.save(self.step_count, flat, {**meta, "step": self.step_count})

    def restore(self, store: CheckpointStore, step: int | None = None) -> dict:
        leaves, treedef = jax.tree.flatten(self._state())
        like = {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}
        flat, meta = store.restore(like, step)
        state = jax.tree.unflatten(treedef, [flat[k] for k in sorted(flat)])
        self.params, self.opt_state = state["params"], state["opt_state"]
        self.step_count = int(meta["step"])
        return meta


def _meta(trainer: ShapeGLOTrainer) -> dict:
    t = trainer.model.template
    return {
        "kind": "glo-shape",
        "config": trainer.config.to_json(),
        "generator": trainer.model.config(),
        "template": {f: np.asarray(getattr(t, f)).tolist() for f in FIELD_SPECS},
        "cases": list(trainer.data.names),
    }


def train_shape_glo(
    cases,
    config: ShapeGLOConfig = ShapeGLOConfig(),
    *,
    out: str | os.PathLike,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    until: int | None = None,
    report: bool = True,
    n_generated: int = 16,
) -> dict:
    """Train a GLO shape generator on real cases into ``out``.

    Writes ``out/config.json``, ``out/checkpoints/`` (orbax; parameters, latents,
    poses and optimiser state), ``out/metrics.csv``, and when the run is complete
    ``out/latents.npy``, ``out/gaussian.json`` (the latent Gaussian,
    :func:`fit_latent_gaussian`), ``out/report.json`` (per-case reconstruction
    Dice at ED/ES, plausibility of ``n_generated`` generated subjects, seconds per
    step) and ``out/shape.png``.

    Args:
        cases: sequence of :class:`GLOCase` (real labels, optional twins).
        config: :class:`ShapeGLOConfig`.
        out: run folder (``RUN_DIR/shape`` for the command line).
        resume: continue from the last checkpoint (same result as uninterrupted).
        overwrite: start over in a folder that holds a run.
        progress: tqdm progress bar.
        until: stop after this global step (for tests of resuming); the outputs of
            a complete run are written only at ``config.total_steps``.
        report: write the report, Gaussian and picture when complete.
        n_generated: generated subjects measured for plausibility in the report.

    Returns:
        The report dict (or ``{"step": ...}`` when stopped early).

    Raises:
        FileExistsError: ``out`` holds a run and neither ``resume`` nor
            ``overwrite`` is set.
        ValueError: bad cases or configuration; resuming a run of another
            configuration or other cases.
    """
    out = Path(out)
    if not isinstance(config, ShapeGLOConfig):
        raise TypeError(f"config must be a ShapeGLOConfig; got {type(config).__name__}")
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    cases = list(cases)
    if not all(isinstance(c, GLOCase) for c in cases):
        raise TypeError("cases must be GLOCase objects")
    config_path = out / "config.json"
    if config_path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{out} already holds a GLO shape run; pass resume (--resume) to "
            "continue it or overwrite (--force) to start over"
        )
    if overwrite and config_path.exists():  # only a GLO shape run is removed
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    trainer = ShapeGLOTrainer(cases, config)
    meta = _meta(trainer)
    rows: list[dict] = []
    with CheckpointStore(out, max_to_keep=2) as store:
        if resume and store.latest is not None:
            found = store.read_meta()
            for k in ("config", "cases"):
                if found.get(k) != json.loads(json.dumps(meta[k])):
                    raise ValueError(
                        f"cannot resume {out}: its run has another {k} "
                        f"({found.get(k)!r}); pass overwrite (--force) to start over"
                    )
            trainer.restore(store)
            if (out / "metrics.csv").exists():
                import csv

                with open(out / "metrics.csv", newline="") as f:
                    rows = [r for r in csv.DictReader(f)]
                rows = [r for r in rows if int(r["step"]) <= trainer.step_count]
        with atomic_path(config_path, overwrite=True, what="run configuration") as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        stop = config.total_steps if until is None else min(until, config.total_steps)
        bar = None
        if progress and trainer.step_count < stop:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=stop, initial=trainer.step_count, desc="glo shape", unit="step"
            )
        timings = {"warm": [], "dice": []}
        while trainer.step_count < stop:
            t0 = time.perf_counter()
            row = trainer.step()
            row["seconds"] = time.perf_counter() - t0
            timings[row["stage"]].append(row["seconds"])
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(
                    f"GLO loss became {row['loss']} at step {row['step']}; lower the "
                    "learning rates"
                )
            rows.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(stage=row["stage"], loss=f"{row['loss']:.3f}")
            done = trainer.step_count
            if done % config.checkpoint_every == 0 or done == stop:
                trainer.save(store, meta)
                _write_csv(out / "metrics.csv", rows)
        if bar is not None:
            bar.close()
        if trainer.step_count == stop and store.latest != stop:
            trainer.save(store, meta)
        if rows:
            _write_csv(out / "metrics.csv", rows)
    if trainer.step_count < config.total_steps or not report:
        return {"step": trainer.step_count}
    from ._glo_sample import write_shape_outputs

    return write_shape_outputs(
        trainer,
        cases,
        out,
        timings=timings,
        seconds=time.perf_counter() - start,
        n_generated=n_generated,
    )
