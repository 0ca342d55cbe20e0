"""``jaxsim sim2real``: the sim-to-real protocol from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
How far does simulation alone go on real images, and what is it worth when a few
real patients are labelled? Trains a network on the simulator only (zero-shot)
and scores it on every real patient; then, for k real training patients and
several seeds, trains the same network on them from scratch and fine-tunes the
zero-shot network on them, both scored on held-out patients no run has seen.
OUT receives scores.csv, summary.csv (Dice, HD95, ASSD mean and sd per
condition, k, structure, ED/ES), dice_vs_k.png, overlays.png, sim2real.json
and every run's folder. Real data: any folder jaxsim train reads (ACDC as
distributed, NIfTI pairs, HDF5 image/label files with --spacing)."""

EPILOG = """\
examples:
  jaxsim sim2real --real ../shared/data/acdc --spacing 10 1.5 1.5 --out s2r
  jaxsim sim2real --real ACDC/training --out s2r --full      # GPU-sized
  jaxsim sim2real --real DIR --out s2r --resume              # continue"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sim2real",
        help="zero-shot, scratch and fine-tuned segmentation of real images",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--real", required=True, type=Path, metavar="DIR")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument(
        "--spacing", nargs="+", default=None, metavar="MM",
        help="voxel size SZ SY SX of real files that store none (HDF5)",
    )  # fmt: skip
    p.add_argument(
        "--labels", default=None, metavar="SPEC",
        help="file label values of RV, MYO, LV, e.g. RV=1,MYO=2,LV=3 (the default)",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=int, default=None,
        help="zero-shot training steps (default: jaxsim train's)",
    )  # fmt: skip
    p.add_argument("--ks", type=int, nargs="+", default=None, metavar="K")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S")
    p.add_argument("--scratch-steps", type=int, default=None)
    p.add_argument("--finetune-steps", type=int, default=None)
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--full", action="store_true",
        help="GPU-sized: 192x192 inputs at 1.8 mm, batch 32, 20000 zero-shot "
        "steps, 2000 per real run, k up to 16, 3 seeds",
    )  # fmt: skip
    size.add_argument(
        "--smoke", action="store_true",
        help="a tiny configuration that runs in well under a minute (tests)",
    )  # fmt: skip
    p.add_argument("--no-tta", action="store_true", help="no flip test-time averaging")
    p.add_argument("--resume", action="store_true", help="continue the runs in OUT")
    p.add_argument("--force", action="store_true", help="replace results in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run, flags={"label_map": "--labels RV=a,MYO=b,LV=c"})
    return p


def config_from_args(args):
    import dataclasses

    from jaxsim._cli_common import parse_spacing
    from jaxsim._cli_train import label_mapping
    from jaxsim.train import Sim2RealConfig, TrainConfig

    pretrain = TrainConfig()
    extra: dict = {}
    if args.full:
        pretrain = dataclasses.replace(
            pretrain, shape=(192, 192), spacing=1.8, batch_size=32, steps=20000,
            eval_every=1000, checkpoint_every=1000,
        )  # fmt: skip
        extra = dict(
            ks=(1, 2, 4, 8, 16), seeds=(0, 1, 2), scratch_steps=2000,
            finetune_steps=2000,
        )  # fmt: skip
    elif args.smoke:
        pretrain = dataclasses.replace(
            pretrain, shape=(32, 32), spacing=4.0, batch_size=2, steps=3,
            eval_every=3, checkpoint_every=3, validation_size=2,
            model_options={"channels": [4, 8], "strides": [2], "num_res_units": 0},
        )  # fmt: skip
        extra = dict(ks=(1,), seeds=(0,), scratch_steps=2, finetune_steps=2)
    if args.steps is not None:
        pretrain = dataclasses.replace(
            pretrain, steps=args.steps,
            eval_every=min(pretrain.eval_every, args.steps),
            checkpoint_every=min(pretrain.checkpoint_every, args.steps),
        )  # fmt: skip
    for name in ("ks", "seeds", "scratch_steps", "finetune_steps"):
        value = getattr(args, name)
        if value is not None:
            extra[name] = tuple(value) if isinstance(value, list) else value
    return Sim2RealConfig(
        real=str(args.real),
        spacing=None if args.spacing is None else parse_spacing(args.spacing),
        label_map=label_mapping(args.labels),
        pretrain=pretrain,
        tta=not args.no_tta,
        **extra,
    )


def run(args) -> int:
    from jaxsim.train import run_sim2real

    if not args.real.exists():
        raise FileNotFoundError(f"--real {args.real}: no such folder")
    config = config_from_args(args)
    results = run_sim2real(
        config, args.out, resume=args.resume, overwrite=args.force,
        progress=not args.quiet,
    )  # fmt: skip
    print(f"\n{'condition':<26}{'k':>3}  {'LV':>13}  {'MYO':>13}  {'RV':>13}")
    rows = [r for r in results["summary"] if r["phase"] == "all"]
    for key in dict.fromkeys((r["condition"], r["k"]) for r in rows):
        cells = {
            r["structure"]: f"{r['dice_mean']:.3f} ± {r['dice_sd']:.3f}"
            for r in rows
            if (r["condition"], r["k"]) == key
        }
        print(
            f"{key[0]:<26}{key[1]:>3}  "
            + "  ".join(f"{cells.get(s, ''):>13}" for s in ("LV", "MYO", "RV"))
        )
    minutes = results["seconds"]["total"] / 60
    print(f"Dice (mean ± sd over cases); {minutes:.1f} min; results in {args.out}")
    return 0
