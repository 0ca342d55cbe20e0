"""Patient twins on real ACDC label maps: Dice per structure and wall time.

For every patient of a folder of ACDC HDF5 files (``patientNNN_frame01.h5`` the
ED frame, ``patientNNN_frame02.h5`` the ES frame; no spacing is stored, so the
grid is 10 x 1.5 x 1.5 mm), fits one twin to ED and ES jointly with the settings
of ``jaxsim twin`` and reports the twin-vs-real Dice of LV blood, LV myocardium and
RV blood per phase, and the fit's wall time (compilation included).

Usage: python benchmarks/bench_twin.py [FOLDER] (default ../shared/data/acdc);
writes benchmarks/results/bench_twin.json and prints a Markdown table.
SMOKE=1 fits the first patient with a few steps.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from jaxsim.fit import fit_twin
from jaxsim.geometry import ImageGeometry
from jaxsim.io import read_image_label_h5

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import RESULTS, environment  # noqa: E402

SPACING = (10.0, 1.5, 1.5)


def main() -> None:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    smoke = os.environ.get("SMOKE") == "1"
    patients = sorted(
        {p.name.split("_")[0] for p in folder.glob("patient*_frame01.h5")}
    )
    if smoke:
        patients = patients[:1]
    rows = []
    for patient in patients:
        _, ed = read_image_label_h5(folder / f"{patient}_frame01.h5")
        es_path = folder / f"{patient}_frame02.h5"
        es = read_image_label_h5(es_path)[1] if es_path.exists() else None
        geom = ImageGeometry.axis_aligned(shape=ed.shape, spacing=SPACING)
        steps = (4, 6) if smoke else (40, 160)
        result = fit_twin(ed, geom, labels_es=es, steps=steps, grid_shape=(6, 6, 7),
                          max_displacement=30.0)  # fmt: skip
        row = {
            "patient": patient,
            "dice": result.dice,
            "initial_dice": result.initial_dice,
            "seconds": result.seconds,
            "volumes": len(result.dice),
        }
        rows.append(row)
        print(patient, json.dumps(result.dice), f"{result.seconds:.0f} s", flush=True)
    summary = {}
    for phase in ("ED", "ES"):
        for name in ("LV", "MYO", "RV"):
            values = [r["dice"][phase][name] for r in rows if phase in r["dice"]]
            if values:
                summary[f"{phase}_{name}"] = [
                    float(np.mean(values)),
                    float(np.std(values)),
                ]
    seconds = [r["seconds"] for r in rows]
    out = {
        "environment": environment(),
        "spacing_mm": SPACING,
        "rows": rows,
        "mean_sd": {k: [float(x) for x in v] for k, v in summary.items()},
        "seconds_per_patient": float(np.mean(seconds)),
        "seconds_per_volume": float(np.sum(seconds) / sum(r["volumes"] for r in rows)),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_twin.json").write_text(json.dumps(out, indent=2) + "\n")
    print("\n| patient | ED LV | ED MYO | ED RV | ES LV | ES MYO | ES RV | fit (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        d = r["dice"]
        cells = [f"{d[p][n]:.3f}" if p in d else "—" for p in ("ED", "ES")
                 for n in ("LV", "MYO", "RV")]  # fmt: skip
        print(f"| {r['patient']} | {' | '.join(cells)} | {r['seconds']:.0f} |")
    means = [f"{summary[f'{p}_{n}'][0]:.3f}" for p in ("ED", "ES")
             for n in ("LV", "MYO", "RV")]  # fmt: skip
    print(f"| mean | {' | '.join(means)} | {np.mean(seconds):.0f} |")


if __name__ == "__main__":
    main()
