"""Sim-FL: federated simulation (seed paper 004) as a federated task.

The shared arrays are three networks under prefixes: ``shape/`` (the GLO shape
generator, :class:`~jaxsim.models.ShapeGLO`), ``material/`` (the material
generator, :class:`~jaxsim.models.MaterialGLO`) and ``unet/`` (the segmentation
network). A run goes through three stages, by round:

1. ``shape_rounds`` rounds of shape GLO: each site fits the shared generator and
   its own latents and poses to its training label maps through the
   rasteriser (``shape_steps`` steps; round 1 first runs the warm start);
2. ``material_rounds`` rounds of material GLO: each site first turns its
   training cases into twins with the final shape generator (its latents and
   poses refitted with the generator frozen, ``invert_steps`` steps), then fits
   the shared material generator and its own material codes to its real cines
   through the MR simulator (``material_steps`` steps per round);
3. the remaining rounds train the U-Net by the strategy on data each site
   renders: in its first segmentation round a site trains its own SPADE
   enhancer on pairs (its twins rendered with their materials, its real
   slices; ``enhancer_steps`` steps; 0 skips it), draws ``sim_subjects`` new
   subjects and materials from the shared generators (Gaussians of its own
   codes), renders their ED and ES cines, enhances them and keeps the labelled
   slices; every round it trains the global U-Net on them (``local_steps``).
   At the end each site fine-tunes the global U-Net on its real slices
   (``finetune_steps``).

Latents, poses, material codes, the enhancer and the rendered slices stay at
the site (its local state); only the three networks' parameters travel, and a
stage leaves the other networks' arrays exactly as they arrived (the server
keeps parameters that no site changed). Evaluation reports the reconstruction
Dice of the site's held-out cases by the shape generator (GLO inversion with the
generator frozen, ``glo-dice-*``) at the end of the shape stage, and the U-Net's
Dice/HD95/ASSD on them in the segmentation stage.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsim.labels import ACDC, task_labels
from jaxsim.phantoms import end_systolic_phase, short_axis_geometry
from jaxsim.train import (
    STRUCTURES,
    EnhancerConfig,
    EnhancerPairs,
    EnhancerTrainer,
    GLOCase,
    MaterialCase,
    MaterialGLOConfig,
    MaterialGLOTrainer,
    ShapeGLOConfig,
    ShapeGLOTrainer,
    SliceData,
    build_material_generator,
    build_shape_generator,
    enhance_batch,
    fit_latent_gaussian,
    glo_reconstruction,
    sample_materials,
    sample_shapes,
)

from ._config import FederatedConfig
from ._local import build_network, local_train, preprocessing
from ._sites import Site, site_seed
from ._state import from_arrays, to_arrays
from ._tasks import FederatedTask, LocalResult, scores_with_finetune

__all__ = [
    "SimFLTask",
    "centralised_shape_glo",
    "enhancer_config",
    "glo_heldout",
    "material_config",
    "shape_config",
]

# CPU-sized defaults of the shared generators and the site's enhancer
# (``FederatedConfig.shape_options`` etc. override them).
_SHAPE_DEFAULTS: dict = {"warm_steps": 100}
_MATERIAL_DEFAULTS: dict = {}
_ENHANCER_DEFAULTS: dict = {"ngf": 16, "hidden": 32, "ndf": 32}


def _tuples(options: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def shape_config(config: FederatedConfig, seed: int | None = None) -> ShapeGLOConfig:
    """The shape GLO settings of a run (``seed``: a site's latents and order)."""
    opts = {**_SHAPE_DEFAULTS, **_tuples(config.shape_options)}
    return ShapeGLOConfig(**{**opts, "seed": config.seed if seed is None else seed})


def material_config(
    config: FederatedConfig, seed: int | None = None
) -> MaterialGLOConfig:
    """The material GLO settings of a run (``seed``: a site's codes and order)."""
    opts = {**_MATERIAL_DEFAULTS, **_tuples(config.material_options)}
    return MaterialGLOConfig(**{**opts, "seed": config.seed if seed is None else seed})


def enhancer_config(config: FederatedConfig, seed: int | None = None) -> EnhancerConfig:
    """A site's enhancer settings: the U-Net's slice layout, ``enhancer_steps``."""
    opts = {**_ENHANCER_DEFAULTS, **_tuples(config.enhancer_options)}
    return EnhancerConfig(
        **{**opts, "steps": config.enhancer_steps, "shape": tuple(config.shape),
           "spacing": config.spacing,
           "seed": config.seed if seed is None else seed}
    )  # fmt: skip


def _site_seed(config: FederatedConfig, site: Site) -> int:
    return (config.seed + site_seed(site.name)) % 2**31


def _sub(arrays: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _prefixed(arrays: dict, prefix: str) -> dict:
    return {prefix + k: np.asarray(v) for k, v in arrays.items()}


_STAGES = ("shape", "material", "segment")


def _stage(config: FederatedConfig, server_round: int) -> str:
    if server_round <= config.shape_rounds:
        return "shape"
    if server_round <= config.shape_rounds + config.material_rounds:
        return "material"
    return "segment"


# ------------------------------------------------------------ the site's cases
def glo_cases(cases, phases) -> list[tuple[GLOCase, object, object]]:
    """A site's cases grouped by patient: ``(GLOCase, ED case, ES case or
    None)``. A patient with a lone frame (ED, or an ES frame held out alone) is
    fitted as the generator's end-diastolic shape."""
    patients: dict[str, dict] = {}
    for case in cases:
        patient, phase = phases[case.name]
        key = patient if phase in ("ED", "ES") else case.name
        patients.setdefault(key, {})[phase or "ED"] = case
    out = []
    for name, slot in sorted(patients.items()):
        ed = slot.get("ED", slot.get("ES"))
        es = slot.get("ES") if "ED" in slot else None
        glo = GLOCase(
            name,
            np.asarray(ed.labels, np.uint8),
            ed.geometry,
            labels_es=None if es is None else np.asarray(es.labels, np.uint8),
        )
        out.append((glo, ed, es))
    return out


def _set_generator(trainer: ShapeGLOTrainer, arrays: dict) -> None:
    model = from_arrays(trainer.generator(), arrays)
    _, gparams, _ = nnx.split(model, nnx.Param, ...)
    trainer.params = {**trainer.params, "generator": gparams}


class _SiteState:
    """What a site builds once per process (compiled steps, prepared cases)."""

    def __init__(self, config: FederatedConfig, site: Site):
        self.config, self.site = config, site
        self.seed = _site_seed(config, site)
        self.train_cases = glo_cases(site.train, site.phases)
        self.test_cases = glo_cases(site.test, site.phases)
        self._shape = None
        self._material = None

    # shape GLO on the training cases (generator trained)
    def shape_trainer(self) -> ShapeGLOTrainer:
        if self._shape is None:
            self._shape = ShapeGLOTrainer(
                [c[0] for c in self.train_cases], shape_config(self.config, self.seed)
            )
        return self._shape

    def inversion(self, cases, generator: dict, local: dict | None, steps: int):
        """GLO inversion: latents and poses of ``cases`` fitted with the
        generator ``generator`` frozen (from ``local``'s latents and poses, else
        from the warm start); returns the trainer."""
        cfg = shape_config(self.config, self.seed)
        trainer = ShapeGLOTrainer([c[0] for c in cases], cfg, train_generator=False)
        _set_generator(trainer, generator)
        if local:
            trainer.params = {
                **trainer.params,
                **{k: jnp.asarray(local[f"shape/{k}"])
                   for k in ("latents", "rotation", "translation")},
            }  # fmt: skip
            trainer.step_count = cfg.warm_steps
        trainer.opt_state = trainer.tx.init(trainer.params)
        stop = cfg.warm_steps + steps
        while trainer.step_count < stop:
            trainer.step()
        return trainer

    def material_trainer(self, generator: dict, local: dict):
        """``(MaterialGLOTrainer, MaterialCase list, twin Dice)``: the material
        problem on the site's twins, built at the first call (the twins come from
        the final shape generator ``generator``, with ``local``'s latents and
        poses refitted with it frozen) and kept for the run."""
        if self._material is None:
            twins = self.inversion(
                self.train_cases, generator, local, self.config.invert_steps
            )
            recon = glo_reconstruction(twins, [c[0] for c in self.train_cases])
            mcases = []
            for (glo, ed, es), r in zip(self.train_cases, recon, strict=True):
                frames = [ed] + ([es] if es is not None else [])
                phases = (0.0,) + (
                    (float(end_systolic_phase(r["subject"])),) if es is not None else ()
                )
                mcases.append(
                    MaterialCase(
                        name=glo.name,
                        subject=r["subject"],
                        geometry=r["geometry"],
                        images=np.stack([np.asarray(f.image) for f in frames]).astype(
                            np.float32
                        ),
                        labels=np.stack([np.asarray(f.labels) for f in frames]).astype(
                            np.uint8
                        ),
                        phases=phases,
                        spacing=tuple(float(s) for s in ed.spacing),
                    )
                )
            self._material = (
                MaterialGLOTrainer(mcases, material_config(self.config, self.seed)),
                mcases,
                _mean_dice(recon, "twin-dice-"),
            )
        return self._material


_STATES: dict[tuple, _SiteState] = {}


def _state(config: FederatedConfig, site: Site) -> _SiteState:
    """The site's prepared pieces (a process may serve several sites, as a
    Flower actor does; the pieces of another run's configuration are dropped)."""
    text = config.dumps()
    key = (site.name, text, tuple(c.name for c in site.train))
    if key not in _STATES:
        for old in [k for k in _STATES if k[1] != text]:
            del _STATES[old]
        _STATES[key] = _SiteState(config, site)
    return _STATES[key]


def _set_material_generator(trainer: MaterialGLOTrainer, arrays: dict) -> None:
    model = from_arrays(trainer.generator(), arrays)
    trainer.params = {**trainer.params, "generator": nnx.split(model, nnx.Param)[1]}


# ------------------------------------------------------------ rendering
def _render_volume(key, subject, geometry, material, phases):
    """Magnitude cine ``(P, nz, ny, nx)`` float32 and ACDC labels (uint8)."""
    from jaxsim.mr import simulate_cine

    cine = simulate_cine(
        key, subject, geometry, cardiac_phases=tuple(phases), material=material
    )
    image = np.asarray(jnp.abs(cine.image), np.float32)
    labels = task_labels(np.asarray(cine.labels), ACDC).astype(np.uint8)
    return image, labels


def _heart_slices(prep, image, labels, spacing_yx):
    """The slices of a volume that show the heart, at the network's layout."""
    img, lab = prep.volume_slices(image, labels, spacing_yx)
    img, lab = np.asarray(img, np.float32), np.asarray(lab, np.uint8)
    keep = np.flatnonzero((lab > 0).any(axis=(1, 2)))
    return img[keep], lab[keep]


def _mean_dice(recon, prefix: str) -> dict:
    """Per structure, Dice of :func:`glo_reconstruction` results averaged over
    each case's frames, then over the cases."""
    return {
        prefix + s: float(
            np.mean([np.mean([d[s] for d in r["dice"].values()]) for r in recon])
        )
        for s in STRUCTURES
    }


def _enhancer_pairs(state: _SiteState, mcases, glo_material, latents) -> EnhancerPairs:
    """The site's twins ``mcases`` rendered with their own material maps,
    paired with its real slices."""
    maps = np.asarray(glo_material(jnp.asarray(latents)))
    prep = preprocessing(state.config)
    root = jax.random.key(state.seed)
    parts = {k: [] for k in ("labels", "physics", "real", "real_labels")}
    names = []
    for i, case in enumerate(mcases):
        image, labels = _render_volume(
            jax.random.fold_in(root, i), case.subject, case.geometry,
            jnp.asarray(maps[i]), case.phases,
        )  # fmt: skip
        for p in range(len(case.phases)):
            sy = case.spacing[1:]
            p_img, p_lab = prep.volume_slices(image[p], labels[p], sy)
            r_img, r_lab = prep.volume_slices(case.images[p], case.labels[p], sy)
            p_lab, r_lab = np.asarray(p_lab, np.uint8), np.asarray(r_lab, np.uint8)
            keep = np.flatnonzero(
                (p_lab > 0).any(axis=(1, 2)) | (r_lab > 0).any(axis=(1, 2))
            )
            parts["labels"].append(p_lab[keep])
            parts["physics"].append(np.asarray(p_img, np.float32)[keep])
            parts["real"].append(np.asarray(r_img, np.float32)[keep])
            parts["real_labels"].append(r_lab[keep])
            names += [f"{case.name}:{p}:{k}" for k in keep]
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return EnhancerPairs(**arrays, names=tuple(names))


def _render_dataset(config, state, shape_arrays, glo_material, local, enhancer):
    """``sim_subjects`` new subjects and materials drawn from the shared
    generators with the site's code Gaussians, rendered at ED and ES on a
    short-axis stack at the network's pixel size, enhanced: ``(images,
    labels)`` slices (``enhancer=None``: the normalised physics renderings)."""
    shape_trainer = state.shape_trainer()
    _set_generator(shape_trainer, shape_arrays)
    generator = shape_trainer.generator()
    gaussian = fit_latent_gaussian(np.asarray(local["shape/latents"]))
    key = jax.random.fold_in(jax.random.key(state.seed), 7)
    subjects = sample_shapes(generator, jax.random.fold_in(key, 0), config.sim_subjects,
                             gaussian=gaussian)  # fmt: skip
    maps = sample_materials(
        glo_material, jax.random.fold_in(key, 1), config.sim_subjects,
        latents=local["material/latents"],
    )  # fmt: skip
    prep = preprocessing(config)
    nz = max(int(c.geometry.shape[0]) for c in state.site.train)
    sz = float(state.site.train[0].spacing[0])
    images, labels = [], []
    for i in range(config.sim_subjects):
        subject = jax.tree.map(lambda a, i=i: a[i], subjects)
        geom = short_axis_geometry(
            subject, spacing=(sz, config.spacing, config.spacing),
            shape=(nz, *config.shape),
        )  # fmt: skip
        phases = (0.0, float(end_systolic_phase(subject)))
        image, lab = _render_volume(
            jax.random.fold_in(key, 100 + i), subject, geom, maps[i], phases
        )
        for p in range(len(phases)):
            img, lb = _heart_slices(prep, image[p], lab[p], (config.spacing,) * 2)
            images.append(img)
            labels.append(lb)
    images, labels = np.concatenate(images), np.concatenate(labels)
    if len(images) == 0:
        raise ValueError(
            f"site {state.site.name!r}: the rendered subjects show no heart on the "
            "short-axis stack"
        )
    if enhancer is None:
        return images, labels
    enhanced = enhance_batch(enhancer, images, labels)
    return np.asarray(enhanced, np.float32), labels


def _train_enhancer(config, state, pairs) -> tuple[dict, dict]:
    trainer = EnhancerTrainer(enhancer_config(config, state.seed), pairs)
    losses = []
    for _ in range(config.enhancer_steps):
        losses.append(trainer.step())
    metrics = {
        f"enhancer-{k}": float(np.mean([row[k] for row in losses[-10:]]))
        for k in losses[-1]
    }
    return trainer, metrics


# ------------------------------------------------------------ the task
class SimFLTask(FederatedTask):
    """Federated simulation: shared shape and material generators, a site-local
    enhancer, a U-Net trained by the strategy on rendered data, fine-tuned at
    each site on its real slices at the end."""

    name = "sim-fl"

    def initial_arrays(self, config):
        shape = to_arrays(build_shape_generator(shape_config(config)))
        material = to_arrays(build_material_generator(material_config(config)))
        unet = to_arrays(build_network(config))
        return {
            **_prefixed(shape, "shape/"),
            **_prefixed(material, "material/"),
            **_prefixed(unet, "unet/"),
        }

    def network_arrays(self, arrays):
        return _sub(arrays, "unet/")

    def local_update(self, config, site, data, arrays, server_round, local_state):
        stage = _stage(config, server_round)
        state = _state(config, site)
        t0 = time.perf_counter()
        local = dict(local_state)
        out = dict(arrays)
        metrics: dict = {"stage": float(_STAGES.index(stage) + 1)}
        if stage == "shape":
            trainer = state.shape_trainer()
            _set_generator(trainer, _sub(arrays, "shape/"))
            cfg = trainer.config
            if "shape/latents" in local:
                trainer.params = {
                    **trainer.params,
                    **{k: jnp.asarray(local[f"shape/{k}"])
                       for k in ("latents", "rotation", "translation")},
                }  # fmt: skip
            trainer.opt_state = trainer.tx.init(trainer.params)
            first = server_round == 1
            trainer.step_count = (
                0 if first else cfg.warm_steps + (server_round - 1) * config.shape_steps
            )
            stop = cfg.warm_steps + server_round * config.shape_steps
            rows = []
            while trainer.step_count < stop:
                rows.append(trainer.step())
            dice = [r["loss"] for r in rows if r["stage"] == "dice"]
            metrics["loss"] = float(np.mean(dice)) if dice else float(rows[-1]["loss"])
            _check_finite(site, server_round, metrics["loss"])
            out.update(_prefixed(to_arrays(trainer.generator()), "shape/"))
            for k in ("latents", "rotation", "translation"):
                local[f"shape/{k}"] = np.asarray(trainer.params[k])
            n = trainer.n_cases
        elif stage == "material":
            mtrainer, mcases, twin_dice = state.material_trainer(
                _sub(arrays, "shape/"), local
            )
            _set_material_generator(mtrainer, _sub(arrays, "material/"))
            if "material/latents" in local:
                mtrainer.params = {
                    **mtrainer.params,
                    "latents": jnp.asarray(local["material/latents"]),
                }
            mtrainer.opt_state = mtrainer.tx.init(mtrainer.params)
            first = (server_round - config.shape_rounds - 1) * config.material_steps
            losses = [mtrainer.step(first + j) for j in range(config.material_steps)]
            metrics["loss"] = float(np.mean(losses))
            metrics.update(twin_dice)
            _check_finite(site, server_round, metrics["loss"])
            out.update(_prefixed(to_arrays(mtrainer.generator()), "material/"))
            local["material/latents"] = np.asarray(mtrainer.params["latents"])
            n = len(mcases)
        else:
            if "sim/images" not in local:
                mtrainer, mcases, _ = state.material_trainer(
                    _sub(arrays, "shape/"), local
                )
                _set_material_generator(mtrainer, _sub(arrays, "material/"))
                glo_material = mtrainer.generator()
                generator = None  # enhancer_steps=0: the physics renderings
                if config.enhancer_steps:
                    pairs = _enhancer_pairs(
                        state, mcases, glo_material, local["material/latents"]
                    )
                    enhancer, enh_metrics = _train_enhancer(config, state, pairs)
                    metrics.update(enh_metrics)
                    generator = enhancer.generator()
                    local.update(_prefixed(to_arrays(generator), "enhancer/"))
                images, labels = _render_dataset(
                    config, state, _sub(arrays, "shape/"), glo_material, local,
                    generator,
                )  # fmt: skip
                local["sim/images"], local["sim/labels"] = images, labels
            sim = SliceData(local["sim/images"], local["sim/labels"], kind="sim")
            mu = config.proximal_mu if config.strategy == "fedprox" else 0.0
            new, seg_metrics = local_train(
                config, site, sim, _sub(arrays, "unet/"),
                server_round=server_round, steps=config.local_steps, mu=mu,
            )  # fmt: skip
            metrics.update(loss=seg_metrics["loss"])
            out.update(_prefixed(new, "unet/"))
            n = len(sim)
        metrics["seconds"] = time.perf_counter() - t0
        return LocalResult(out, int(n), metrics, local)

    def evaluate(self, config, site, data, arrays, server_round, local_state, final):
        stage = _stage(config, server_round)
        out: dict = {}
        if stage == "shape" and server_round == config.shape_rounds:
            out.update(glo_heldout(config, site, _sub(arrays, "shape/")))
        if stage == "segment":
            out.update(
                scores_with_finetune(
                    config, site, data, _sub(arrays, "unet/"), server_round, final
                )
            )
        out.setdefault("num-examples", len(site.test))
        return out


def glo_heldout(config: FederatedConfig, site: Site, generator: dict) -> dict:
    """Reconstruction Dice of the site's held-out cases by the shape generator
    ``generator`` (flat arrays): latents and poses fitted with the generator
    frozen (warm start, then ``invert_steps`` rasteriser steps), Dice per
    structure averaged over the cases' ED (and ES) frames: ``glo-dice-LV``,
    ``glo-dice-MYO``, ``glo-dice-RV``, ``glo-dice-mean``."""
    state = _state(config, site)
    trainer = state.inversion(state.test_cases, generator, None, config.invert_steps)
    recon = glo_reconstruction(trainer, [c[0] for c in state.test_cases])
    out = _mean_dice(recon, "glo-dice-")
    out["glo-dice-mean"] = float(np.mean([out[f"glo-dice-{s}"] for s in STRUCTURES]))
    return out


def _check_finite(site, server_round, loss):
    if not np.isfinite(loss):
        raise FloatingPointError(
            f"site {site.name!r}: the loss became non-finite in round {server_round}"
        )


def centralised_shape_glo(config: FederatedConfig, site_dirs, *, progress=False):
    """The baseline of the shape stage: one shape generator trained centrally on
    the union of the sites' training patients, with as many rasteriser steps as
    the federated stage takes over all sites (``shape_rounds * shape_steps`` per
    site, after the warm start), then scored as Sim-FL scores its generator: the
    reconstruction Dice of each site's held-out patients (:func:`glo_heldout`).

    Args:
        config: the run's settings (its ``shape_*`` fields).
        site_dirs: the site folders.
        progress: a progress bar over steps.

    Returns:
        ``{"rows": [{"site", "method": "centralised-glo", "status": "ok",
        "glo-dice-*"...}], "seconds": wall time, "steps": rasteriser steps}``.
    """
    from tqdm.auto import tqdm

    from ._client import site_data

    t0 = time.perf_counter()
    sites = [site_data(config, d)[0] for d in site_dirs]
    pooled = Site(
        name="pooled",
        train=tuple(c for s in sites for c in s.train),
        test=(),
        split="patient",
        phases={k: v for s in sites for k, v in s.phases.items()},
    )
    names = [c.name for c in pooled.train]
    if len(set(names)) != len(names):
        raise ValueError("the sites share case names; pooling them is ambiguous")
    state = _SiteState(config, pooled)
    trainer = state.shape_trainer()
    _set_generator(trainer, to_arrays(build_shape_generator(shape_config(config))))
    steps = config.shape_rounds * config.shape_steps * len(sites)
    stop = trainer.config.warm_steps + steps
    for _ in tqdm(range(stop), desc="centralised GLO", disable=not progress):
        row = trainer.step()
        _check_finite(pooled, 0, row["loss"])
    generator = to_arrays(trainer.generator())
    rows = []
    for site in sites:
        scores = glo_heldout(config, site, generator)
        rows.append({"site": site.name, "method": "centralised-glo",
                     "status": "ok", "test-volumes": len(site.test),
                     **scores})  # fmt: skip
    return {"rows": rows, "seconds": time.perf_counter() - t0, "steps": steps}
