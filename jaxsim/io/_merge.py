"""Merging complete shards of one design into a single database."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._database import Database
from ._errors import OptionError, escape
from ._files import check_writable, exclusive_lock
from ._schema import FORMAT_VERSION, Dims, version
from ._single import Source, remove_stale_temporaries, write_single

__all__ = ["merge_databases"]


def merge_databases(
    inputs,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    stop: Callable[[], object] | None = None,
) -> dict:
    """Join complete shards of one design into a single complete database.

    The output is written under a temporary name in ``path``'s folder, every
    record read back through its checksum, marked complete last and renamed onto
    ``path`` at the end: a failure or a kill leaves ``path`` as it was.

    Args:
        inputs: the shard files (complete, one design, disjoint records).
        path: output file (not one of the inputs).
        overwrite: replace an existing ``path`` (it stays unchanged until the
            merged file is complete).
        stop: optional callable polled between label sets (see
            :func:`generate_database`).

    Raises:
        OptionError: no inputs, ``path`` is an input, shards of different
            designs, incomplete shards, overlapping or missing records.
        CorruptDatabaseError: a record of an input fails its checksum.
        WriteError: a write failed (e.g. the disk is full).
    """
    inputs = [Path(p) for p in inputs]
    path = Path(path)
    if not inputs:
        raise OptionError("{inputs} must name at least one database", inputs="inputs")
    for p in inputs:
        if path.exists() and p.exists() and os.path.samefile(p, path):
            raise OptionError(
                f"{{path}} {escape(path)} is also an input; write the merge to a "
                "new file",
                path="path",
            )
    check_writable(path, overwrite=overwrite, what="merged database")
    dbs = []
    try:
        for p in inputs:
            dbs.append(Database(p))
        sources = _sources(dbs)
        ref = dbs[0]
        dims = Dims(
            n_subjects=int(ref.design["n_subjects"]),
            n_label_sets=ref.n_label_sets,
            n_contrasts=ref.n_contrasts,
            shape=ref.shape,
        )
        attrs = {k: v for k, v in ref.attrs.items() if k not in ("parts", "complete")}
        attrs.update(
            format_version=FORMAT_VERSION,
            jaxsim_version=version(),
            shard="0/1",
            layout="single",
            checksums="fletcher32",
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        subjects = ref.subjects()
        with exclusive_lock(path, what="merged database"):
            remove_stale_temporaries(path)
            write_single(
                path,
                attrs=attrs,
                dims=dims,
                subjects=subjects,
                sources=sources,
                complete=True,
                stop=stop,
                stop_message=(
                    "stopped; the merge left "
                    + escape(path)
                    + " as it was: run it again",
                    {},
                ),
                what="merged database",
            )
    finally:
        for db in dbs:
            db.close()
    return {
        "records": int(dims.n_records),
        "inputs": len(inputs),
        "bytes": path.stat().st_size,
    }


def _sources(dbs: list[Database]) -> list[Source]:
    ref = dbs[0]
    for db in dbs:
        if db.design != ref.design:
            raise OptionError(f"{db.path} and {ref.path} hold different designs")
        if db.layout == "journal" or not db.complete:
            raise OptionError(
                f"{escape(db.path)} is not complete; finish it with {{resume}}",
                resume="generate_database(..., resume=True)",
            )
    n_c = ref.n_contrasts
    owner = np.full(ref.n_label_sets, -1)
    for k, db in enumerate(dbs):
        flags = db.complete_flags.reshape(ref.n_label_sets, n_c).all(axis=1)
        if (flags & (owner >= 0)).any():
            raise OptionError(f"{db.path} repeats records already in another input")
        owner[flags] = k
    if (owner < 0).any():
        missing = int((owner < 0).sum()) * n_c
        raise OptionError(f"the inputs lack {missing} records of the design")
    return [Source(ls, dbs[k].path, False) for ls, k in enumerate(owner)]
