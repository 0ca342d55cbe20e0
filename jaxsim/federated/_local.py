"""What a site computes: local training steps from given parameters, and the
evaluation of a network on its held-out cases.

A local step splits the network (``nnx.split(model, nnx.Param, ...)``),
differentiates the parameters, applies Adam and merges back; with FedProx the
loss gains ``mu/2 ||w - w_global||^2``. The batches of a site's round depend on
the seed, the site's name, the round and the step only, so the same round
computed anywhere (in process, in a Flower actor, after a resume) gives the same
parameters.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsim.labels import ACDC
from jaxsim.models import build_model
from jaxsim.random import stream
from jaxsim.train import (
    STRUCTURES,
    Augmentation,
    Preprocessing,
    SliceData,
    TrainConfig,
    augment,
    evaluate_cases,
    make_objective,
    model_options,
    segment_volume,
)

from ._config import FederatedConfig
from ._sites import Site, site_seed
from ._state import from_arrays, to_arrays

__all__ = [
    "build_network",
    "local_train",
    "evaluate_site",
    "export_network",
    "preprocessing",
]


def _train_config(config: FederatedConfig) -> TrainConfig:
    return TrainConfig(
        model=config.model,
        model_options=config.model_options,
        shape=config.shape,
        spacing=config.spacing,
        loss=config.loss,
        batch_size=config.batch_size,
        steps=config.local_steps,
        seed=config.seed,
    )


def preprocessing(config: FederatedConfig) -> Preprocessing:
    """How the sites bring their images to the network."""
    return Preprocessing(shape=config.shape, spacing=config.spacing)


def build_network(config: FederatedConfig) -> nnx.Module:
    """The run's network with its initial weights (seeded by ``config.seed``),
    in training mode.

    Raises:
        ValueError: a 3D or unknown network, or options it does not take.
    """
    if config.model == "unet3d":
        raise ValueError("model must be a 2D network for federated runs; got 'unet3d'")
    train_config = _train_config(config)
    options = model_options(train_config)
    try:
        return build_model(
            config.model,
            in_channels=1,
            out_channels=ACDC.n_classes,
            spatial_dims=2,
            rngs=nnx.Rngs(config.seed),
            **options,
        )
    except TypeError as err:
        raise ValueError(f"model options {options} for {config.model}: {err}") from None


@functools.cache
def _objective(loss: str):
    # one function object per loss: compiled steps are cached on it
    return make_objective(TrainConfig(loss=loss))


@functools.cache
def _step(graphdef, loss: str, learning_rate: float, augmented: bool):
    """The jitted local step of a network layout and settings (compiled once
    per process and reused by every round and site)."""
    objective = _objective(loss)
    tx = optax.adam(learning_rate)
    augmentation = Augmentation() if augmented else None

    def step(params, rest, opt_state, anchor, mu, key, images, labels):
        if augmentation is not None:
            images, labels = augment(key, images, labels, augmentation)

        def loss_fn(params, rest):
            model = nnx.merge(graphdef, params, rest)
            model.train()
            task_loss = objective(model, images, labels)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            # FedProx's proximal term (mu = 0 for FedAvg: one compiled step)
            sq = jax.tree_util.tree_map(
                lambda p, a: jnp.sum((p - a) ** 2), params, anchor
            )
            total = task_loss + 0.5 * mu * sum(jax.tree_util.tree_leaves(sq))
            return total, (task_loss, rest)

        (_, (task_loss, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, rest
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, rest, opt_state, task_loss

    return jax.jit(step)


def local_train(
    config: FederatedConfig,
    site: Site,
    data: SliceData,
    arrays: dict[str, np.ndarray],
    *,
    server_round: int,
    steps: int,
    purpose: str = "train",
    mu: float = 0.0,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``steps`` Adam steps on the site's slices from the parameters ``arrays``.

    Args:
        config: the run's settings.
        site: the site (its name seeds the batches).
        data: the site's training slices.
        arrays: starting parameters (``to_arrays`` layout).
        server_round: the round (seeds the batches).
        steps: optimisation steps.
        purpose: the PRNG stream (``"train"`` for rounds, ``"finetune"``).
        mu: FedProx's proximal weight (0: none); the anchor is ``arrays``.

    Returns:
        ``(new parameters, {"loss": mean task loss, "seconds": wall time})``.

    Raises:
        FloatingPointError: the loss stopped being finite.
    """
    t0 = time.perf_counter()
    model = from_arrays(build_network(config), arrays)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    anchor = jax.tree_util.tree_map(jnp.array, params)
    step = _step(graphdef, config.loss, float(config.learning_rate), config.augment)
    mu = jnp.asarray(mu, jnp.float32)
    opt_state = optax.adam(config.learning_rate).init(params)
    base = stream(jax.random.key(config.seed), f"federated.{purpose}")
    base = jax.random.fold_in(
        jax.random.fold_in(base, site_seed(site.name)), server_round
    )
    losses = []
    for s in range(steps):
        key = jax.random.fold_in(base, s)
        images, labels = data.batch(jax.random.fold_in(key, 0), config.batch_size)
        params, rest, opt_state, loss = step(
            params,
            rest,
            opt_state,
            anchor,
            mu,
            jax.random.fold_in(key, 1),
            images,
            labels,
        )
        losses.append(loss)
    losses = [float(v) for v in losses]
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError(
            f"site {site.name!r}: the training loss became non-finite in round "
            f"{server_round}; lower learning_rate"
        )
    nnx.update(model, params, rest)
    metrics = {"loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0}
    return to_arrays(model), metrics


def evaluate_site(
    config: FederatedConfig,
    site: Site,
    arrays: dict[str, np.ndarray],
    *,
    distances: bool = True,
) -> dict[str, float]:
    """Dice (and with ``distances`` HD95 and ASSD, mm) of the network ``arrays``
    on the site's held-out cases, averaged over cases per structure.

    Whole volumes are segmented as ``jaxsim segment`` does
    (:func:`jaxsim.train.segment_volume`); surface distances cost far more than
    Dice, so rounds before the last report Dice only.

    Returns:
        ``{"dice-LV", "dice-MYO", "dice-RV", "dice-mean", "num-examples"}``
        (``num-examples``: held-out volumes) and, with ``distances``,
        ``"hd95-LV"``, ..., ``"assd-RV"``.
    """
    from jaxsim.metrics import dice_score, mean_sd

    model = from_arrays(build_network(config), arrays)
    model.eval()
    prep = preprocessing(config)
    out: dict[str, float] = {}
    if distances:
        rows = evaluate_cases(model, prep, list(site.test), site.phases, tta=config.tta)
        for structure in STRUCTURES:
            part = [r for r in rows if r["structure"] == structure]
            out[f"dice-{structure}"] = mean_sd(r["dice"] for r in part)[0]
            out[f"hd95-{structure}"] = mean_sd(r["hd95_mm"] for r in part)[0]
            out[f"assd-{structure}"] = mean_sd(r["assd_mm"] for r in part)[0]
    else:
        scores = []
        for case in site.test:
            pred = segment_volume(
                model, case.image, case.spacing, prep, n_classes=ACDC.n_classes,
                tta=config.tta,
            )  # fmt: skip
            scores.append(
                dice_score(pred, case.labels, labels=list(STRUCTURES.values()))
            )
        for structure, value in STRUCTURES.items():
            out[f"dice-{structure}"] = float(np.mean([d[value] for d in scores]))
    out["dice-mean"] = float(np.mean([out[f"dice-{s}"] for s in STRUCTURES]))
    out["num-examples"] = len(site.test)
    return out


def export_network(
    config: FederatedConfig, arrays: dict[str, np.ndarray], run_dir, *, sites=()
) -> None:
    """Write the network ``arrays`` as a training run folder (``config.json`` and
    an orbax checkpoint) that :func:`jaxsim.train.load_run` and ``jaxsim segment
    --model`` read, in ``run_dir`` (replaced if it holds one).

    Args:
        config: the federated run's settings (network, input layout).
        arrays: the network's parameters.
        run_dir: the folder to write.
        sites: names of the sites that trained it (recorded).
    """
    import json
    import shutil
    from pathlib import Path

    from jaxsim.io import CheckpointStore, atomic_path
    from jaxsim.models import model_config
    from jaxsim.train import Trainer

    run_dir = Path(run_dir)
    train_config = _train_config(config)
    model = from_arrays(build_network(config), arrays)
    prep = preprocessing(config)
    meta = {
        "format": "jaxsim-run",  # jaxsim.train's run folder
        "config": train_config.to_json(),
        "model": model_config(model),
        "preprocessing": {"shape": list(prep.shape), "spacing": prep.spacing,
                          "percentile": prep.percentile, "slices": None},
        "labels": {"scheme": ACDC.name, "classes": list(ACDC.classes)},
        "data": {"kind": "federated", "task": config.task,
                 "strategy": config.strategy, "sites": list(sites)},
    }  # fmt: skip
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(train_config, model, make_objective(train_config), data=None)
    with CheckpointStore(run_dir, max_to_keep=1) as store:
        trainer.save(store, meta)
    with atomic_path(run_dir / "config.json", overwrite=True, what="run") as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
