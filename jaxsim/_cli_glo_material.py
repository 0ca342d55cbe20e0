"""``jaxsim glo material``: learn tissue material maps from real cines by GLO."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxsim._cli_common import parse_spacing


def add_material_parser(glo_subparsers) -> argparse.ArgumentParser:
    """Add ``material`` to the ``jaxsim glo`` subcommands."""
    p = glo_subparsers.add_parser(
        "material",
        help="learn a generator of tissue material maps from real cines",
        description=(
            "Generative Latent Optimisation of a material generator through the "
            "MR simulator: each real case (an ACDC HDF5 cine with labels, ED and "
            "ES) is paired with its patient twin (a 'jaxsim twin' folder), gets a "
            "learned latent code, and the generator's 16^3 map of PD/T1/T2 "
            "modulations (blood, myocardium, other tissues) on a box attached to "
            "the heart is rendered on the twin and compared with the real image "
            "(low-resolution MSE after a closed-form gain and offset; optional "
            "feature loss of a 'jaxsim train' U-Net). Writes RUN_DIR/material/: "
            "config.json, metrics.csv, checkpoints/, report.json (per-case loss "
            "and per-structure KS before/after) and material.png."
        ),
        epilog=(
            "example: jaxsim glo material --real ../shared/data/acdc "
            "--twins twins/patient001 twins/patient022 --spacing 10 1.5 1.5 "
            "--out glo_run --steps 300"
        ),
    )
    p.add_argument(
        "--real",
        nargs="+",
        type=Path,
        required=True,
        metavar="FILE_OR_DIR",
        help="real HDF5 files (image, label) or folders of them",
    )
    p.add_argument(
        "--twins",
        nargs="+",
        type=Path,
        required=True,
        metavar="DIR",
        help="'jaxsim twin' output folders (report.json)",
    )
    p.add_argument(
        "--spacing",
        nargs="+",
        required=True,
        metavar="MM",
        help="voxel spacing SZ SY SX (or SZ,SY,SX) of the HDF5 images",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="RUN_DIR",
        help="run folder (results in RUN_DIR/material)",
    )
    p.add_argument(
        "--segmenter",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="a 'jaxsim train' U-Net run whose encoder features add a feature loss",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=300,
        metavar="N",
        help="optimisation steps (default 300)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=2,
        metavar="N",
        help="cases per step (default 2)",
    )
    p.add_argument(
        "--feature-weight",
        type=float,
        default=0.1,
        metavar="W",
        help="weight of the feature loss with --segmenter (default 0.1)",
    )
    p.add_argument(
        "--latent-dim", type=int, default=16, metavar="N",
        help="latent code length (default 16)",
    )  # fmt: skip
    p.add_argument(
        "--grid", type=int, default=16, metavar="N",
        help="material map side, a power of two (default 16, as seed 004)",
    )  # fmt: skip
    p.add_argument(
        "--reference", action="store_true",
        help="GPU/reference sizes: the cine's 2x in-plane oversampling, a "
        "generator twice as wide (64), 4 cases per step",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="start afresh in --out")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from jaxsim.train import (
        MaterialGLOConfig,
        load_material_cases,
        load_run,
        train_material_glo,
    )

    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0; got {args.steps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    if not args.feature_weight >= 0:
        raise ValueError(f"--feature-weight must be >= 0; got {args.feature_weight}")
    spacing = parse_spacing(args.spacing)
    run_dir = args.out / "material"
    if (run_dir / "config.json").exists() and not (args.resume or args.force):
        raise FileExistsError(
            f"{run_dir} holds a material GLO run; pass --resume to continue it or "
            "--force to start afresh"
        )
    sizes = dict(oversample=2, width=64, batch_size=4) if args.reference else {}
    config = MaterialGLOConfig(
        **{
            "steps": args.steps,
            "batch_size": args.batch_size,
            "latent_dim": args.latent_dim,
            "grid": args.grid,
            "feature_weight": args.feature_weight,
            "seed": args.seed,
            **sizes,
        }
    )
    if config.grid < 2 or config.grid & (config.grid - 1):
        raise ValueError(f"--grid must be a power of two >= 2; got {config.grid}")
    segmenter = None
    if args.segmenter is not None:
        model, preprocessing, _ = load_run(args.segmenter)
        segmenter = (model, preprocessing)
    cases = load_material_cases(args.real, args.twins, spacing=spacing)
    result = train_material_glo(
        cases,
        config,
        run_dir,
        segmenter=segmenter,
        resume=args.resume,
        overwrite=args.force,
        progress=not args.quiet,
    )
    report = result.report
    print(f"{'case':<16}{'loss plain':>12}{'loss learned':>14}")
    for name, c in report["cases"].items():
        print(
            f"{name:<16}{c['loss_without_material']:>12.4f}{c['loss_learned']:>14.4f}"
        )
    for what in ("ks_without_material", "ks_learned"):
        ks = ", ".join(f"{k} {v:.3f}" for k, v in report[what].items())
        print(f"{what}: {ks}")
    print(f"{report['seconds_per_step']:.3f} s/step; wrote {run_dir / 'report.json'}")
    return 0
