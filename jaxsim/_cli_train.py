"""``jaxsim train`` and ``jaxsim segment``: networks from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

TRAIN_DESCRIPTION = """\
Train a segmentation network (ACDC labels: 0 background, 1 RV blood, 2 LV
myocardium, 3 LV blood) on batches the simulator draws on device (--data sim), a
jaxsim database (.h5), or a folder of real labelled images (ACDC as distributed,
NIfTI image/label pairs, nnU-Net raw, HDF5 image/label files). Images are resampled
to --pixel-size and normalised per slice, the same way jaxsim segment does at test
time. RUN_DIR receives config.json, metrics.csv, curves.png and orbax checkpoints;
--resume continues an interrupted run to the same result."""

TRAIN_EPILOG = """\
examples:
  jaxsim train --data sim --out run_sim                 # defaults: 2D U-Net
  jaxsim train --data sim --out run_sim --resume        # continue it
  jaxsim train --data ../shared/data/acdc --spacing 10 1.5 1.5 --out run_real
  jaxsim train --data quick.h5 --out run_db --steps 500"""


def add_parser(subparsers) -> None:
    _add_train(subparsers)
    _add_segment(subparsers)


def _add_train(subparsers) -> argparse.ArgumentParser:
    from jaxsim.train import TRAINABLE_MODELS, TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a segmentation network (simulator, database or real images)",
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="'sim', a jaxsim database .h5, or a folder/file of labelled images",
    )
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument(
        "--model",
        default=d.model,
        choices=TRAINABLE_MODELS,
        help=f"network (default {d.model}); unet2d, dynunet (planned as nnU-Net "
        "plans it, with deep supervision) and segresnetvae (with its VAE loss) "
        "see slices, unet3d stacks of consecutive slices",
    )
    p.add_argument(
        "--model-options",
        default=None,
        metavar="JSON",
        help='network options as JSON, e.g. \'{"channels": [8, 16, 32], '
        '"strides": [2, 2]}\' (see jaxsim.models)',
    )
    p.add_argument(
        "--sim-options",
        default=None,
        metavar="JSON",
        help="simulator settings for --data sim (SamplerSpec fields, ranges as "
        'pairs), e.g. \'{"random_appearance": [0.5, 0.5], "clutter": [0, 8]}\'',
    )
    p.add_argument(
        "--translator",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="pass every training image through this translation model (jaxsim "
        "translate train) first: train on translated simulations (2D networks; "
        "--shape and --pixel-size must be the translator's)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help=f"default {d.steps}")
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}"
    )
    p.add_argument(
        "--optimizer",
        default=d.optimizer,
        choices=("adamw", "sgd"),
        help=f"default {d.optimizer} (sgd: nnU-Net's Nesterov 0.99, poly decay)",
    )
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (1e-3 / 1e-2)"
    )
    p.add_argument(
        "--loss",
        default=d.loss,
        choices=("dice_ce", "focal_tversky"),
        help=f"default {d.loss}",
    )
    p.add_argument(
        "--shape",
        type=int,
        nargs="+",
        default=list(d.shape),
        metavar="N",
        help=f"network input size in pixels, H W (default {d.shape[0]} {d.shape[1]}); "
        "D H W for unet3d (D consecutive slices; default 8)",
    )
    p.add_argument(
        "--pixel-size",
        type=float,
        default=d.spacing,
        metavar="MM",
        help=f"in-plane pixel size the network sees (default {d.spacing} mm)",
    )
    p.add_argument(
        "--spacing",
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel size SZ SY SX (or SZ,SY,SX) of real files that store none (HDF5)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="SPEC",
        help="file label values of RV, MYO, LV in real data, e.g. RV=1,MYO=2,LV=3 "
        "(the default)",
    )
    p.add_argument(
        "--validation", default=None, metavar="DIR", help="labelled images for Dice"
    )
    p.add_argument(
        "--eval-every", type=int, default=d.eval_every, help=f"default {d.eval_every}"
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--no-augment", action="store_true", help="no augmentation")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--force", action="store_true", help="replace a run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train, flags={"label_map": "--labels RV=a,MYO=b,LV=c"})
    return p


def label_mapping(spec: str | None) -> dict[int, int] | None:
    """``RV=a,MYO=b,LV=c`` as ``{a: 1, b: 2, c: 3}`` (file value -> ACDC value)."""
    if spec is None:
        return None
    from jaxsim.fit import parse_label_spec
    from jaxsim.labels import ACDC

    try:
        tissues = parse_label_spec(spec)
    except ValueError as err:
        raise ValueError(f"--labels {spec}: {err}") from None
    wanted = {names[0]: value for value, names in enumerate(ACDC.tissues, start=1)}
    unknown = sorted(set(tissues) - set(wanted))
    if unknown:
        raise ValueError(
            f"--labels: the ACDC scheme has RV, MYO and LV only; got {unknown}"
        )
    return {v: wanted[t] for t, v in tissues.items()}


def _model_options(text: str | None, flag: str = "--model-options") -> dict:
    import json

    if text is None:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object: {err}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{flag} must be a JSON object; got {text!r}")
    return options


def run_train(args) -> int:
    from jaxsim._cli_common import parse_spacing
    from jaxsim.train import TrainConfig, run_training

    shape = args.shape
    ok = (len(shape) == 2 and min(shape) >= 8) or (
        len(shape) == 3 and shape[0] >= 1 and min(shape[1:]) >= 8
    )
    if not ok:
        raise ValueError(
            "--shape takes H W (or D H W for unet3d), H and W >= 8 pixels; got "
            + " ".join(map(str, shape))
        )
    config = TrainConfig(
        model=args.model,
        model_options=_model_options(args.model_options),
        sampler=_model_options(args.sim_options, "--sim-options"),
        data=args.data,
        validation=args.validation,
        steps=args.steps,
        batch_size=args.batch_size,
        shape=tuple(args.shape),
        spacing=args.pixel_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        loss=args.loss,
        augment=not args.no_augment,
        eval_every=args.eval_every,
        checkpoint_every=args.eval_every,
        seed=args.seed,
        data_spacing=None if args.spacing is None else parse_spacing(args.spacing),
        label_map=label_mapping(args.labels),
        translator=None if args.translator is None else str(args.translator),
    )
    result = run_training(
        config, args.out, resume=args.resume, overwrite=args.force,
        progress=not args.quiet,
    )  # fmt: skip
    last = result.validation[-1] if result.validation else {}
    dice = ", ".join(
        f"{k[5:]} {v:.3f}" for k, v in last.items() if k.startswith("dice_") and v == v
    )
    print(
        f"trained {result.step} steps in {result.seconds / 60:.1f} min; validation "
        f"Dice: {dice or 'n/a'}; run in {args.out}"
    )
    return 0


def _add_segment(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "segment",
        help="segment images with a trained network",
        description=(
            "Segment cine volumes (NIfTI, or HDF5 'image' files with --spacing) with "
            "a network trained by jaxsim train: each slice is resampled to the "
            "network's pixel size, covered by overlapping windows (Gaussian "
            "blending), optionally flipped for test-time augmentation, and the "
            "labels are written as NAME_seg.nii.gz on the input's own grid."
        ),
    )
    p.add_argument("--model", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument(
        "--spacing", nargs="+", default=None, metavar="MM",
        help="voxel size SZ SY SX of inputs that store none (HDF5)",
    )  # fmt: skip
    p.add_argument("--no-tta", action="store_true", help="no flip test-time averaging")
    p.add_argument(
        "--largest-component",
        action="store_true",
        help="keep each class's largest connected component",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run_segment)
    return p


def _read_input(path: Path, spacing):
    from jaxsim.geometry import ImageGeometry
    from jaxsim.io import load_nifti, read_image_label_h5

    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    name = path.name
    if name.endswith((".h5", ".hdf5")):
        if spacing is None:
            raise ValueError(f"{path} stores no voxel size; pass --spacing SZ SY SX")
        image, _ = read_image_label_h5(path)
        return image, ImageGeometry.axis_aligned(shape=image.shape, spacing=spacing)
    if name.endswith((".nii", ".nii.gz")):
        image, geometry = load_nifti(path)
        if image.ndim != 3:
            raise ValueError(f"{path} must be a 3D volume; got shape {image.shape}")
        return image, geometry
    raise ValueError(f"input {path} must be .nii, .nii.gz, .h5 or .hdf5")


def run_segment(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from jaxsim._cli_common import parse_spacing
    from jaxsim.io import save_nifti
    from jaxsim.train import load_run, segment_volume

    spacing = None if args.spacing is None else parse_spacing(args.spacing)
    stems = [p.name.split(".")[0] for p in args.inputs]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"inputs share the name(s) {dupes}: outputs would collide")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder")
    outputs = [args.out / f"{s}_seg.nii.gz" for s in stems]
    existing = [str(o) for o in outputs if o.exists()]
    if existing and not args.force:
        raise FileExistsError(f"output(s) {', '.join(existing)} exist; pass --force")
    images = [_read_input(p, spacing) for p in args.inputs]  # all readable first
    model, preprocessing, meta = load_run(args.model)
    n_classes = len(meta["labels"]["classes"])
    args.out.mkdir(parents=True, exist_ok=True)
    for (image, geometry), out in tqdm(
        list(zip(images, outputs, strict=True)), desc="segment", unit="volume"
    ):
        vox = tuple(float(s) for s in np.asarray(geometry.spacing))
        labels = segment_volume(
            model,
            image,
            vox,
            preprocessing,
            n_classes=n_classes,
            tta=not args.no_tta,
            postprocess=args.largest_component,
        )
        save_nifti(out, labels, geometry, overwrite=args.force)
        tqdm.write(f"wrote {out}")
    return 0
