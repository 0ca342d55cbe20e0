"""``jaxsim generate``: a population database from a learned shape generator."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from jaxsim.population import PRESETS

    p = subparsers.add_parser(
        "generate",
        help="generate a database from learned generators (jaxsim glo)",
        description="Draw N subjects from RUN_DIR's GLO shape generator (a "
        "Gaussian fitted to its learned latents) and simulate them exactly as "
        "'jaxsim population' does with the preset (grid, contrasts, ED and ES, "
        "noise, schema, crash safety, --resume). The database's design records "
        "the model folder, a checksum of its weights and latent Gaussian and the "
        "seed, so resuming with a changed model is refused. Writes DB.h5, "
        "DB_montage.png and DB_stats.csv/.json.",
        epilog="example: jaxsim generate --model glo_run --n 20 --preset quick "
        "--out generated.h5",
    )
    p.add_argument(
        "--model",
        required=True,
        type=Path,
        metavar="RUN_DIR",
        help="folder of 'jaxsim glo shape' (holding shape/)",
    )
    p.add_argument("--n", required=True, type=int, help="number of subjects (>= 1)")
    p.add_argument(
        "--out", required=True, type=Path, metavar="DB.h5", help="output database"
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=sorted(PRESETS),
        help="grid and contrasts of 'jaxsim population' (default quick)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same model, N, preset and seed",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing database (readable until the new one is "
        "complete) or discard an interrupted run",
    )
    p.add_argument(
        "--no-pictures",
        action="store_true",
        help="skip the montage PNG and statistics files",
    )
    p.add_argument(
        "--no-material",
        action="store_true",
        help="constant tissue properties even when RUN_DIR holds a material "
        "generator (jaxsim glo material); by default each subject gets a map "
        "drawn from it",
    )
    p.set_defaults(
        func=run,
        stoppable=True,
        flags={"path": "--out", "seed": "--seed"},
    )
    return p


def run(args: argparse.Namespace) -> int:
    from jaxsim._cli_population import _Bar, _side_outputs, write_montage
    from jaxsim.io import (
        check_seed,
        check_side_outputs,
        generate_database,
        write_statistics,
    )
    from jaxsim.population import PRESETS
    from jaxsim.train import generated_design

    if args.n < 1:
        raise ValueError(f"--n must be >= 1; got {args.n}")
    seed = check_seed(args.seed)
    design = generated_design(
        args.model,
        args.n,
        PRESETS[args.preset],
        seed,
        material=False if args.no_material else None,
    )
    side = _side_outputs(args.out)
    run_id = {"preset": args.preset, "seed": seed, "shard": "0/1"}
    if not args.no_pictures:
        check_side_outputs(side, run=run_id, resume=args.resume, overwrite=args.force)
    print(
        f"jaxsim generate: {args.n} subjects from {args.model} (checksum "
        f"{design.source.description['checksum'][:12]}"
        f"{', with material maps' if design.source.materials is not None else ''}), "
        f"preset {args.preset}, "
        f"seed {seed}: {design.n_records} records"
    )
    t0 = time.perf_counter()
    with _Bar(design.n_records, "vol") as bar:
        summary = generate_database(
            design,
            args.out,
            resume=args.resume,
            overwrite=args.force,
            progress=bar.update,
            stop=args.stop,
        )
    seconds = time.perf_counter() - t0
    print(
        f"wrote {summary['records_written']} records "
        f"({summary['records_skipped']} already done) to {args.out} in "
        f"{seconds:.1f} s, {summary['bytes'] / 1e6:.1f} MB"
    )
    if not args.no_pictures:
        write_statistics(args.out, side["csv"], side["json"], overwrite=True)
        write_montage(args.out, side["montage"])
        print(f"montage {side['montage']}, statistics {side['csv']}, {side['json']}")
    return 0
