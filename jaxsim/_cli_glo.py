"""``jaxsim glo``: learned generators by Generative Latent Optimisation.

``jaxsim glo shape`` trains the shape generator into ``RUN_DIR/shape/``. The
command is a group so that other generators (e.g. ``glo material`` writing
``RUN_DIR/material/``) join it as further subcommands.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from jaxsim._cli_common import parse_spacing

_FRAME = re.compile(r"^(?P<patient>.+?)_frame(?P<frame>\d+)$")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "glo",
        help="train generators by Generative Latent Optimisation",
        description="Train learned generators of the simulator's inputs by GLO "
        "(a latent per training case, optimised with the generator). "
        "Subcommands write into RUN_DIR/<generator>/.",
        epilog="example: jaxsim glo shape --real ../shared/data/acdc --spacing 10 "
        "1.5 1.5 --out glo_run",
    )
    sub = p.add_subparsers(dest="glo_command", metavar="GENERATOR")
    _add_shape(sub)
    from jaxsim._cli_glo_material import add_material_parser

    add_material_parser(sub)
    p.set_defaults(func=lambda args: _no_generator(p))
    return p


def _no_generator(parser) -> int:
    parser.print_help()
    return 2


def _add_shape(sub) -> None:
    s = sub.add_parser(
        "shape",
        help="train the shape generator on real label maps",
        description="Train the GLO shape generator (latent -> phantom subject + "
        "residual deformation) on real ACDC-style label maps at end-diastole and "
        "end-systole, by soft Dice through the differentiable rasteriser, with a "
        "learned latent and heart pose per case. Writes RUN_DIR/shape/: "
        "config.json, checkpoints/, generator/, metrics.csv, latents.npy, "
        "gaussian.json (latent Gaussian for sampling), report.json (per-case "
        "reconstruction Dice, plausibility of generated subjects) and shape.png.",
        epilog="example: jaxsim glo shape --real ../shared/data/acdc --labels "
        "RV=1,MYO=2,LV=3 --spacing 10 1.5 1.5 --twins twins/patient* --steps 300 "
        "--out glo_run",
    )
    s.add_argument(
        "--real",
        nargs="+",
        required=True,
        type=Path,
        metavar="FILE_OR_DIR",
        help="labelled cases: HDF5 files with 'label', ACDC patient folders, NIfTI "
        "image/label pairs, or folders of them; NAME_frameXX cases of one patient "
        "pair up (frame 1 or Info.cfg's ED is end-diastole)",
    )
    s.add_argument(
        "--labels",
        dest="label_spec",
        default="RV=1,MYO=2,LV=3",
        metavar="SPEC",
        help="file values of RV blood, LV myocardium and LV blood (default "
        "RV=1,MYO=2,LV=3); other values are background",
    )
    s.add_argument(
        "--spacing",
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel spacing SZ SY SX in mm for HDF5 files, which store none",
    )
    s.add_argument(
        "--twins",
        nargs="+",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folders of 'jaxsim twin' for some cases: their poses "
        "initialise the cases' and their parameters are warm-start targets",
    )
    s.add_argument(
        "--reference",
        action="store_true",
        help="GPU/reference sizes: latent 32, width 256, 8 cases per step, 500 + "
        "2000 steps, 2x2x2 sub-samples (explicit flags still win)",
    )
    s.add_argument(
        "--steps", type=int, default=None, help="rasteriser steps (default 300)"
    )
    s.add_argument(
        "--warm-steps",
        type=int,
        default=None,
        help="MSE warm-start steps before them (default 200)",
    )
    s.add_argument(
        "--latent-dim", type=int, default=None, help="latent size (default 16)"
    )
    s.add_argument("--hidden", type=int, default=None, help="generator width (64)")
    s.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="cases per rasteriser step (default 1, for CPUs)",
    )
    s.add_argument(
        "--grid",
        nargs=3,
        type=int,
        default=(6, 6, 7),
        metavar="N",
        help="deformation control points (default 6 6 7)",
    )
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument(
        "--n-generated",
        type=int,
        default=16,
        help="generated subjects checked for plausibility (default 16)",
    )
    s.add_argument("--out", required=True, type=Path, metavar="RUN_DIR")
    s.add_argument("--resume", action="store_true", help="continue a stopped run")
    s.add_argument(
        "--force", action="store_true", help="discard an existing run in RUN_DIR"
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_shape)


def _load_real(paths, classes, spacing):
    """``GLOCase``s from ``--real`` (patients' ED/ES frames paired)."""
    from jaxsim._cli_twin import _to_acdc
    from jaxsim.io import find_cases, load_case
    from jaxsim.train import GLOCase, patient_phases

    loaded = []
    for path in paths:
        for files in find_cases(path):
            loaded.append(load_case(files, spacing=spacing))
    if not loaded:
        raise ValueError("--real holds no labelled cases")
    phases = patient_phases(loaded)
    patients: dict[str, dict] = {}
    for case in loaded:
        patient, phase = phases[case.name]
        key = patient if phase in ("ED", "ES") else case.name
        slot = patients.setdefault(key, {})
        labels = _to_acdc(case.labels, classes, f"--real {case.name}")
        slot[phase or "ED"] = (labels, case.geometry)
    cases = []
    for name, slot in sorted(patients.items()):
        if "ED" not in slot:
            raise ValueError(f"--real: patient {name} has an ES frame but no ED frame")
        ed, geom = slot["ED"]
        es = slot.get("ES", (None, None))[0]
        if es is not None and es.shape != ed.shape:
            raise ValueError(f"--real: {name}'s ED and ES grids differ")
        cases.append(GLOCase(name, ed, geom, labels_es=es))
    return cases


def _attach_twins(cases, folders):
    """Cases with the ``parameters`` of their twins (matched by patient name)."""
    import dataclasses

    by_name = {}
    for folder in folders:
        report = Path(folder) / "report.json"
        if not report.exists():
            raise FileNotFoundError(
                f"--twins {folder}: no report.json (run jaxsim twin)"
            )
        data = json.loads(report.read_text())
        stem = Path(data.get("input", {}).get("labels", folder.name)).name
        stem = stem.split(".")[0]
        m = _FRAME.match(stem)
        by_name[m["patient"] if m else Path(folder).name] = data["parameters"]
    names = {c.name for c in cases}
    unknown = sorted(set(by_name) - names)
    if unknown:
        raise ValueError(
            f"--twins: no --real case for {unknown}; cases are {sorted(names)}"
        )
    return [dataclasses.replace(c, twin=by_name.get(c.name)) for c in cases]


def run_shape(args: argparse.Namespace) -> int:
    from jaxsim.fit import parse_label_spec
    from jaxsim.train import ShapeGLOConfig, train_shape_glo

    classes = parse_label_spec(args.label_spec)
    for flag, value, lo in (
        ("--steps", args.steps, 0),
        ("--warm-steps", args.warm_steps, 0),
        ("--latent-dim", args.latent_dim, 1),
        ("--hidden", args.hidden, 1),
        ("--batch-size", args.batch_size, 1),
        ("--n-generated", args.n_generated, 1),
    ):
        if value is not None and value < lo:
            raise ValueError(f"{flag} must be >= {lo}; got {value}")
    if not all(1 <= n <= 16 for n in args.grid):
        raise ValueError(f"--grid takes three ints in [1, 16]; got {list(args.grid)}")
    spacing = None if args.spacing is None else parse_spacing(args.spacing)
    cases = _load_real(args.real, classes, spacing)
    if args.twins:
        cases = _attach_twins(cases, args.twins)
    given = {
        "latent_dim": args.latent_dim,
        "hidden": args.hidden,
        "steps": args.steps,
        "warm_steps": args.warm_steps,
        "batch_size": args.batch_size,
    }
    given = {k: v for k, v in given.items() if v is not None}
    given.update(grid_shape=tuple(args.grid), seed=args.seed)
    make = ShapeGLOConfig.reference if args.reference else ShapeGLOConfig
    config = make(**given)
    n_twins = sum(c.twin is not None for c in cases)
    print(
        f"jaxsim glo shape: {len(cases)} cases "
        f"({sum(c.labels_es is not None for c in cases)} with ES, {n_twins} with "
        f"twins), {config.warm_steps} warm-start + {config.steps} rasteriser steps"
    )
    report = train_shape_glo(
        cases,
        config,
        out=args.out / "shape",
        resume=args.resume,
        overwrite=args.force,
        progress=not args.quiet,
        n_generated=args.n_generated,
    )
    print(f"{'case':<14}{'phase':<6}{'LV':>7}{'MYO':>7}{'RV':>7}")
    for name, d in report["dice"].items():
        for phase, v in d.items():
            print(f"{name:<14}{phase:<6}{v['LV']:>7.3f}{v['MYO']:>7.3f}{v['RV']:>7.3f}")
    rate = report["plausibility"]["pass_rate"]
    print(
        f"plausible generated subjects: {100 * rate:.0f} % of "
        f"{report['plausibility']['n']}; wrote {args.out / 'shape'}"
    )
    return 0
