"""``jaxsim population``, ``jaxsim merge`` and ``jaxsim export-nnunet``."""

from __future__ import annotations

import argparse
import csv
import json
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
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument(
        "--no-pictures",
        action="store_true",
        help="skip the montage PNG and statistics files",
    )
    p.set_defaults(func=run_population)

    m = subparsers.add_parser(
        "merge",
        help="join complete shards into one database",
        description="Merge the complete shard files of one design (from "
        "'jaxsim population --shard i/N') into a single complete database.",
    )
    m.add_argument("inputs", nargs="+", type=Path, metavar="SHARD.h5")
    m.add_argument("--out", required=True, type=Path, metavar="FILE.h5")
    m.add_argument("--force", action="store_true", help="overwrite --out")
    m.set_defaults(func=run_merge)

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
    e.add_argument("--force", action="store_true", help="write into an existing set")
    e.set_defaults(func=run_export)


def _side_outputs(out: Path) -> dict[str, Path]:
    stem = out.with_suffix("")
    return {
        "montage": Path(f"{stem}_montage.png"),
        "csv": Path(f"{stem}_stats.csv"),
        "json": Path(f"{stem}_stats.json"),
    }


def run_population(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxsim.io import generate_database
    from jaxsim.population import PRESETS, PopulationDesign, parse_shard

    shard = parse_shard(args.shard)
    design = PopulationDesign(PRESETS[args.preset], args.seed)
    side = _side_outputs(args.out)
    if not args.no_pictures and not (args.force or args.resume):
        clash = [str(p) for p in side.values() if p.exists()]
        if clash:
            raise FileExistsError(f"{', '.join(clash)} exist; pass --force")
    n_in_shard = len(design.label_sets_for_shard(*shard)) * design.n_contrasts
    print(
        f"jaxsim population: preset {args.preset}, seed {args.seed}, shard "
        f"{shard[0]}/{shard[1]}: {n_in_shard} of {design.n_records} records, "
        f"grid {design.preset.shape} at {design.preset.spacing} mm"
    )
    t0 = time.perf_counter()
    with tqdm(total=n_in_shard, unit="vol", dynamic_ncols=True) as bar:
        summary = generate_database(
            design,
            args.out,
            shard=shard,
            resume=args.resume,
            overwrite=args.force,
            progress=bar.update,
        )
    seconds = time.perf_counter() - t0
    done = summary["records_written"]
    print(
        f"wrote {done} records ({summary['records_skipped']} already done) to "
        f"{args.out} in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} volumes/s), "
        f"{summary['bytes'] / 1e6:.1f} MB"
    )
    if not args.no_pictures:
        write_montage(args.out, side["montage"])
        write_statistics(args.out, side["csv"], side["json"])
        print(f"montage {side['montage']}, statistics {side['csv']}, {side['json']}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from jaxsim.io import merge_databases

    summary = merge_databases(args.inputs, args.out, overwrite=args.force)
    print(
        f"merged {summary['inputs']} shards into {args.out}: {summary['records']} "
        f"records, {summary['bytes'] / 1e6:.1f} MB"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxsim.io import Database, export_nnunet

    with Database(args.database) as db:
        total = int(db.complete_flags.sum())
    with tqdm(total=total, unit="case", dynamic_ncols=True) as bar:
        summary = export_nnunet(
            args.database,
            args.out_dir,
            acdc_labels=args.acdc_labels,
            overwrite=args.force,
            progress=bar.update,
        )
    print(f"wrote {summary['cases']} nnU-Net cases to {summary['out_dir']}")
    return 0


# ---------------------------------------------------------------- pictures, stats
def write_montage(
    database: Path, path: Path, *, max_rows: int = 4, max_cols: int = 6
) -> None:
    """Mid-slice of sample records with a label outline, per label set x contrast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxsim.io import Database
    from jaxsim.phantoms import TISSUE_INDEX

    heart = [TISSUE_INDEX[n] for n in ("lv_blood", "lv_myocardium", "rv_blood")]
    colors = ["tab:red", "tab:green", "tab:blue"]
    with Database(database) as db:
        rec = db.records()
        flags = db.complete_flags
        sets = [ls for ls in np.unique(rec["label_index"][flags])][:max_rows]
        n_c = db.n_records // max(1, int(db._f["labels"].shape[0]))
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
        fig.savefig(path)
        plt.close(fig)


def write_statistics(database: Path, csv_path: Path, json_path: Path) -> None:
    """Per-subject EDV/ESV/EF (prescribed and realised) and record statistics."""
    from jaxsim.io import Database
    from jaxsim.phantoms import TISSUE_INDEX

    lv = TISSUE_INDEX["lv_blood"]
    with Database(database) as db:
        rec, subj = db.records(), db.subjects()
        flags = db.complete_flags
        n_c = db.n_records // int(db._f["labels"].shape[0])
        rows = []
        for s in np.unique(rec["subject"][flags]):
            volumes = {}
            for phase in (0, 1):
                r = (int(s) * 2 + phase) * n_c
                if flags[r]:
                    _, labels, geom = db.record(r)
                    volumes[phase] = float(
                        (labels == lv).sum() * float(geom.voxel_volume) / 1000.0
                    )
            edv, esv = float(subj["edv"][s]), float(subj["esv"][s])
            row = {
                "subject": int(s),
                "sex": "female" if subj["sex"][s] > 0.5 else "male",
                "edv_ml": edv,
                "esv_ml": esv,
                "ef": (edv - esv) / edv,
                "label_lv_ed_ml": volumes.get(0, float("nan")),
                "label_lv_es_ml": volumes.get(1, float("nan")),
            }
            rows.append(row)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def stats(values):
        v = np.asarray(values, float)
        return {
            "mean": float(np.nanmean(v)),
            "std": float(np.nanstd(v)),
            "min": float(np.nanmin(v)),
            "max": float(np.nanmax(v)),
        }

    summary = {
        "records": int(flags.sum()),
        "subjects": len(rows),
        "edv_ml": stats([r["edv_ml"] for r in rows]),
        "esv_ml": stats([r["esv_ml"] for r in rows]),
        "ef": stats([r["ef"] for r in rows]),
        "snr_levels": sorted(set(np.asarray(rec["snr"][flags]).round(3).tolist())),
        "tr_ms": sorted(set((rec["tr"][flags] * 1e3).round(3).tolist())),
        "te_ms": sorted(set((rec["te"][flags] * 1e3).round(3).tolist())),
        "flip_deg": sorted(set(np.degrees(rec["flip"][flags]).round(2).tolist())),
        "noise_std": stats(rec["noise_std"][flags]),
    }
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
