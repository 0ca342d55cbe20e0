"""Material GLO: learn spatial tissue-property maps from real cines through the
simulator (Generative Latent Optimisation, seed paper 004's material generator).

Every real case (a cine volume at ED, and ES when its twin has it, with ACDC
labels) comes with its patient twin (:func:`jaxsim.fit.fit_twin`): the phantom's
subject and the real grid placed in its world. Each case owns a latent code
``z_i`` (projected to the unit ball after every update); the shared
:class:`~jaxsim.models.MaterialGLO` decodes it into a material map
(:mod:`jaxsim.mr` ``MaterialBox``) that the MR simulator renders on the twin's
anatomy. Generator and codes are trained jointly (``optax.multi_transform``, one
Adam per group) to minimise

    L_i = sum_p min_{a,b} |pool(a sim + b) - pool(real)|^2 / |pool(real) - mean|^2

on the grid cropped around the heart and pooled to ``loss_spacing`` mm (the
paper's low-resolution MSE). The real image's intensity scale is arbitrary
(ACDC's HDF5 images are min-max scaled per volume, and the receive gain is
unknown), so a gain ``a`` and offset ``b`` per volume are solved in closed form
(least squares) inside the loss; dividing by the real image's variance makes the
loss ``1 - R^2`` (0 perfect, 1 no better than a constant), comparable between
cases. An optional feature loss compares the encoder features of an in-project
segmentation U-Net (a ``jaxsim train`` run) on the fitted simulation and the
real slices (the offline stand-in for the paper's VGG perceptual loss). Noise is
off and the acquisition key fixed, so the loss is deterministic.

After training, a Gaussian fitted to the learned codes generates new materials
(:func:`sample_materials`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsim.io import CheckpointStore, atomic_path, read_image_label_h5
from jaxsim.labels import ACDC, task_labels
from jaxsim.models import MaterialGLO
from jaxsim.mr import (
    MATERIAL_CHANNELS,
    Anatomy,
    BSSFPSequence,
    MRAcquisition,
    acquire_cine,
    check_material_bounds,
    default_tissue_properties,
    material_box,
    prepare_anatomy,
)

from ._loop import _from_store, _to_store, _write_csv
from ._transforms import resample_in_plane
from ._translate_measures import tissue_ks

__all__ = [
    "MATERIAL_FORMAT",
    "MaterialCase",
    "MaterialGLOConfig",
    "MaterialGLOResult",
    "MaterialGLOTrainer",
    "build_material_generator",
    "load_material_cases",
    "train_material_glo",
    "load_material_glo",
    "sample_materials",
    "latent_gaussian",
    "fitted_gain",
]

MATERIAL_FORMAT = "jaxsim-material-glo"


@dataclasses.dataclass(frozen=True)
class MaterialCase:
    """One real case and its twin.

    Attributes:
        name: case name (reports).
        subject: the twin's ``Subject`` (deformation set).
        geometry: the real grid placed in the phantom's world ``(nz, ny, nx)``.
        images: ``(P, nz, ny, nx)`` real magnitudes (any scale), P = 1 (ED) or
            2 (ED, ES).
        labels: ``(P, nz, ny, nx)`` ACDC labels of the real images.
        phases: ``(P,)`` cardiac phases of the frames (0 for ED, the twin's ES
            phase).
        spacing: ``(sz, sy, sx)`` mm.
    """

    name: str
    subject: object
    geometry: object
    images: np.ndarray
    labels: np.ndarray
    phases: tuple
    spacing: tuple


@dataclasses.dataclass(frozen=True)
class MaterialGLOConfig:
    """A material GLO run, saved in ``config.json``.

    Attributes:
        steps: optimisation steps (one batch of cases each).
        batch_size: cases per step (at most the number of cases).
        latent_dim, grid, width, max_log: :class:`~jaxsim.models.MaterialGLO`.
        learning_rate: Adam rate of the generator.
        latent_learning_rate: Adam rate of the latent codes.
        loss_spacing: in-plane pixel size (mm) of the pooled loss.
        crop_mm: side (mm) of the in-plane window around the labelled heart.
        oversample: the acquisition's in-plane oversampling (1 is cheapest).
        box_margin: mm of material box around the ventricles.
        field: 1.5 or 3 tesla (literature tissue properties).
        feature_weight: weight of the segmenter feature loss (used with a
            segmenter).
        feature_levels: encoder levels of the segmenter whose features count.
        checkpoint_every: steps between checkpoints.
        seed: seed of the network, the codes and the case schedule.
    """

    steps: int = 300
    batch_size: int = 2
    latent_dim: int = 16
    grid: int = 16
    width: int = 32
    max_log: tuple = (0.4, 0.5, 0.5)
    learning_rate: float = 2e-3
    latent_learning_rate: float = 2e-2
    loss_spacing: float = 4.0
    crop_mm: float = 160.0
    oversample: int = 1
    box_margin: float = 20.0
    field: float = 1.5
    feature_weight: float = 0.1
    feature_levels: int = 2
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "latent_dim", "grid", "width",
                     "oversample", "feature_levels", "checkpoint_every"):  # fmt: skip
            value = getattr(self, name)
            low = 0 if name == "steps" else 1
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        for name in ("learning_rate", "latent_learning_rate", "loss_spacing",
                     "crop_mm"):  # fmt: skip
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0; got {value!r}")
        for name in ("box_margin", "feature_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0; got {value!r}")
        object.__setattr__(self, "max_log", tuple(float(v) for v in self.max_log))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> MaterialGLOConfig:
        return cls(**{**data, "max_log": tuple(data["max_log"])})


@dataclasses.dataclass(frozen=True)
class MaterialGLOResult:
    """What :func:`train_material_glo` returns: the run folder, the steps done,
    the metrics rows, ``report`` (report.json's content) and the wall time."""

    run_dir: Path
    step: int
    rows: list
    report: dict
    seconds: float


# ------------------------------------------------------------------ the data
def _patient(name: str) -> str | None:
    match = re.search(r"patient\d+", name)
    return None if match is None else match.group(0)


def load_material_cases(real, twins, *, spacing) -> list[MaterialCase]:
    """Pair real HDF5 cines with ``jaxsim twin`` folders.

    A twin's ``report.json`` names its ED (and ES) label files; each is matched
    to a real file of the same name (else of the same ``patientNNN``, the lower
    frame number taken as ED).

    Args:
        real: HDF5 files (``image``, ``label``) or folders holding them.
        twins: folders holding a ``jaxsim twin`` ``report.json``.
        spacing: ``(sz, sy, sx)`` mm of the HDF5 images (they store none).

    Raises:
        FileNotFoundError: a path or a twin's report is missing.
        ValueError: a twin without a matching real file, or grids that differ.
    """
    from jaxsim.fit import twin_from_parameters

    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three values > 0 mm; got {spacing}")
    files = []
    for path in map(Path, real):
        if path.is_dir():
            files += sorted(path.glob("*.h5")) + sorted(path.glob("*.hdf5"))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"--real {path} does not exist")
    if not files:
        raise ValueError("no real HDF5 files found")
    cases = []
    for folder in map(Path, twins):
        report_path = folder / "report.json"
        if not report_path.is_file():
            raise FileNotFoundError(f"twin folder {folder} holds no report.json")
        report = json.loads(report_path.read_text())
        subject, geometry = twin_from_parameters(report["parameters"])
        names = report.get("input", {})
        wanted = [names.get("labels"), names.get("es")]
        pid = _patient(folder.name) or _patient(str(wanted[0]))
        same = sorted(f for f in files if pid is not None and _patient(f.name) == pid)
        chosen = []
        for k, want in enumerate(wanted):
            exact = [f for f in files if want and f.name == Path(want).name]
            if exact:
                chosen.append(exact[0])
            elif want is not None or k == 0:
                if len(same) > k:
                    chosen.append(same[k])
                elif k == 0:
                    raise ValueError(f"no real file matches the twin in {folder}")
        es_phase = report["parameters"].get("es_phase")
        if es_phase is None:
            chosen = chosen[:1]
        images, labels = [], []
        for f in chosen:
            image, label = read_image_label_h5(f)
            if image.shape != tuple(geometry.shape):
                raise ValueError(
                    f"{f} has shape {image.shape}; its twin's grid is "
                    f"{tuple(geometry.shape)}"
                )
            images.append(image)
            labels.append(label)
        phases = (0.0,) + ((float(es_phase),) if len(chosen) > 1 else ())
        cases.append(
            MaterialCase(
                name=folder.name,
                subject=subject,
                geometry=geometry,
                images=np.stack(images).astype(np.float32),
                labels=np.stack(labels).astype(np.uint8),
                phases=phases,
                spacing=spacing,
            )
        )
    return cases


