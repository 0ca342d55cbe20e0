"""Files derived from a database: population statistics, and who owns them."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._database import Database
from ._errors import OutputExistsError, escape
from ._files import atomic_path
from ._schema import scalar

__all__ = ["check_side_outputs", "write_statistics"]

_IDENTITY = ("preset", "seed", "shard")


def check_side_outputs(
    paths: Mapping[str, str | os.PathLike],
    *,
    run: Mapping[str, object],
    resume: bool,
    overwrite: bool,
) -> None:
    """Raise unless the files derived from a database may be (re)written.

    They may when absent, with ``overwrite``, or when resuming the run that
    wrote them: the statistics JSON (written first) names its database's preset,
    seed and shard, and they must be ``run``'s.

    Args:
        paths: the side files; the one keyed ``"json"`` is the statistics JSON.
        run: ``{"preset", "seed", "shard"}`` of the run about to write them.

    Raises:
        OutputExistsError: some exist and belong to another run (or to no run
            this can tell).
    """
    existing = [Path(p) for p in paths.values() if Path(p).exists()]
    if not existing or overwrite:
        return
    names = ", ".join(escape(p) for p in existing)
    verb = "exists" if len(existing) == 1 else "exist"
    if resume:
        owner = _owner(Path(paths["json"]))
        if owner == {k: run[k] for k in _IDENTITY}:
            return
        raise OutputExistsError(
            f"{names} {verb} but {'does' if len(existing) == 1 else 'do'} not "
            f"belong to this run ({escape(run)}); pass {{overwrite}} to replace "
            f"{'it' if len(existing) == 1 else 'them'}",
            overwrite="overwrite=True",
        )
    raise OutputExistsError(
        f"{names} {verb}; pass {{overwrite}} to replace "
        f"{'it' if len(existing) == 1 else 'them'}",
        overwrite="overwrite=True",
    )


def _owner(json_path: Path) -> dict | None:
    try:
        owner = json.loads(json_path.read_text())["database"]
        return {k: owner[k] for k in _IDENTITY}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_statistics(
    database: str | os.PathLike,
    csv_path: str | os.PathLike,
    json_path: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> None:
    """Per-subject EDV/ESV/EF (prescribed and realised) and record statistics.

    Both files are written atomically, the JSON first; it names the database's
    preset, seed and shard (see :func:`check_side_outputs`).
    """
    from jaxsim.phantoms import TISSUE_INDEX

    lv = TISSUE_INDEX["lv_blood"]
    with Database(database) as db:
        rec, subj = db.records(), db.subjects()
        flags = db.complete_flags
        n_c = db.n_contrasts
        owner = {k: scalar(db.attrs[k]) for k in _IDENTITY}
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
            rows.append(
                {
                    "subject": int(s),
                    "sex": "female" if subj["sex"][s] > 0.5 else "male",
                    "edv_ml": edv,
                    "esv_ml": esv,
                    "ef": (edv - esv) / edv,
                    "label_lv_ed_ml": volumes.get(0, float("nan")),
                    "label_lv_es_ml": volumes.get(1, float("nan")),
                }
            )

    def stats(values):
        v = np.asarray(values, float)
        return {
            "mean": float(np.nanmean(v)),
            "std": float(np.nanstd(v)),
            "min": float(np.nanmin(v)),
            "max": float(np.nanmax(v)),
        }

    summary = {
        "database": {"file": Path(database).name, **owner},
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
    with atomic_path(json_path, overwrite=overwrite, what="statistics") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    with atomic_path(csv_path, overwrite=overwrite, what="statistics") as tmp:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
