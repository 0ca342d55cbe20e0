"""``jaxsim translate train|apply|report``: sim-to-real translation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTION = """\
Make simulated images look like real ones without losing their labels. 'train'
learns a translation from unpaired slices with CUT (contrastive unpaired
translation), FastCUT or CycleGAN; 'apply' rewrites a database with every image
translated (same schema, labels and records, attribute translated_by); 'report'
measures how real simulated and translated images look (per-tissue KS, a Fréchet
distance on a real-trained segmentation network's features) and whether that
network still finds the simulation's labels in them (Dice)."""

TRAIN_EPILOG = """\
examples:
  jaxsim translate train --source sim --target ../shared/data/acdc \\
      --spacing 10 1.5 1.5 --method cut --out tr_cut          # CPU-sized defaults
  jaxsim translate train --source quick.h5 --target ACDC/training \\
      --method cyclegan --reference --steps 100000 --out tr_cg  # GPU, reference sizes
  jaxsim translate train ... --out tr_cut --resume              # continue"""

APPLY_EPILOG = """\
example:
  jaxsim translate apply --model tr_cut quick.h5 --out quick_real.h5
  jaxsim export-nnunet quick_real.h5 Dataset502_JaxsimReal"""

REPORT_EPILOG = """\
example:
  jaxsim train --data ../shared/data/acdc --spacing 10 1.5 1.5 --out seg_real
  jaxsim translate report --segmenter seg_real --real ../shared/data/acdc \\
      --spacing 10 1.5 1.5 --simulated quick.h5 --translated quick_real.h5 \\
      --out realism.json
  jaxsim translate report --segmenter seg_real --real ../shared/data/acdc \
      --spacing 10 1.5 1.5 --set analytic=pop.h5 --set cut=pop_cut.h5 \
      --set cyclegan=pop_cyclegan.h5 --out realism.json"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "translate",
        help="sim-to-real translation (CUT, CycleGAN): train, apply, report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    _add_train(sub)
    _add_apply(sub)
    _add_report(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _add_train(sub) -> None:
    from jaxsim.train import TRANSLATION_METHODS, TranslationConfig

    d = TranslationConfig()
    p = sub.add_parser(
        "train",
        help="learn a translation from unpaired simulated and real slices",
        description=DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--source", required=True, metavar="SPEC",
        help="'sim' (the on-device simulator) or a jaxsim database .h5",
    )  # fmt: skip
    p.add_argument(
        "--target", required=True, metavar="DIR",
        help="real images: ACDC folder, NIfTI pairs, nnU-Net raw or HDF5 files",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument(
        "--method", default=d.method, choices=TRANSLATION_METHODS,
        help=f"default {d.method}",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=d.steps, help=f"default {d.steps}")
    p.add_argument(
        "--reference", action="store_true",
        help="the references' network sizes (ngf 64, 9 blocks, ndf 64, 256x256 "
        "slices): a GPU configuration",
    )  # fmt: skip
    p.add_argument("--ngf", type=int, default=None, help=f"default {d.ngf}")
    p.add_argument("--blocks", type=int, default=None, help=f"default {d.n_blocks}")
    p.add_argument("--ndf", type=int, default=None, help=f"default {d.ndf}")
    p.add_argument(
        "--d-layers", type=int, default=None,
        help=f"discriminator stride-2 stages (default {d.n_layers_d}: 70x70 PatchGAN)",
    )  # fmt: skip
    p.add_argument(
        "--shape", type=int, nargs=2, default=None, metavar="N",
        help=f"slice size H W in pixels (default {d.shape[0]} {d.shape[1]})",
    )  # fmt: skip
    p.add_argument(
        "--pixel-size", type=float, default=d.spacing, metavar="MM",
        help=f"in-plane pixel size of the slices (default {d.spacing} mm)",
    )  # fmt: skip
    p.add_argument(
        "--spacing", nargs="+", default=None, metavar="MM",
        help="voxel size SZ SY SX of target files that store none (HDF5)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size,
        help=f"default {d.batch_size}",
    )  # fmt: skip
    p.add_argument(
        "--lr", type=float, default=d.learning_rate, help=f"default {d.learning_rate}"
    )
    p.add_argument(
        "--decay-steps", type=int, default=None, metavar="N",
        help="final steps over which the learning rate decays linearly to zero "
        "(default: half of --steps, as the references)",
    )  # fmt: skip
    p.add_argument(
        "--nce-negatives", default=d.nce_negatives, choices=("image", "batch"),
        help="PatchNCE negatives (CUT/FastCUT): patches of the same image (the "
        "reference default) or of the whole batch (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--sample-every", type=int, default=d.sample_every,
        help=f"steps between PNG grids in RUN_DIR/samples (default {d.sample_every})",
    )  # fmt: skip
    p.add_argument(
        "--sim-options", default=None, metavar="JSON",
        help="simulator settings for --source sim (SamplerSpec fields)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--force", action="store_true", help="replace a run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def _add_apply(sub) -> None:
    p = sub.add_parser(
        "apply",
        help="translate every image of a database (labels kept)",
        description="Write DB_OUT: the database DB.h5 with every image translated by "
        "the model in RUN_DIR. Labels, geometry, the record table and subjects are "
        "copied unchanged; the file gains the attribute translated_by.",
        epilog=APPLY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("database", type=Path, metavar="DB.h5")
    p.add_argument("--out", required=True, type=Path, metavar="DB_OUT.h5")
    p.add_argument("--force", action="store_true", help="replace an existing DB_OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_apply, stoppable=True)


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="realism (KS, FD-seg) and label preservation (Dice) against real images",
        description="Compare databases with real images: per-tissue KS distances of "
        "normalised intensities, the Fréchet distance FD-seg on the encoder features "
        "of a segmentation network trained on real images (not FID: no Inception "
        "weights offline), and that network's Dice against each database's own "
        "labels.",
        epilog=REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--segmenter", required=True, type=Path, metavar="RUN_DIR",
        help="a jaxsim train run (unet2d) trained on real images",
    )  # fmt: skip
    p.add_argument("--real", required=True, type=Path, metavar="DIR")
    p.add_argument("--spacing", nargs="+", default=None, metavar="MM")
    p.add_argument("--simulated", type=Path, default=None, metavar="DB.h5")
    p.add_argument("--translated", type=Path, default=None, metavar="DB.h5")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="NAME=DB.h5",
        help="a named database to compare (repeat for several)",
    )  # fmt: skip
    p.add_argument(
        "--max-records", type=int, default=None,
        help="read at most this many records of each database",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="FILE.json")
    p.add_argument("--force", action="store_true", help="replace an existing FILE")
    p.set_defaults(func=run_report)


def config_from_args(args):
    import dataclasses

    from jaxsim._cli_common import parse_spacing
    from jaxsim.train import TranslationConfig

    if args.source != "sim" and not Path(args.source).exists():
        raise FileNotFoundError(f"--source {args.source}: no such database")
    if not Path(args.target).exists():
        raise FileNotFoundError(f"--target {args.target}: no such folder or file")
    sizes = {}
    if args.reference:
        sizes = dict(ngf=64, n_blocks=9, ndf=64, shape=(256, 256), spacing=1.25)
    names = (("ngf", "ngf"), ("blocks", "n_blocks"), ("ndf", "ndf"),
             ("d_layers", "n_layers_d"))  # fmt: skip
    for flag, name in names:
        if getattr(args, flag) is not None:
            sizes[name] = getattr(args, flag)
    if args.shape is not None:
        sizes["shape"] = tuple(args.shape)
    if not args.reference or args.pixel_size != TranslationConfig().spacing:
        sizes["spacing"] = args.pixel_size
    sampler = json.loads(args.sim_options) if args.sim_options else {}
    config = TranslationConfig(
        method=args.method,
        source=str(args.source),
        target=str(args.target),
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        decay_steps=args.decay_steps,
        nce_negatives=args.nce_negatives,
        sample_every=args.sample_every,
        seed=args.seed,
        data_spacing=None if args.spacing is None else parse_spacing(args.spacing),
        sampler=sampler,
    )
    return dataclasses.replace(config, **sizes)


def run_train(args) -> int:
    from jaxsim.train import run_translation

    config = config_from_args(args)
    result = run_translation(
        config, args.out, resume=args.resume, overwrite=args.force,
        progress=not args.quiet,
    )  # fmt: skip
    last = result.losses[-1] if result.losses else {}
    terms = ", ".join(
        f"{k} {v:.3f}" for k, v in last.items() if k not in ("step", "seconds")
    )
    print(
        f"{config.method}: {result.step} steps in {result.seconds / 60:.1f} min"
        f" ({terms}); run in {args.out}"
    )
    return 0


def run_apply(args) -> int:
    from jaxsim.train import translate_database

    if not args.database.exists():
        raise FileNotFoundError(f"{args.database}: no such database")
    out = translate_database(
        args.model, args.database, args.out, overwrite=args.force,
        progress=not args.quiet, stop=getattr(args, "stop", None),
    )  # fmt: skip
    print(
        f"translated {out['records']} records in {out['seconds']:.1f} s -> {args.out}"
    )
    return 0


def run_report(args) -> int:
    from jaxsim._cli_common import parse_spacing
    from jaxsim.io import atomic_path
    from jaxsim.train import database_slices, load_run, real_slices, realism

    paths = {}
    for name in ("simulated", "translated"):
        if getattr(args, name) is not None:
            paths[name] = getattr(args, name)
    for spec in args.sets:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--set takes NAME=DB.h5; got {spec!r}")
        if name in paths or name == "real":
            raise ValueError(f"--set: the name {name!r} is used twice (or is 'real')")
        paths[name] = Path(path)
    if not paths:
        raise ValueError(
            "give databases to compare: --simulated, --translated or --set NAME=DB.h5"
        )
    with atomic_path(args.out, overwrite=args.force, what="report") as tmp:
        segmenter, preprocessing, _ = load_run(args.segmenter)
        spacing = None if args.spacing is None else parse_spacing(args.spacing)
        real = real_slices(args.real, preprocessing, spacing=spacing)
        sets = {
            name: database_slices(path, preprocessing, max_records=args.max_records)
            for name, path in paths.items()
        }
        report = realism(segmenter, real, sets)
        report["segmenter"] = str(args.segmenter)
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    width = max(12, *(len(n) + 2 for n in sets))
    columns = "".join(f"{c:>8}" for c in ("KS RV", "KS MYO", "KS LV"))
    print(f"{'set':<{width}}{columns}{'FD-seg':>10}{'Dice':>7}")
    for name in sets:
        r = report[name]
        ks = [r["ks"].get(k, float("nan")) for k in ("RV", "MYO", "LV")]
        print(
            f"{name:<{width}}" + "".join(f"{v:>8.3f}" for v in ks)
            + f"{r['fd_seg']:>10.3f}{r['dice']['mean']:>7.3f}"
        )  # fmt: skip
    print(f"real slices: Dice {report['real']['dice']['mean']:.3f}; -> {args.out}")
    return 0
