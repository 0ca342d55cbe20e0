"""``jaxsim federated`` and ``jaxsim split-sites``: federated training from the
command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTION = """\
Federated segmentation across sites that keep their labelled images. Each task
runs for --rounds rounds: the server sends the global U-Net to every site, each
site trains on its own slices (--local-steps), the server aggregates (FedAvg,
FedProx or FedAdam), every site scores the result on its held-out patients, and
the global network is checkpointed (orbax; --resume continues). Tasks: direct
(Direct-FL; each site also fine-tunes the final network), local (site-only
baseline) and sim-fl (Federated Simulation: --shape-rounds rounds of a shared GLO
shape generator, --material-rounds of a shared material generator, latents kept
at the sites; then each site trains its own SPADE enhancer, renders
--sim-subjects new subjects through it, and the U-Net is trained by the strategy
on these renderings for the remaining rounds and fine-tuned at each site).
RUN_DIR receives one folder per task and sites.csv, sites.json, sites.png: Dice,
HD95 and ASSD per site and method (sim-fl adds the shape generator's
reconstruction Dice of the held-out cases, glo-dice-*). The
default engine is Flower's simulation engine on this machine (loopback only, no
package installation at run time; needs pip install "jaxsim-imaging[federated]");
--engine inprocess runs the same site and server code without Ray."""

EPILOG = """\
examples:
  jaxsim split-sites ../shared/data/acdc --out sites      # DCM, HCM, NOR
  jaxsim federated --sites sites/DCM sites/HCM sites/NOR --rounds 10 \\
      --spacing 10 1.5 1.5 --out fed
  jaxsim federated --sites sites/* --rounds 20 --strategy fedadam --out fed2
  jaxsim federated --sites sites/* --rounds 20 --out fed --resume
  jaxsim federated --sites sites/* --rounds 20 --tasks direct sim-fl local \\
      --spacing 10 1.5 1.5 --engine inprocess --out fed
  jaxsim federated --sites sites/* --rounds 2 --engine inprocess --smoke --out t"""

SPLIT_DESCRIPTION = """\
Lay out ACDC patients as one site folder per pathology group (DCM, HCM, MINF,
NOR, RV; from Info.cfg, else by patient number in blocks of 20), by symbolic
links: no image is copied. OUT/manifest.json lists the patients of each site."""


#: sim-fl settings of ``--reference`` (GPU-sized): the enhancer's reference
#: length and widths, and a larger rendered population per site.
REFERENCE_SIM_FL = {"enhancer_steps": 2000, "sim_subjects": 100}
_SIM_FIELDS = ("shape_rounds", "shape_steps", "material_rounds", "material_steps",
               "invert_steps", "enhancer_steps", "sim_subjects")  # fmt: skip


def add_parser(subparsers) -> None:
    _add_federated(subparsers)
    _add_split(subparsers)


def _add_federated(subparsers) -> argparse.ArgumentParser:
    from jaxsim.federated import ENGINES, STRATEGIES, FederatedConfig, task_names

    d = FederatedConfig()
    p = subparsers.add_parser(
        "federated",
        help="federated segmentation across sites (Flower)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sites", required=True, nargs="+", type=Path, metavar="SITE_DIR")
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"default {d.rounds}")
    p.add_argument(
        "--tasks",
        nargs="+",
        default=["direct", "local"],
        choices=task_names(),
        metavar="TASK",
        help="tasks to run and compare (default: direct local; also sim-fl)",
    )
    p.add_argument(
        "--strategy",
        default=d.strategy,
        choices=STRATEGIES,
        help=f"default {d.strategy}",
    )
    p.add_argument(
        "--engine",
        default="flower",
        choices=ENGINES,
        help="flower (simulation engine, default) or inprocess",
    )
    p.add_argument(
        "--local-steps",
        type=int,
        default=d.local_steps,
        help=f"steps per site and round (default {d.local_steps})",
    )
    p.add_argument(
        "--finetune-steps",
        type=int,
        default=d.finetune_steps,
        help=f"final local fine-tuning (default {d.finetune_steps})",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--lr",
        type=float,
        default=d.learning_rate,
        help=f"sites' Adam learning rate (default {d.learning_rate})",
    )
    p.add_argument("--mu", type=float, default=d.proximal_mu, help="FedProx's mu")
    p.add_argument(
        "--server-lr", type=float, default=d.server_learning_rate, help="FedAdam's eta"
    )
    p.add_argument(
        "--spacing",
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel size SZ SY SX of site files that store none (HDF5)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="SPEC",
        help="file label values of RV, MYO, LV (default RV=1,MYO=2,LV=3)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    sim = p.add_argument_group("sim-fl")
    for flag, field, what in (
        ("--shape-rounds", "shape_rounds", "rounds of the shape generator"),
        ("--shape-steps", "shape_steps", "local shape GLO steps per round"),
        ("--material-rounds", "material_rounds", "rounds of the material generator"),
        ("--material-steps", "material_steps", "local material GLO steps per round"),
        ("--invert-steps", "invert_steps", "steps of a GLO inversion"),
        ("--enhancer-steps", "enhancer_steps", "steps of a site's enhancer, 0: none"),
        ("--sim-subjects", "sim_subjects", "subjects each site renders"),
    ):
        ref = REFERENCE_SIM_FL.get(field)
        sim.add_argument(
            flag, type=int, default=None,
            help=f"{what} (default {getattr(d, field)}"
            + (f"; {ref} with --reference)" if ref is not None else ")"),
        )  # fmt: skip
    p.add_argument(
        "--cpus",
        type=int,
        default=None,
        help="CPUs for the Flower engine (default: all)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--reference",
        action="store_true",
        help="GPU size: the U-Net of jaxsim train (16..256 channels), batch 16; "
        "for sim-fl the reference enhancer (2000 steps) and 100 subjects per site",
    )
    size.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny configuration (32 px, widths 4) for tests",
    )
    p.add_argument(
        "--centralised-glo",
        action="store_true",
        help="also train the shape generator centrally on all sites' training "
        "patients (the baseline of sim-fl's shape stage) and score it on each "
        "site's held-out patients",
    )
    p.add_argument("--no-tta", action="store_true", help="no flip test-time averaging")
    p.add_argument("--resume", action="store_true", help="continue the runs in RUN_DIR")
    p.add_argument("--force", action="store_true", help="replace results in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run, flags={"label_map": "--labels RV=a,MYO=b,LV=c"})
    return p


def _add_split(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "split-sites",
        help="ACDC patients as one site folder per pathology group (links)",
        description=SPLIT_DESCRIPTION,
        epilog="example:\n  jaxsim split-sites ../shared/data/acdc --out sites",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", type=Path, metavar="ACDC_DIR")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--force", action="store_true", help="replace an earlier split")
    p.set_defaults(func=run_split)
    return p


def config_from_args(args):
    from jaxsim._cli_common import parse_spacing
    from jaxsim._cli_train import label_mapping
    from jaxsim.federated import FederatedConfig
    from jaxsim.train import DEFAULT_MODEL_OPTIONS

    extra: dict = {}
    d = FederatedConfig()
    sim = {f: getattr(d, f) for f in _SIM_FIELDS}
    if args.reference:
        from jaxsim.train import ENHANCER_REFERENCE_SIZES

        extra = dict(
            model_options=DEFAULT_MODEL_OPTIONS["unet2d"],
            batch_size=16,
            enhancer_options={k: ENHANCER_REFERENCE_SIZES[k]
                              for k in ("ngf", "hidden", "ndf")},
        )  # fmt: skip
        sim.update(REFERENCE_SIM_FL)
    elif args.smoke:
        extra = dict(
            shape=(32, 32),
            spacing=8.0,
            batch_size=2,
            model_options={"channels": [4, 4], "strides": [2], "num_res_units": 0},
            shape_options={"warm_steps": 5, "hidden": 16, "latent_dim": 4,
                           "grid_shape": [4, 4, 4], "supersample": [1, 1, 1]},
            material_options={"grid": 8, "width": 8, "latent_dim": 4,
                              "loss_spacing": 8.0},
            enhancer_options={"ngf": 4, "hidden": 8, "ndf": 8, "n_layers_d": 2,
                              "num_d": 1},
        )  # fmt: skip
    return FederatedConfig(
        task=args.tasks[0],
        strategy=args.strategy,
        rounds=args.rounds,
        local_steps=args.local_steps,
        finetune_steps=args.finetune_steps,
        learning_rate=args.lr,
        proximal_mu=args.mu,
        server_learning_rate=args.server_lr,
        data_spacing=None if args.spacing is None else parse_spacing(args.spacing),
        label_map=label_mapping(args.labels),
        tta=not args.no_tta,
        seed=args.seed,
        **{
            f: sim[f] if getattr(args, f) is None else getattr(args, f)
            for f in _SIM_FIELDS
        },
        **{"batch_size": args.batch_size, **extra},
    )


def run(args) -> int:
    from jaxsim.federated import (
        flower_available,
        get_task,
        plot_sites,
        run_federated,
        write_table,
    )
    from jaxsim.io import atomic_path

    for site in args.sites:
        if not site.exists():
            raise FileNotFoundError(f"--sites {site}: no such folder")
    base = config_from_args(args)
    tasks = list(dict.fromkeys(args.tasks))
    for task in tasks:  # an unavailable task or bad settings stop before any work
        get_task(task)
        base.replace(task=task)
    if args.engine == "flower" and not flower_available():
        raise ValueError(
            "--engine flower needs Flower: pip install 'jaxsim-imaging[federated]' "
            "(or run --engine inprocess)"
        )
    rows, seconds = [], {}
    for task in tasks:
        print(
            f"task {task} ({base.strategy}, {len(args.sites)} sites, "
            f"{base.rounds} rounds, engine {args.engine})"
        )
        result = run_federated(
            base.replace(task=task),
            args.sites,
            args.out / task,
            engine=args.engine,
            resume=args.resume,
            overwrite=args.force,
            progress=not args.quiet,
            num_cpus=args.cpus,
        )
        rows += result["table"]
        seconds[task] = result["round_seconds"]
    if args.centralised_glo:
        from jaxsim.federated import centralised_shape_glo

        print("centralised shape generator (the baseline of sim-fl's shape stage)")
        central = centralised_shape_glo(
            base.replace(task="direct"), args.sites, progress=not args.quiet
        )
        rows += central["rows"]
        seconds["centralised-glo"] = [central["seconds"]]
    write_table(args.out / "sites", rows)
    plot_sites(args.out / "sites.png", rows, f"{base.strategy}, {base.rounds} rounds")
    with atomic_path(args.out / "timing.json", overwrite=True, what="timings") as tmp:
        tmp.write_text(json.dumps(seconds, indent=1) + "\n")
    print(f"\n{'site':<8}{'method':<18}{'LV':>7}{'MYO':>7}{'RV':>7}{'mean':>7}"
          f"{'GLO':>7}")  # fmt: skip
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['site']:<8}{r['method']:<18}failed: {r['error'][:60]}")
            continue
        cells = [r.get(f"dice-{s}") for s in ("LV", "MYO", "RV", "mean")]
        cells.append(r.get("glo-dice-mean"))
        print(
            f"{r['site']:<8}{r['method']:<18}"
            + "".join(f"{v:>7.3f}" if v is not None else f"{'-':>7}" for v in cells)
        )
    print(
        "Dice on held-out cases (GLO: the shape generator's reconstruction Dice "
        f"of them); results in {args.out}"
    )
    return 0


def run_split(args) -> int:
    from jaxsim.federated import split_acdc_sites

    sites = split_acdc_sites(args.source, args.out, overwrite=args.force)
    for name, patients in sites.items():
        print(f"{args.out / name}: {len(patients)} patients ({', '.join(patients)})")
    return 0