def _window(case: MaterialCase, side: int):
    """Start ``(row, col)`` of the in-plane window centred on the labels."""
    rows, cols = np.nonzero(np.any(case.labels > 0, axis=(0, 1)))
    if rows.size == 0:
        raise ValueError(f"case {case.name} has no labelled voxel")
    centre = ((rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2)
    return tuple(int(c) - side // 2 for c in centre)


def _crop(array, start, side, nz):
    """``array (..., nz0, ny, nx)`` cut to ``(..., nz, side, side)`` from
    ``start`` (zero outside), and the validity mask ``(nz, side, side)``."""
    out = np.zeros(array.shape[:-3] + (nz, side, side), array.dtype)
    mask = np.zeros((nz, side, side), np.float32)
    r0, c0 = start
    ny, nx = array.shape[-2:]
    rs, re_ = max(r0, 0), min(r0 + side, ny)
    cs, ce = max(c0, 0), min(c0 + side, nx)
    nz0 = array.shape[-3]
    out[..., :nz0, rs - r0 : re_ - r0, cs - c0 : ce - c0] = array[..., rs:re_, cs:ce]
    mask[:nz0, rs - r0 : re_ - r0, cs - c0 : ce - c0] = 1.0
    return out, mask


def _prepare(cases, config: MaterialGLOConfig):
    """Stacked, padded arrays of every case (crop, anatomy, material coords)."""
    from jaxsim.geometry import ImageGeometry

    sy = float(cases[0].spacing[1])
    if any(abs(float(c.spacing[1]) - sy) > 1e-6 for c in cases):
        raise ValueError("every case must share one in-plane spacing")
    pool = max(1, round(config.loss_spacing / sy))
    side = pool * math.ceil(config.crop_mm / sy / pool)
    nz = max(c.images.shape[1] for c in cases)
    n_phases = max(len(c.phases) for c in cases)
    acq = MRAcquisition(oversample=config.oversample)
    keys = ("fractions", "coords", "twin_labels", "coil_maps", "real", "labels")
    out = {k: [] for k in keys + ("mask", "phase_weight")}
    for case in cases:
        start = _window(case, side)
        real, mask = _crop(case.images, start, side, nz)
        labels, _ = _crop(case.labels, start, side, nz)
        p = len(case.phases)
        phases = tuple(case.phases) + (0.0,) * (n_phases - p)
        a = jnp.asarray(case.geometry.affine)
        origin = a[:3, 3] + start[1] * a[:3, 0] + start[0] * a[:3, 1]
        geom = ImageGeometry(affine=a.at[:3, 3].set(origin), shape=(nz, side, side))
        box = material_box(case.subject, margin=config.box_margin)
        anatomy = prepare_anatomy(
            case.subject,
            geom,
            acq,
            cardiac_phases=phases,
            need_myo=False,
            material_box=box,
        )
        pad = ((0, n_phases - p), (0, 0), (0, 0), (0, 0))
        out["fractions"].append(np.asarray(anatomy.fractions, np.float32))
        out["coords"].append(np.asarray(anatomy.material_coords, np.float32))
        out["twin_labels"].append(task_labels(np.asarray(anatomy.labels), ACDC))
        out["coil_maps"].append(np.asarray(anatomy.coil_maps))
        out["real"].append(np.pad(real, pad))
        out["labels"].append(np.pad(labels, pad))
        out["mask"].append(mask)
        out["phase_weight"].append(np.asarray([1.0] * p + [0.0] * (n_phases - p)))
    data = {k: np.stack(v) for k, v in out.items()}
    return data, pool, acq


# ------------------------------------------------------------------ the loss
def _pooled(x, pool):
    *lead, h, w = x.shape
    return x.reshape(*lead, h // pool, pool, w // pool, pool).mean(axis=(-3, -1))


def fitted_gain(sim, real, weight):
    """Least-squares ``(a, b)`` of ``a * sim + b ~ real`` with weights, over
    the last three axes (one pair per leading index)."""
    axes = (-3, -2, -1)
    total = jnp.maximum(jnp.sum(weight, axes), 1e-12)
    ms = jnp.sum(weight * sim, axes) / total
    mr = jnp.sum(weight * real, axes) / total
    ds = sim - ms[..., None, None, None]
    dr = real - mr[..., None, None, None]
    var = jnp.sum(weight * ds * ds, axes)
    a = jnp.sum(weight * ds * dr, axes) / jnp.maximum(var, 1e-20)
    return a, mr - a * ms


def _mse_loss(sim, real, mask, phase_weight, pool):
    """``1 - R^2`` of the affine fit per phase, pooled, phase-weighted mean."""
    s, r = _pooled(sim, pool), _pooled(real, pool)
    w = jnp.broadcast_to(_pooled(mask, pool) > 0.5, s.shape).astype(s.dtype)
    a, b = fitted_gain(s, r, w)
    fit = a[..., None, None, None] * s + b[..., None, None, None]
    axes = (-3, -2, -1)
    total = jnp.maximum(jnp.sum(w, axes), 1e-12)
    mr = jnp.sum(w * r, axes) / total
    var = jnp.sum(w * (r - mr[..., None, None, None]) ** 2, axes)
    per_phase = jnp.sum(w * (fit - r) ** 2, axes) / jnp.maximum(var, 1e-20)
    return jnp.sum(phase_weight * per_phase) / jnp.maximum(jnp.sum(phase_weight), 1)


def _features(segmenter, x, levels):
    feats = []
    x = x[..., None]
    for layer in list(segmenter.down)[:levels]:
        x = layer(x)
        feats.append(x)
    return feats


def _feature_loss(segmenter, preprocessing, sim, real, mask, pw, spacing, levels):
    """Relative squared distance of segmenter encoder features (ED/ES slices
    with any real voxel), the simulation first mapped to the real scale."""
    a, b = fitted_gain(sim, real, jnp.broadcast_to(mask, sim.shape))
    fit = a[:, None, None, None] * sim + b[:, None, None, None]
    n_p, nz, h, w = sim.shape

    def prep(x):
        img, _ = resample_in_plane(
            x.reshape(-1, h, w),
            None,
            spacing,
            target_spacing=preprocessing.spacing,
            out_shape=preprocessing.shape,
        )
        return img

    fs, fr = prep(fit), prep(real)
    flat = fr.reshape(fr.shape[0], -1)
    k = max(1, math.ceil((1.0 - preprocessing.percentile / 100.0) * flat.shape[1]))
    scale = jnp.maximum(jax.lax.top_k(flat, k)[0][:, -1], 1e-12)[:, None, None]
    weight = (jnp.any(mask > 0, axis=(-2, -1))[None] * pw[:, None]).reshape(-1)
    loss = 0.0
    for f_s, f_r in zip(
        _features(segmenter, fs / scale, levels),
        _features(segmenter, fr / scale, levels),
        strict=True,
    ):
        num = jnp.mean((f_s - f_r) ** 2, axis=(1, 2, 3))
        den = jnp.mean(f_r**2, axis=(1, 2, 3)) + 1e-6
        loss = loss + jnp.sum(weight * num / den) / jnp.maximum(jnp.sum(weight), 1)
    return loss / levels


class _Problem:
    """The compiled objective and step of one run."""

    def __init__(self, config, data, pool, acq, spacing, segmenter=None):
        self.config, self.pool, self.acq = config, pool, acq
        self.spacing = spacing
        self.tissue = default_tissue_properties(config.field)
        self.sequence = BSSFPSequence()
        self.data = {k: jnp.asarray(v) for k, v in data.items()}
        self.segmenter = segmenter
        self.key = jax.random.key(0)  # noise is off: the key only fixes streams

    def simulate(self, material, i):
        d = self.data
        anatomy = Anatomy(
            fractions=d["fractions"][i],
            labels=d["twin_labels"][i],
            myo_mask=jnp.zeros(d["fractions"].shape[-3:], bool),
            coil_maps=d["coil_maps"][i],
            material_coords=d["coords"][i],
        )
        return acquire_cine(
            self.key, anatomy, self.tissue, self.sequence, self.acq, material=material
        )[0]

    def case_loss(self, material, i):
        d = self.data
        sim = self.simulate(material, i)
        real, mask, pw = d["real"][i], d["mask"][i], d["phase_weight"][i]
        loss = _mse_loss(sim, real, mask, pw, self.pool)
        if self.segmenter is not None and self.config.feature_weight > 0:
            model, preprocessing = self.segmenter
            loss = loss + self.config.feature_weight * _feature_loss(
                model, preprocessing, sim, real, mask, pw, self.spacing,
                self.config.feature_levels,
            )  # fmt: skip
        return loss


def _project(latents):
    norm = jnp.linalg.norm(latents, axis=-1, keepdims=True)
    return latents / jnp.maximum(norm, 1.0)


def _make_step(problem: _Problem, graphdef, tx):
    def loss_fn(params, idx):
        glo = nnx.merge(graphdef, params["generator"])
        maps = glo(params["latents"][idx])
        losses = jax.vmap(problem.case_loss)(maps, idx)
        return jnp.mean(losses), losses

    @jax.jit
    def step(params, opt_state, idx):
        (loss, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, idx)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        params = {**params, "latents": _project(params["latents"])}
        return params, opt_state, loss, losses

    return step


def _optimizer(config: MaterialGLOConfig):
    return optax.multi_transform(
        {
            "generator": optax.adam(config.learning_rate),
            "latents": optax.adam(config.latent_learning_rate),
        },
        {"generator": "generator", "latents": "latents"},
    )


def build_material_generator(config: MaterialGLOConfig) -> MaterialGLO:
    """The material generator of a configuration (weights from its seed)."""
    return MaterialGLO(
        latent_dim=config.latent_dim,
        grid=config.grid,
        channels=MATERIAL_CHANNELS,
        max_log=config.max_log,
        width=config.width,
        rngs=nnx.Rngs(config.seed),
    )


def _initial(config: MaterialGLOConfig, n_cases: int):
    graphdef, params = nnx.split(build_material_generator(config), nnx.Param)
    key = jax.random.fold_in(jax.random.key(config.seed), 1)
    latents = jax.random.normal(key, (n_cases, config.latent_dim))
    latents = _project(latents / math.sqrt(config.latent_dim))
    return graphdef, {"generator": params, "latents": latents}


def _batch_indices(config: MaterialGLOConfig, step: int, n: int):
    key = jax.random.fold_in(jax.random.key(config.seed), 2**20 + step)
    b = min(config.batch_size, n)
    return jax.random.choice(key, n, (b,), replace=False)


class MaterialGLOTrainer:
    """The prepared cases, compiled step and state of a material GLO run.

    Args:
        cases: :class:`MaterialCase` list.
        config: :class:`MaterialGLOConfig`.
        segmenter: optional ``(UNet model, Preprocessing)`` for the feature loss.

    Attributes:
        params: ``{"generator": MaterialGLO parameters, "latents": (N, K)}``.
        opt_state: the optimiser state (``tx``: one Adam per group).
        graphdef: the generator's graph (``nnx.merge(graphdef,
            params["generator"])`` is the network).
    """

    def __init__(self, cases, config: MaterialGLOConfig, *, segmenter=None):
        self.config = config
        self.data, self.pool, acq = _prepare(cases, config)
        spacing = tuple(float(s) for s in cases[0].spacing[1:])
        self.problem = _Problem(config, self.data, self.pool, acq, spacing, segmenter)
        self.graphdef, self.params = _initial(config, len(cases))
        self.tx = _optimizer(config)
        self.opt_state = self.tx.init(self.params)
        self.step_fn = _make_step(self.problem, self.graphdef, self.tx)
        self.n_cases = len(cases)

    def step(self, step: int) -> float:
        """Optimisation step number ``step`` (its cases follow from the seed and
        ``step``); returns the batch's loss."""
        idx = _batch_indices(self.config, step, self.n_cases)
        self.params, self.opt_state, loss, _ = self.step_fn(
            self.params, self.opt_state, idx
        )
        return float(loss)

    def generator(self) -> MaterialGLO:
        return nnx.merge(self.graphdef, self.params["generator"])


# ------------------------------------------------------------------ the run
def _check_run_dir(run_dir: Path, meta: dict, resume: bool, overwrite: bool):
    path = run_dir / "config.json"
    if not path.exists():
        return
    if not (resume or overwrite):
        raise FileExistsError(
            f"{run_dir} holds a material GLO run; resume it or choose another "
            "folder (overwrite=True / --force starts afresh)"
        )
    if resume:
        saved = json.loads(path.read_text())
        if saved.get("format") != MATERIAL_FORMAT:
            raise ValueError(f"{path} is not a material GLO run")
        new = json.loads(json.dumps(meta))  # tuples as the file holds them
        old = {**saved["config"], "steps": new["config"]["steps"]}
        if old != new["config"] or saved.get("cases") != new["cases"]:
            raise ValueError(
                f"the run in {run_dir} was configured differently (options or "
                "cases); resume it with its own (only the number of steps may "
                "change)"
            )


def _save(store, step, params, opt_state, meta):
    flat, layout = _to_store({"params": params, "opt_state": opt_state})
    store.save(step, flat, {**meta, "layout": layout, "step": step})


def _restore(store, params, opt_state):
    like, layout = _to_store({"params": params, "opt_state": opt_state})
    meta = store.read_meta()
    if meta.get("layout") != layout:
        raise ValueError(f"the checkpoint in {store.directory} holds another network")
    flat, meta = store.restore(like)
    state = _from_store(flat, {"params": params, "opt_state": opt_state})
    return state["params"], state["opt_state"], int(meta["step"])


def latent_gaussian(latents) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` (float64) of learned codes, with a
    ridge of 1e-4 so that one or two codes still give a proper Gaussian."""
    z = np.asarray(latents, np.float64)
    mean = z.mean(axis=0)
    cov = np.cov(z, rowvar=False) if len(z) > 1 else np.zeros((z.shape[1],) * 2)
    return mean, np.atleast_2d(cov) + 1e-4 * np.eye(z.shape[1])


def _draw(glo, mean, cov, key, n):
    chol = np.linalg.cholesky(cov)
    eps = jax.random.normal(key, (int(n), mean.shape[0]))
    z = _project(
        jnp.asarray(mean, jnp.float32) + eps @ jnp.asarray(chol.T, jnp.float32)
    )
    return glo(z)


def sample_materials(model_or_run_dir, key, n: int, *, latents=None) -> jax.Array:
    """New material maps from a Gaussian fitted to the learned codes.

    Args:
        model_or_run_dir: a material GLO run folder (``RUN_DIR`` or
            ``RUN_DIR/material``) or a :class:`~jaxsim.models.MaterialGLO`
            (then ``latents`` gives its learned codes).
        key: PRNG key.
        n: number of maps (>= 1).
        latents: ``(N, latent_dim)`` codes, with a model.

    Returns:
        ``(n, 9, g, g, g)`` float32 log-modulations.

    Raises:
        ValueError: ``n < 1``, or a model without ``latents``.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    if isinstance(model_or_run_dir, MaterialGLO):
        if latents is None:
            raise ValueError("latents are required with a MaterialGLO model")
        glo = model_or_run_dir
    else:
        glo, latents, _ = load_material_glo(model_or_run_dir)
    mean, cov = latent_gaussian(latents)
    return _draw(glo, mean, cov, key, n)


def _find_run(run_dir) -> Path:
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / "material"):
        if (folder / "config.json").exists():
            return folder
    raise FileNotFoundError(f"{run_dir} holds no material GLO run (no config.json)")


def load_material_glo(run_dir):
    """``(MaterialGLO, latents (N, d), config.json content)`` of a run's last
    checkpoint (``RUN_DIR`` or ``RUN_DIR/material``).

    Raises:
        FileNotFoundError: no run or no checkpoint.
        ValueError: the folder holds another kind of run.
    """
    folder = _find_run(run_dir)
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("format") != MATERIAL_FORMAT:
        raise ValueError(f"{folder / 'config.json'} is not a material GLO run")
    config = MaterialGLOConfig.from_json(meta["config"])
    graphdef, params = _initial(config, len(meta["cases"]))
    opt_state = _optimizer(config).init(params)
    with CheckpointStore(folder) as store:
        params, _, _ = _restore(store, params, opt_state)
    return nnx.merge(graphdef, params["generator"]), params["latents"], meta


def _evaluate(problem, maps, data, pool):
    """Per-case loss, full-resolution fitted simulations."""
    losses, sims = [], []
    for i, m in enumerate(maps):
        sim = np.asarray(jax.jit(problem.simulate)(m, i))
        losses.append(float(problem.case_loss(m, i)))
        sims.append(sim)
    return losses, sims


def _normalised(sim, real, mask):
    """Simulation mapped to the real scale (per phase), both divided by the real
    image's 99.5th percentile (inside the valid window)."""
    w = np.broadcast_to(mask, sim.shape)
    a, b = (np.asarray(v) for v in fitted_gain(jnp.asarray(sim), jnp.asarray(real),
                                                jnp.asarray(w)))  # fmt: skip
    fit = a[:, None, None, None] * sim + b[:, None, None, None]
    scale = max(float(np.percentile(real[w > 0], 99.5)), 1e-12)
    return fit / scale, real / scale


def _ks(data, sims):
    real_i, real_l, sim_i, sim_l = [], [], [], []
    for i, sim in enumerate(sims):
        fit, real = _normalised(sim, data["real"][i], data["mask"][i])
        for p in np.flatnonzero(data["phase_weight"][i]):
            valid = data["mask"][i] > 0
            real_i.append(real[p][valid])
            real_l.append(data["labels"][i][p][valid])
            sim_i.append(fit[p][valid])
            sim_l.append(data["twin_labels"][i][p][valid])
    cat = np.concatenate
    return tissue_ks((cat(real_i), cat(real_l)), (cat(sim_i), cat(sim_l)))


def _shown(image, window):
    """A slice inside its window, divided by its own 99th percentile there."""
    valid = window > 0
    top = np.percentile(image[valid], 99) if valid.any() else image.max()
    return window * image / max(float(top), 1e-12)


def _write_png(path, data, names, plain, learned, sampled, maps):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(4, len(names))
    cols = ("real", "twin", "twin + learned material", "twin + sampled material",
            "learned map (myo. T1)")  # fmt: skip
    fig, axes = plt.subplots(rows, 5, figsize=(12.5, 2.6 * rows), squeeze=False)
    for r in range(rows):
        lv = np.flatnonzero(np.any(data["labels"][r][0] == 3, axis=(1, 2)))
        k = int(lv[len(lv) // 2]) if lv.size else data["real"].shape[2] // 2
        mask = data["mask"][r]
        window = mask[k]
        panels = [_shown(data["real"][r][0, k], window)]
        for sim in (plain[r], learned[r], sampled[r]):
            fit, _ = _normalised(sim, data["real"][r], mask)
            panels.append(_shown(fit[0, k], window))
        for c, image in enumerate(panels):
            axes[r, c].imshow(np.clip(image, 0, 1.2), cmap="gray", vmin=0, vmax=1)
        g = maps[r].shape[-1]
        axes[r, 4].imshow(maps[r][4, :, :, g // 2].T, cmap="coolwarm", vmin=-0.5,
                          vmax=0.5, origin="lower")  # fmt: skip
        axes[r, 0].set_ylabel(names[r])
        for c in range(5):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(cols[c], fontsize=9)
    fig.tight_layout()
    with atomic_path(path, overwrite=True, what="material picture") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _read_rows(path: Path, upto: int) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {k: (int(v) if k == "step" else float(v)) for k, v in r.items()}
            for r in csv.DictReader(f)
            if int(r["step"]) <= upto
        ]


def train_material_glo(
    cases,
    config: MaterialGLOConfig,
    run_dir: str | os.PathLike,
    *,
    segmenter=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> MaterialGLOResult:
    """Train a material generator and per-case codes by GLO through the simulator.

    Writes ``config.json``, ``metrics.csv`` (loss per step, seconds),
    ``checkpoints/`` (generator, codes, optimiser state), ``report.json``
    (per-case loss without a material and with the learned one, per-structure
    KS distances of intensities against the real images, the codes' Gaussian,
    seconds per step) and ``material.png`` (real / twin / twin with the learned
    material / twin with a sampled material / a slice of the learned map).

    Args:
        cases: :class:`MaterialCase` list (:func:`load_material_cases`).
        config: :class:`MaterialGLOConfig`.
        run_dir: output folder.
        segmenter: optional ``(UNet model, Preprocessing)`` (e.g. from
            :func:`jaxsim.train.load_run`) for the feature loss.
        resume: continue the run in ``run_dir`` (only ``steps`` may differ); the
            result equals an uninterrupted run's.
        overwrite: start afresh in a folder that holds a run.
        progress: tqdm progress bar.
        until: stop (with a checkpoint) after this many steps.

    Raises:
        FileExistsError: ``run_dir`` holds a run, neither resume nor overwrite.
        ValueError: no cases, bad bounds for the tissue properties, a resumed
            run configured otherwise, a segmenter that is not a 2D U-Net.
        FloatingPointError: the loss became non-finite.
    """
    from tqdm.auto import tqdm

    cases = list(cases)
    if not cases:
        raise ValueError("cases must hold at least one MaterialCase")
    if not isinstance(config, MaterialGLOConfig):
        raise TypeError(f"config must be a MaterialGLOConfig; got {type(config)}")
    check_material_bounds(config.max_log, default_tissue_properties(config.field))
    if segmenter is not None and not (
        hasattr(segmenter[0], "down") and hasattr(segmenter[0], "bottom")
    ):
        raise ValueError(
            "segmenter must be a 2D UNet run (jaxsim train --model unet2d); got "
            f"{type(segmenter[0]).__name__}"
        )
    run_dir = Path(run_dir)
    meta = {
        "format": MATERIAL_FORMAT,
        "config": config.to_json(),
        "cases": [c.name for c in cases],
        "segmenter": segmenter is not None,
    }
    _check_run_dir(run_dir, meta, resume, overwrite)
    trainer = MaterialGLOTrainer(cases, config, segmenter=segmenter)
    problem, graphdef, data, pool = (
        trainer.problem,
        trainer.graphdef,
        trainer.data,
        trainer.pool,
    )
    params, opt_state, step_fn = trainer.params, trainer.opt_state, trainer.step_fn
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        import shutil

        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        for name in ("metrics.csv", "report.json", "material.png"):
            (run_dir / name).unlink(missing_ok=True)
    with atomic_path(
        run_dir / "config.json", overwrite=True, what="configuration"
    ) as t:
        t.write_text(json.dumps(meta, indent=1) + "\n")
    rows: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    with CheckpointStore(run_dir) as store:
        if resume and store.latest is not None:
            params, opt_state, step = _restore(store, params, opt_state)
            rows = _read_rows(run_dir / "metrics.csv", step)
        stop = config.steps if until is None else min(int(until), config.steps)
        bar = tqdm(total=config.steps, initial=step, desc="material GLO",
                   unit="step", disable=not progress)  # fmt: skip
        while step < stop:
            tic = time.perf_counter()
            idx = _batch_indices(config, step, len(cases))
            params, opt_state, loss, _ = step_fn(params, opt_state, idx)
            loss = float(loss)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became non-finite at step {step + 1}; lower the "
                    "learning rates or check the data"
                )
            step += 1
            rows.append({"step": step, "loss": loss,
                         "seconds": time.perf_counter() - tic})  # fmt: skip
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if step % config.checkpoint_every == 0 or step == stop:
                _save(store, step, params, opt_state, meta)
                _write_csv(run_dir / "metrics.csv", rows)
        bar.close()
    report = _report(problem, graphdef, params, data, pool, meta, rows, run_dir)
    return MaterialGLOResult(run_dir, step, rows, report, time.perf_counter() - t0)


def _report(problem, graphdef, params, data, pool, meta, rows, run_dir):
    glo = nnx.merge(graphdef, params["generator"])
    latents = params["latents"]
    maps = np.asarray(glo(latents))
    zero = np.zeros_like(maps)
    before, plain = _evaluate(problem, zero, data, pool)
    after, learned = _evaluate(problem, maps, data, pool)
    mean, cov = latent_gaussian(latents)
    drawn = np.asarray(_draw(glo, mean, cov, jax.random.key(1), len(maps)))
    _, sampled = _evaluate(problem, drawn, data, pool)
    timed = [r["seconds"] for r in rows[1:]] or [r["seconds"] for r in rows]
    report = {
        "cases": {
            name: {"loss_without_material": b, "loss_learned": a}
            for name, b, a in zip(meta["cases"], before, after, strict=True)
        },
        "mean_loss_without_material": float(np.mean(before)),
        "mean_loss_learned": float(np.mean(after)),
        "ks_without_material": _ks(data, plain),
        "ks_learned": _ks(data, learned),
        "ks_sampled": _ks(data, sampled),
        "latent_gaussian": {"mean": mean.tolist(), "covariance": cov.tolist()},
        "latent_norms": np.linalg.norm(np.asarray(latents), axis=1).tolist(),
        "steps": len(rows) and rows[-1]["step"],
        "seconds_per_step": float(np.median(timed)) if timed else None,
        "config": meta["config"],
    }
    with atomic_path(run_dir / "report.json", overwrite=True, what="report") as tmp:
        tmp.write_text(json.dumps(report, indent=1, allow_nan=True) + "\n")
    _write_png(run_dir / "material.png", data, meta["cases"], plain, learned,
               sampled, maps)  # fmt: skip
    return report
