"""``jaxsim enhance train|apply``: the SPADE (GauGAN) enhancer of physics images."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Make physics renderings look like real images while keeping their anatomy.
'train' learns a SPADE (GauGAN) generator on pairs that patient twins make
possible: each real ACDC file is matched with the twin fitted to it (the
report.json of 'jaxsim twin'), the twin is simulated as a cine on the patient's
own grid (ED, and ES at the twin's ES phase), and the network learns to turn
(twin labels, physics slice) into the real slice. 'apply' rewrites a database
with every image enhanced, conditioned on the database's own labels (same
schema, labels and records; attribute enhanced_by)."""

TRAIN_EPILOG = """\
examples:
  for p in 001 022 039 065 066 068 078 080; do                 # twins first
    jaxsim twin ../shared/data/acdc/patient${p}_frame01.h5 \\
        --es ../shared/data/acdc/patient${p}_frame02.h5 --spacing 10 1.5 1.5 \\
        --out twins/patient$p
  done
  jaxsim enhance train --real ../shared/data/acdc --twins twins \\
      --spacing 10 1.5 1.5 --out enh                        # CPU-sized defaults
  jaxsim enhance train ... --reference --steps 50000 --out enh_ref   # GPU sizes
  jaxsim enhance train ... --out enh --resume --steps 4000           # continue"""

APPLY_EPILOG = """\
example:
  jaxsim population --preset quick --out quick.h5
  jaxsim enhance apply --model enh quick.h5 --out quick_enh.h5
  jaxsim export-nnunet quick_enh.h5 Dataset503_JaxsimEnhanced"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "enhance",
        help="SPADE (GauGAN) enhancer of physics images: train on twins, apply",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    _add_train(sub)
    _add_apply(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _add_train(sub) -> None:
    from jaxsim.train import EnhancerConfig

    d = EnhancerConfig()
    p = sub.add_parser(
        "train",
        help="learn the enhancer from real images and their patient twins",
        description=DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--real", required=True, nargs="+", type=Path, metavar="FILE_OR_DIR",
        help="real HDF5 files ('image' and 'label') or folders of them",
    )  # fmt: skip
    p.add_argument(
        "--twins", required=True, nargs="+", type=Path, metavar="DIR",
        help="twin folders of 'jaxsim twin' (report.json) or folders of them",
    )  # fmt: skip
    p.add_argument(
        "--spacing", required=True, nargs="+", metavar="MM",
        help="voxel size SZ SY SX of the real files, as given to 'jaxsim twin'",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("--steps", type=int, default=d.steps, help=f"default {d.steps}")
    p.add_argument(
        "--reference", action="store_true",
        help="GauGAN's sizes (ngf 64, SPADE hidden 128, ndf 64, 256x256 slices at "
        "1.25 mm): a GPU configuration",
    )  # fmt: skip
    p.add_argument("--ngf", type=int, default=None, help=f"default {d.ngf}")
    p.add_argument(
        "--hidden", type=int, default=None, help=f"SPADE hidden width (default "
        f"{d.hidden})",
    )  # fmt: skip
    p.add_argument("--ndf", type=int, default=None, help=f"default {d.ndf}")
    p.add_argument(
        "--shape", type=int, nargs=2, default=None, metavar="N",
        help=f"slice size H W in pixels, multiples of 32 (default {d.shape[0]} "
        f"{d.shape[1]})",
    )  # fmt: skip
    p.add_argument(
        "--pixel-size", type=float, default=None, metavar="MM",
        help=f"in-plane pixel size of the slices (default {d.spacing} mm)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}"
    )
    p.add_argument(
        "--lambda-l1", type=float, default=d.lambda_l1,
        help=f"weight of the L1 loss to the real image (default {d.lambda_l1})",
    )  # fmt: skip
    p.add_argument(
        "--lambda-feat", type=float, default=d.lambda_feat,
        help=f"weight of the feature matching (default {d.lambda_feat})",
    )  # fmt: skip
    p.add_argument(
        "--sample-every", type=int, default=d.sample_every,
        help=f"steps between PNG grids in RUN_DIR/samples (default {d.sample_every})",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every,
        help=f"steps between checkpoints (default {d.checkpoint_every})",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--force", action="store_true", help="replace a run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)


def _add_apply(sub) -> None:
    p = sub.add_parser(
        "apply",
        help="enhance every image of a database (labels kept)",
        description="Write DB_OUT: the database DB.h5 with every image enhanced by "
        "the model in RUN_DIR, conditioned on the database's own labels. Labels, "
        "geometry, the record table and subjects are copied unchanged; the file "
        "gains the attribute enhanced_by.",
        epilog=APPLY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("database", type=Path, metavar="DB.h5")
    p.add_argument("--out", required=True, type=Path, metavar="DB_OUT.h5")
    p.add_argument("--force", action="store_true", help="replace an existing DB_OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_apply, stoppable=True)


def config_from_args(args):
    """The :class:`~jaxsim.train.EnhancerConfig` the flags describe."""
    import dataclasses

    from jaxsim._cli_common import parse_spacing
    from jaxsim.train import ENHANCER_REFERENCE_SIZES, EnhancerConfig

    for flag, paths in (("--real", args.real), ("--twins", args.twins)):
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"{flag} {path}: no such file or folder")
    sizes = {}
    if args.reference:
        sizes = dict(ENHANCER_REFERENCE_SIZES)
    for flag in ("ngf", "hidden", "ndf"):
        if getattr(args, flag) is not None:
            sizes[flag] = getattr(args, flag)
    if args.shape is not None:
        sizes["shape"] = tuple(args.shape)
    if args.pixel_size is not None:
        sizes["spacing"] = args.pixel_size
    config = EnhancerConfig(
        real=tuple(str(p) for p in args.real),
        twins=tuple(str(p) for p in args.twins),
        data_spacing=parse_spacing(args.spacing),
        steps=args.steps,
        batch_size=args.batch_size,
        lambda_l1=args.lambda_l1,
        lambda_feat=args.lambda_feat,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    return dataclasses.replace(config, **sizes)


def run_train(args) -> int:
    from jaxsim.train import run_enhancer

    config = config_from_args(args)
    result = run_enhancer(
        config, args.out, resume=args.resume, overwrite=args.force,
        progress=not args.quiet,
    )  # fmt: skip
    last = result.losses[-1] if result.losses else {}
    terms = ", ".join(
        f"{k} {v:.3f}" for k, v in last.items() if k not in ("step", "seconds")
    )
    print(
        f"enhancer: {result.step} steps in {result.seconds / 60:.1f} min ({terms}); "
        f"run in {args.out}"
    )
    return 0


def run_apply(args) -> int:
    from jaxsim.train import enhance_database

    if not args.database.exists():
        raise FileNotFoundError(f"{args.database}: no such database")
    out = enhance_database(
        args.model, args.database, args.out, overwrite=args.force,
        progress=not args.quiet, stop=getattr(args, "stop", None),
    )  # fmt: skip
    print(f"enhanced {out['records']} records in {out['seconds']:.1f} s -> {args.out}")
    return 0
