"""Verifying every record of a database (``jaxsim check``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._database import Database
from ._journal import Journal, verify_part
from ._schema import Dims

__all__ = ["check_database", "design_of"]


def design_of(db: Database):
    """The :class:`jaxsim.population.PopulationDesign` a database was made from."""
    from jaxsim.population import PopulationDesign, Preset

    d = db.design
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in d["preset"].items()}
    return PopulationDesign(Preset(**fields), int(d["seed"]))


def check_database(
    path: str | os.PathLike, *, progress: Callable | None = None
) -> dict:
    """Read every record back through its checksum; report the bad ones.

    A record is bad when its stored bytes fail their checksum, cannot be read, or
    hold what no record can (a non-finite image, a label index that disagrees
    with the record order), and when the file says it is complete but the record
    is missing. While a run is writing the file, its finished parts are checked.

    Args:
        path: a database (single file or a run's index).
        progress: optional callable ``progress(n_records_checked_now)``.

    Returns:
        ``{"path", "preset", "seed", "shard", "layout", "format_version",
        "complete", "records",
        "records_in_shard", "records_complete", "bad": {record: reason},
        "missing": [records of the shard not on disk]}``.

    Raises:
        ValueError: the file is not a readable population database.
    """
    path = Path(path)
    with Database(path) as db:
        design = design_of(db)
        i, n = (int(v) for v in str(db.attrs["shard"]).split("/"))
        shard_sets = design.label_sets_for_shard(i, n)
        n_c = db.n_contrasts
        in_shard = np.zeros(db.n_records, bool)
        for ls in shard_sets:
            in_shard[ls * n_c : (ls + 1) * n_c] = True
        flags = db.complete_flags
        bad: dict[int, str] = {}
        if db.layout == "journal":
            bad = _check_parts(path, db, design, flags, progress)
        else:
            for ls, why in db.unreadable_label_sets().items():
                bad.update({r: why for r in range(ls * n_c, (ls + 1) * n_c)})
            for r in np.flatnonzero(flags):
                why = db.verify(int(r))
                if why:
                    bad[int(r)] = why
                if progress is not None:
                    progress(1)
        missing = np.flatnonzero(in_shard & ~flags)
        complete = db.complete
        if complete:
            for r in missing:
                bad.setdefault(int(r), "missing, although the file is marked complete")
        return {
            "path": str(path),
            "preset": design.preset.name,
            "seed": design.seed,
            "shard": f"{i}/{n}",
            "layout": db.layout,
            "format_version": db.format_version,
            "complete": complete,
            "records": db.n_records,
            "records_in_shard": int(in_shard.sum()),
            "records_complete": int(flags.sum()),
            "bad": dict(sorted(bad.items())),
            "missing": [int(r) for r in missing if int(r) not in bad],
        }


def _check_parts(path, db, design, flags, progress) -> dict[int, str]:
    journal = Journal(path)
    dims = Dims.of(design)
    bad = {}
    for ls, part in journal.committed().items():
        why = verify_part(part, ls, design, dims)
        rows = range(*dims.rows(ls).indices(dims.n_records))
        if why:
            bad.update({r: f"{part.name}: {why}" for r in rows})
            flags[list(rows)] = False
        if progress is not None:
            progress(len(rows))
    for ls, why in db.unreadable_label_sets().items():
        rows = range(*dims.rows(ls).indices(dims.n_records))
        bad.update({r: why for r in rows if r not in bad})
    return bad
