"""``jaxsim population``, ``jaxsim merge`` and ``jaxsim export-nnunet``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def add_parser(subparsers) -> None:
    from jaxsim.population import PRESETS

    presets = "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items())
    p = subparsers.add_parser(
        "population",
        help="generate a virtual population database (HDF5)",
        description="Simulate a labelled cine MR database from the open phantom. "
        f"Presets - {presets}. Writes FILE.h5, FILE_montage.png (sample records with "
        "label overlay) and FILE_stats.csv/.json (population statistics).",
    )
    p.add_argument(
        "--preset", required=True, choices=sorted(PRESETS), help="population design"
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="FILE.h5", help="output database"
    )
    p.add_argument("--seed", type=int, default=0, help="design seed (default 0)")
    p.add_argument(
        "--shard",
        default=None,
        metavar="i/N",
        help="generate only the i-th of N blocks of the design (0-based)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same preset/seed/shard",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="with --resume: regenerate records that fail their checksums",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace existing outputs (the old database stays readable until the "
        "new one is complete) or discard an interrupted run",
    )
    p.add_argument(
        "--no-pictures",
        action="store_true",
        help="skip the montage PNG and statistics files",
    )
    p.set_defaults(
        func=run_population,
        stoppable=True,
        flags={
            "path": "--out",
            "seed": "--seed",
            "shard": "--shard",
            "repair": "--resume --repair",
            "repair_alone": "--repair",
        },
    )

    m = subparsers.add_parser(
        "merge",
        help="join complete shards into one database",
        description="Merge the complete shard files of one design (from "
        "'jaxsim population --shard i/N') into a single complete database.",
    )
    m.add_argument("inputs", nargs="+", type=Path, metavar="SHARD.h5")
    m.add_argument("--out", required=True, type=Path, metavar="FILE.h5")
    m.add_argument("--force", action="store_true", help="overwrite --out")
    m.set_defaults(
        func=run_merge,
        stoppable=True,
        flags={
            "path": "--out",
            "inputs": "SHARD.h5",
            "resume": "'jaxsim population ... --resume'",
        },
    )

    e = subparsers.add_parser(
        "export-nnunet",
        help="write an nnU-Net v2 raw data set",
        description="Export every complete record of a database as an nnU-Net v2 "
        "raw data set: OUT_DIR/imagesTr/*_0000.nii.gz, OUT_DIR/labelsTr/*.nii.gz, "
        "OUT_DIR/dataset.json.",
    )
    e.add_argument("database", type=Path, metavar="FILE.h5")
    e.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    e.add_argument(
        "--acdc-labels",
        action="store_true",
        help="map labels to the ACDC convention (RV=1, MYO=2, LV=3)",
    )
    e.add_argument(
        "--force", action="store_true", help="replace the data set in OUT_DIR"
    )
    e.set_defaults(func=run_export, flags={"database": "FILE.h5", "out_dir": "OUT_DIR"})

    c = subparsers.add_parser(
        "check",
        help="verify every record of a database",
        description="Read every record of a population database back through its "
        "checksums and list the bad ones (exit code 1 if there are any). Bad "
        "records are regenerated with 'jaxsim population ... --resume --repair'.",
    )
    c.add_argument("database", type=Path, metavar="DB.h5")
    c.set_defaults(func=run_check, flags={"path": "DB.h5"})


def _side_outputs(out: Path) -> dict[str, Path]:
    stem = out.with_suffix("")
    return {
        "montage": Path(f"{stem}_montage.png"),
        "csv": Path(f"{stem}_stats.csv"),
        "json": Path(f"{stem}_stats.json"),
    }


class _Bar:
    """A tqdm bar that appears with the first progress (not before an error)."""

    def __init__(self, total: int, unit: str):
        self.total, self.unit, self.bar = total, unit, None

    def update(self, n: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit=self.unit, dynamic_ncols=True)
        self.bar.update(n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def run_population(args: argparse.Namespace) -> int:
    from jaxsim.io import (
        check_seed,
        check_shard,
        check_side_outputs,
        generate_database,
        write_statistics,
    )
    from jaxsim.population import PRESETS, PopulationDesign, parse_shard

    design = PopulationDesign(PRESETS[args.preset], check_seed(args.seed))
    shard = check_shard(design, parse_shard(args.shard))
    side = _side_outputs(args.out)
    run = {"preset": args.preset, "seed": args.seed, "shard": "{}/{}".format(*shard)}
    if not args.no_pictures:
        check_side_outputs(side, run=run, resume=args.resume, overwrite=args.force)
    n_in_shard = len(design.label_sets_for_shard(*shard)) * design.n_contrasts
    print(
        f"jaxsim population: preset {args.preset}, seed {args.seed}, shard "
        f"{shard[0]}/{shard[1]}: {n_in_shard} of {design.n_records} records, "
        f"grid {design.preset.shape} at {design.preset.spacing} mm"
    )
    t0 = time.perf_counter()
    with _Bar(n_in_shard, "vol") as bar:
        summary = generate_database(
            design,
            args.out,
            shard=shard,
            resume=args.resume,
            overwrite=args.force,
            repair=args.repair,
            progress=bar.update,
            stop=args.stop,
        )
    seconds = time.perf_counter() - t0
    done = summary["records_written"]
    repaired = summary["records_repaired"]
    print(
        f"wrote {done} records ({summary['records_skipped']} already done"
        + (f", {repaired} repaired" if repaired else "")
        + f") to {args.out} in {seconds:.1f} s "
        f"({done / max(seconds, 1e-9):.2f} volumes/s), "
        f"{summary['bytes'] / 1e6:.1f} MB"
    )
    if not args.no_pictures:  # derived from the complete database, JSON first
        write_statistics(args.out, side["csv"], side["json"], overwrite=True)
        write_montage(args.out, side["montage"])
        print(f"montage {side['montage']}, statistics {side['csv']}, {side['json']}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from jaxsim.io import merge_databases

    summary = merge_databases(
        args.inputs, args.out, overwrite=args.force, stop=args.stop
    )
    print(
        f"merged {summary['inputs']} shards into {args.out}: {summary['records']} "
        f"records, {summary['bytes'] / 1e6:.1f} MB"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from jaxsim.io import Database, export_nnunet

    with Database(args.database) as db:
        total = int(db.complete_flags.sum())
    with _Bar(total, "case") as bar:
        summary = export_nnunet(
            args.database,
            args.out_dir,
            acdc_labels=args.acdc_labels,
            overwrite=args.force,
            progress=bar.update,
        )
    print(f"wrote {summary['cases']} nnU-Net cases to {summary['out_dir']}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from jaxsim.io import check_database

    report = check_database(args.database)
    bad, missing = report["bad"], report["missing"]
    state = "complete" if report["complete"] else "not complete"
    if report["layout"] == "journal":
        state = "being written or interrupted (continue it with --resume)"
    print(
        f"{args.database}: format {report['format_version']}, {state}; "
        f"{report['records_complete']} of {report['records_in_shard']} records of "
        f"its shard on disk, {len(bad)} bad"
        + (f", {len(missing)} missing" if missing else "")
    )
    for reason, records in _group(bad).items():
        print(
            f"  bad: record{'s' if '-' in records or ',' in records else ''} "
            f"{records}: {reason}"
        )
    if bad:
        print(
            f"regenerate them with: jaxsim population --preset {report['preset']} "
            f"--seed {report['seed']} --shard {report['shard']} --out "
            f"{args.database} --resume --repair"
        )
    return 1 if bad else 0


def _group(bad: dict[int, str]) -> dict[str, str]:
    """``{record: reason}`` -> ``{reason: "3-5, 9"}``."""
    by_reason: dict[str, list[int]] = {}
    for r, why in bad.items():
        by_reason.setdefault(why, []).append(r)
    out = {}
    for why, records in by_reason.items():
        parts, start = [], records[0]
        for a, b in zip(records, [*records[1:], None], strict=True):
            if b != a + 1:
                parts.append(f"{start}" if start == a else f"{start}-{a}")
                start = b
        out[why] = ", ".join(parts)
    return out


# ---------------------------------------------------------------- pictures, stats
def write_montage(
    database: Path, path: Path, *, max_rows: int = 4, max_cols: int = 6
) -> None:
    """Mid-slice of sample records with a label outline, per label set x contrast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxsim.io import Database, atomic_path
    from jaxsim.phantoms import TISSUE_INDEX

    heart = [TISSUE_INDEX[n] for n in ("lv_blood", "lv_myocardium", "rv_blood")]
    colors = ["tab:red", "tab:green", "tab:blue"]
    with Database(database) as db:
        rec = db.records()
        flags = db.complete_flags
        sets = [ls for ls in np.unique(rec["label_index"][flags])][:max_rows]
        n_c = db.n_contrasts
        cols = np.unique(np.linspace(0, n_c - 1, min(max_cols, n_c)).round()).astype(
            int
        )
        fig, axes = plt.subplots(
            len(sets),
            len(cols),
            squeeze=False,
            figsize=(2.2 * len(cols), 2.4 * len(sets)),
            dpi=90,
        )
        for i, ls in enumerate(sets):
            for j, c in enumerate(cols):
                r = int(ls) * n_c + int(c)
                ax = axes[i, j]
                ax.axis("off")
                if not flags[r]:
                    continue
                image, labels, _ = db.record(r)
                mid = image.shape[0] // 2
                ax.imshow(
                    image[mid],
                    cmap="gray",
                    vmin=0,
                    vmax=np.percentile(image[mid], 99.5),
                )
                for lab, color in zip(heart, colors, strict=True):
                    ax.contour(
                        labels[mid] == lab, levels=[0.5], colors=color, linewidths=0.6
                    )
                phase = "ED" if rec["phase_index"][r] == 0 else "ES"
                ax.set_title(
                    f"subj {rec['subject'][r]} {phase} SNR "
                    f"{rec['snr'][r]:g}\nflip "
                    f"{np.degrees(rec['flip'][r]):.0f} TR "
                    f"{rec['tr'][r] * 1e3:.1f}",
                    fontsize=7,
                )
        fig.suptitle(
            "jaxsim population: LV blood (red), LV myocardium (green), RV blood (blue)",
            fontsize=9,
        )
        fig.tight_layout()
        with atomic_path(path, overwrite=True, what="montage") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
