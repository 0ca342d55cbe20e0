"""A copy of a database with every image replaced (e.g. translated to look real)."""

from __future__ import annotations

import json
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

__all__ = ["map_database"]


def map_database(
    source: str | os.PathLike,
    path: str | os.PathLike,
    transform: Callable[[int, np.ndarray], np.ndarray],
    *,
    attrs: dict | None = None,
    overwrite: bool = False,
    stop: Callable[[], object] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write ``path``: ``source`` with each image replaced by ``transform``'s.

    Labels, affines, the record table, the subjects and the file attributes are
    carried over unchanged (the schema is the source's), so the new file opens
    with :class:`Database` and exports to nnU-Net like the original. The file is
    written under a temporary name, marked complete last and renamed onto
    ``path``: a failure or a kill leaves ``path`` as it was.

    Args:
        source: a complete population database.
        path: output file (not ``source``).
        transform: ``transform(record, image) -> image``; ``image`` is the
            record's ``(nz, ny, nx)`` float32 volume, the result must have the
            same shape and be finite.
        attrs: file attributes to add or replace (JSON-able values are stored as
            JSON text, strings and numbers as they are).
        overwrite: replace an existing ``path``.
        stop: polled between label sets; a true value interrupts the write.
        progress: called with the number of records done after each label set.

    Returns:
        ``{"records": n, "bytes": size}``.

    Raises:
        OptionError: ``path`` is ``source``, or ``source`` is not complete.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: ``transform`` returned another shape or non-finite values.
    """
    source, path = Path(source), Path(path)
    if path.exists() and source.exists() and os.path.samefile(source, path):
        raise OptionError(
            f"{{path}} {escape(path)} is the source; write to a new file", path="path"
        )
    check_writable(path, overwrite=overwrite, what="database")
    with Database(source) as db:
        if db.layout == "journal" or not db.complete:
            raise OptionError(
                f"{escape(source)} is not complete; finish it with {{resume}}",
                resume="generate_database(..., resume=True)",
            )
        dims = Dims(
            n_subjects=int(db.design["n_subjects"]),
            n_label_sets=db.n_label_sets,
            n_contrasts=db.n_contrasts,
            shape=db.shape,
        )
        flags = db.complete_flags.reshape(db.n_label_sets, db.n_contrasts)
        sets = [ls for ls in range(db.n_label_sets) if flags[ls].all()]
        out_attrs = {
            k: v for k, v in db.attrs.items() if k not in ("parts", "complete")
        }
        subjects = db.subjects()
    for key, value in (attrs or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            value = json.dumps(value, sort_keys=True)
        out_attrs[key] = value
    out_attrs.update(
        format_version=FORMAT_VERSION,
        jaxsim_version=version(),
        layout="single",
        checksums="fletcher32",
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    done = [0]

    def poll():
        if progress is not None and done[0]:
            progress(done[0] * dims.n_contrasts)
        done[0] += 1
        return stop() if stop is not None else None

    with exclusive_lock(path, what="database"):
        remove_stale_temporaries(path)
        write_single(
            path,
            attrs=out_attrs,
            dims=dims,
            subjects=subjects,
            sources=[Source(ls, source, False) for ls in sets],
            complete=True,
            stop=poll,
            stop_message=(
                "stopped; " + escape(path) + " was left as it was: run it again",
                {},
            ),
            what="database",
            transform=transform,
        )
    if progress is not None:
        progress(len(sets) * dims.n_contrasts)
    return {"records": len(sets) * dims.n_contrasts, "bytes": path.stat().st_size}
