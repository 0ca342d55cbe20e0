"""A training run from a :class:`TrainConfig`: network, objective, data, folder.

``RUN_DIR/config.json`` records the configuration, the network's constructor
configuration and the preprocessing, so :func:`load_run` (and ``jaxsim segment``)
rebuild exactly the network and the input pipeline that were trained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsim.io import atomic_path, load_cases
from jaxsim.labels import ACDC
from jaxsim.losses import dice_ce_loss, focal_tversky_loss
from jaxsim.models import build_model, build_model_from_config, model_config
from jaxsim.random import stream

from ._data import Preprocessing, SimulatedData, SliceData, open_data, slices_from_cases
from ._loop import TrainConfig, Trainer, TrainResult, fit
from ._transformed import TransformedData

__all__ = [
    "DEFAULT_MODEL_OPTIONS",
    "TRAINABLE_MODELS",
    "input_layout",
    "RUN_FORMAT",
    "load_run",
    "make_objective",
    "model_options",
    "run_training",
]

RUN_FORMAT = "jaxsim-run"
LOSSES = ("dice_ce", "focal_tversky")

#: Network options used unless the configuration overrides them.
DEFAULT_MODEL_OPTIONS: dict[str, dict] = {
    "unet2d": {
        "channels": [16, 32, 64, 128, 256],
        "strides": [2, 2, 2, 2],
        "num_res_units": 1,
        "norm": "instance",
    },
    # stacks of few thick slices: in-plane downsampling first, through-plane later
    "unet3d": {
        "channels": [16, 32, 64, 128],
        "strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "num_res_units": 1,
        "norm": "instance",
    },
}


def _segmentation_loss(name: str):
    if name == "dice_ce":
        return lambda logits, labels: dice_ce_loss(logits, labels, channel_axis=-1)
    if name == "focal_tversky":
        return lambda logits, labels: focal_tversky_loss(
            logits, labels, channel_axis=-1
        )
    raise ValueError(f"loss must be one of {LOSSES}; got {name!r}")


def make_objective(config: TrainConfig):
    """``objective(model, images, labels)``: the loss of the network's output
    (deep-supervision outputs weighted, a VAE branch's loss added)."""
    seg = _segmentation_loss(config.loss)

    def objective(model, images, labels):
        out = model(images[..., None])
        if isinstance(out, tuple) and len(out) == 2 and jnp.ndim(out[1]) == 0:
            logits, extra = out  # SegResNetVAE: (logits, VAE loss)
            return seg(logits, labels) + extra
        if isinstance(out, tuple | list):
            from jaxsim.losses import deep_supervision_loss

            return deep_supervision_loss(seg, list(out), labels, channel_axis=-1)
        return seg(out, labels)

    return objective


#: Networks that ``jaxsim train`` builds: 2D ones see slices, ``unet3d`` stacks of
#: ``shape[0]`` consecutive slices.
TRAINABLE_MODELS = ("unet2d", "dynunet", "segresnetvae", "unet3d")
MODELS_3D = ("unet3d",)
#: Slices per stack when a 3D network is given a 2D ``shape``.
DEFAULT_SLICES = 8


def input_layout(config: TrainConfig) -> tuple[tuple[int, ...], int]:
    """``(spatial input shape, spatial dims)`` of the configured network."""
    three_d = config.model in MODELS_3D
    shape = tuple(config.shape)
    if three_d and len(shape) == 2:
        shape = (DEFAULT_SLICES, *shape)
    if not three_d and len(shape) == 3:
        raise ValueError(
            f"{config.model} is a 2D network: shape must be (H, W); got {shape}"
        )
    return shape, 3 if three_d else 2


def model_options(config: TrainConfig) -> dict:
    """The network's keyword options: defaults for the input layout, then the
    configuration's own (which win)."""
    if config.model not in TRAINABLE_MODELS:
        raise ValueError(
            f"model must be one of {TRAINABLE_MODELS} (2D networks on slices); "
            f"got {config.model!r}"
        )
    size = [int(n) for n in input_layout(config)[0]]
    layout = {
        # nnU-Net's planner on the network's pixel grid (isotropic in-plane).
        "dynunet": {
            "spacing": [config.spacing, config.spacing],
            "patch_size": size,
            "deep_supervision": True,
            "deep_supr_num": 2,
        },
        "segresnetvae": {"input_image_size": size},
    }.get(config.model, {})
    return {
        **DEFAULT_MODEL_OPTIONS.get(config.model, {}),
        **layout,
        **config.model_options,
    }


def _model(config: TrainConfig, rngs):
    options = model_options(config)
    try:
        return build_model(
            config.model,
            in_channels=1,
            out_channels=ACDC.n_classes,
            spatial_dims=input_layout(config)[1],
            rngs=rngs,
            **options,
        )
    except TypeError as err:  # an option the network does not take
        raise ValueError(f"model options {options} for {config.model}: {err}") from None


def _validation(config: TrainConfig, data, preprocessing):
    """Validation images: a folder given, else held-out real cases, else a fixed
    simulated batch."""
    if config.validation is not None:
        cases = load_cases(
            config.validation,
            spacing=config.data_spacing,
            label_map=config.label_map,
            n_classes=ACDC.n_classes,
        )
        images, labels, _ = slices_from_cases(cases, preprocessing)
        return images, labels
    if isinstance(data, SimulatedData):
        key = stream(jax.random.key(config.seed), "train.validation")
        return data.batch(key, config.validation_size)
    key = stream(jax.random.key(config.seed), "train.validation")
    return data.batch(key, config.validation_size)


def _split_real(data: SliceData, fraction: float = 0.2):
    """Hold out the last cases (by name) of real data for validation."""
    names = sorted(set(data.names))
    if len(names) < 2:
        return data, None
    held = set(names[len(names) - max(1, round(fraction * len(names))) :])
    val = np.array([n in held for n in data.names])
    train = SliceData(data.images[~val], data.labels[~val], kind=data.kind)
    return train, (np.asarray(data.images[val]), np.asarray(data.labels[val]))


def _describe(config, model, preprocessing, data) -> dict:
    return {
        "format": RUN_FORMAT,
        "config": config.to_json(),
        "model": model_config(model),
        "preprocessing": {
            "shape": list(preprocessing.shape),
            "spacing": preprocessing.spacing,
            "percentile": preprocessing.percentile,
            "slices": preprocessing.slices,
        },
        "labels": {"scheme": ACDC.name, "classes": list(ACDC.classes)},
        "data": data.describe(),
    }


def _preprocessing(config: TrainConfig) -> Preprocessing:
    shape, dims = input_layout(config)
    return Preprocessing(
        shape=shape[-2:], spacing=config.spacing, slices=shape[0] if dims == 3 else None
    )


def run_training(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    until: int | None = None,
    data=None,
    validation=None,
    init: str | os.PathLike | None = None,
) -> TrainResult:
    """Train a network as ``config`` says, in ``run_dir``.

    Args:
        config: the run's configuration.
        run_dir: output folder (``config.json``, ``metrics.csv``, ``curves.png``,
            ``checkpoints/``).
        resume: continue the run in ``run_dir`` (same configuration; ``steps`` may
            grow).
        overwrite: start afresh in a folder that holds another run.
        progress: progress bar.
        until: stop after this many steps (resume later).
        data: a data source to use instead of opening ``config.data`` (e.g. a
            :class:`SliceData` of chosen cases; ``config.data`` then only names
            it in ``config.json``).
        validation: ``(images, labels)`` for the validation Dice instead of the
            default choice.
        init: a run folder whose trained weights start this run (fine-tuning;
            the network must be the same; the optimiser starts afresh).

    Raises:
        FileExistsError: ``run_dir`` holds a run and neither ``resume`` nor
            ``overwrite`` is set.
        ValueError: a resumed run whose configuration differs.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if config_path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{run_dir} holds a training run; resume it or choose another folder "
            "(overwrite=True starts afresh)"
        )
    if resume and config_path.exists():
        saved = TrainConfig.from_json(json.loads(config_path.read_text())["config"])
        same = {**saved.to_json(), "steps": config.steps} == config.to_json()
        if not same:
            raise ValueError(
                f"the run in {run_dir} was configured differently; resume it with "
                "its own options (only the number of steps may change)"
            )
    preprocessing = _preprocessing(config)
    if data is None:
        data = open_data(
            config.data,
            preprocessing,
            spacing=config.data_spacing,
            label_map=config.label_map,
            sampler=config.sampler,
        )
        if isinstance(data, SliceData) and config.validation is None:
            data, validation = _split_real(data)
        if config.translator is not None:
            data = TransformedData(data, config.translator, preprocessing)
    if validation is None:
        validation = _validation(config, data, preprocessing)
    model = _model(config, nnx.Rngs(config.seed))
    if init is not None:
        model = _initial_weights(model, init)
    meta = _describe(config, model, preprocessing, data)
    if resume and config_path.exists():
        before = json.loads(config_path.read_text()).get("data", {})
        if "ranges" in before and before != meta["data"]:
            raise ValueError(
                f"the run in {run_dir} trained on simulations drawn from other "
                "ranges than the sampler's now (its defaults changed since it "
                "started); start a new run"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        import shutil

        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        for name in ("metrics.csv", "curves.png"):
            (run_dir / name).unlink(missing_ok=True)
    with atomic_path(config_path, overwrite=True, what="run configuration") as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    trainer = Trainer(config, model, make_objective(config), data)
    return fit(
        trainer,
        run_dir,
        validation=validation,
        meta=meta,
        resume=resume,
        progress=progress,
        until=until,
    )


def _initial_weights(model, init):
    """The trained network of the run in ``init``, if it is ``model``'s
    architecture (in training mode)."""
    trained, _, meta = load_run(init)
    if meta["model"] != model_config(model):
        raise ValueError(
            f"the run in {init} trained another network ({meta['model']['name']} "
            f"{meta['model']['options']}); fine-tune with the same model options"
        )
    trained.train()
    return trained


def load_run(run_dir: str | os.PathLike):
    """``(model in evaluation mode, preprocessing, description)`` of a trained run
    (its last checkpoint).

    Raises:
        FileNotFoundError: no run or no checkpoint in ``run_dir``.
        ValueError: the folder holds something else.
    """
    from jaxsim.io import CheckpointStore

    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} holds no training run (no config.json)")
    meta = json.loads(path.read_text())
    if meta.get("format") != RUN_FORMAT:
        raise ValueError(f"{path} is not a jaxsim training run")
    config = TrainConfig.from_json(meta["config"])
    model = build_model_from_config(meta["model"], rngs=nnx.Rngs(config.seed))
    trainer = Trainer(config, model, make_objective(config), data=None)
    with CheckpointStore(run_dir) as store:
        trainer.restore(store)
    p = meta["preprocessing"]
    preprocessing = Preprocessing(
        shape=tuple(p["shape"]),
        spacing=p["spacing"],
        percentile=p["percentile"],
        slices=p.get("slices"),
    )
    return trainer.model(), preprocessing, meta
