"""Writing a *single* database file from label sets held in other files.

Used at the end of a run (parts, and the good records of the file being
repaired) and by merge (shards). The file is written beside its destination under
a hidden temporary name through a :class:`HookedFile`, checked as it goes (every
source record is read back through its checksum), synced, marked ``complete``
last and renamed into place: the destination is either the old file or the new
one, whole.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ._database import describe
from ._errors import CorruptDatabaseError, Interrupted, escape
from ._files import HookedFile, _temporary, fsync_dir
from ._schema import RECORD_COLUMNS, Dims, create_arrays, same_filters, write_subjects

__all__ = ["Source", "write_single", "remove_stale_temporaries"]

_REPAIR = {"repair": "generate_database(..., resume=True, repair=True)"}


@dataclass(frozen=True)
class Source:
    """Where label set ``label_set``'s records are: a part or a single file.

    ``verified``: its images were read back through their checksums already (or
    written from memory by this process); their chunks are then copied as they
    are, checksums included, without decoding them again.
    """

    label_set: int
    path: Path
    is_part: bool
    verified: bool = False


def remove_stale_temporaries(path: Path) -> None:
    """Delete hidden temporaries a killed writer of ``path`` left beside it.

    Those are ``.NAME.XXXXXXXX.partial`` / ``.tmp`` files and
    ``.NAME.parts.XXXXXXXX`` folders (``XXXXXXXX``: Python's temporary names).
    """
    name = re.escape(path.name)
    files = re.compile(rf"\.{name}\.[A-Za-z0-9_]{{8}}\.(partial|tmp)")
    folders = re.compile(rf"\.{name}\.parts\.[A-Za-z0-9_]{{8}}")
    for entry in os.scandir(path.parent):
        if files.fullmatch(entry.name) and entry.is_file():
            os.unlink(entry.path)
        elif folders.fullmatch(entry.name) and entry.is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)


def write_single(
    path: Path,
    *,
    attrs: dict,
    dims: Dims,
    subjects: dict,
    sources: list[Source],
    complete: bool,
    stop: Callable[[], object] | None = None,
    stop_message: tuple[str, dict] = ("stopped", {}),
    what: str = "database",
    transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> None:
    """Write (and rename into place) a single file holding ``sources``.

    Records of sources not marked ``verified`` are read back through their
    checksums on the way. ``transform(record, image)``, if given, replaces each
    image by a new one of the same shape (finite float32) on the way.

    Raises:
        CorruptDatabaseError: a source record fails its checksum (``path`` is
            left as it was).
        WriteError: a write failed (``path`` is left as it was).
        Interrupted: ``stop()`` returned true between two label sets.
    """
    tmp = _temporary(path)
    out_file = HookedFile(tmp, what=what, shown=path)
    try:
        _write(
            out_file, attrs, dims, subjects, sources, complete, stop, stop_message,
            transform,
        )  # fmt: skip
        out_file.sync()
        out_file.close()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        out_file.check()  # a failed write explains whatever HDF5 raised after it
        raise
    finally:
        out_file.close()
        if tmp.exists():
            tmp.unlink()


def _write(
    out_file, attrs, dims, subjects, sources, complete, stop, stop_message, transform
):
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(h5py.File(out_file, "w", libver="latest"))
        out.attrs.update({**attrs, "complete": False})
        create_arrays(out, dims, dims.n_label_sets)
        write_subjects(out, subjects)
        out_file.check()
        singles: dict[Path, h5py.File] = {}
        for source in sources:
            reason = stop() if stop is not None else None
            if reason:
                template, options = stop_message
                raise Interrupted(template, reason=reason, **options)
            if source.is_part:
                with h5py.File(source.path, "r", locking="best-effort") as src:
                    _copy_label_set(out, src, source, dims, transform)
            else:
                if source.path not in singles:
                    singles[source.path] = stack.enter_context(
                        h5py.File(source.path, "r", locking="best-effort")
                    )
                _copy_label_set(out, singles[source.path], source, dims, transform)
            out_file.check()
        rows = np.zeros(dims.n_records, bool)
        for source in sources:
            rows[dims.rows(source.label_set)] = True
        out["records/complete"][...] = rows
        out.attrs["complete"] = bool(complete)  # vouches for all of the above
        out.flush()
        out_file.check()


def _copy_label_set(
    out: h5py.File, src: h5py.File, source: Source, dims: Dims, transform=None
):
    ls, n_c = source.label_set, dims.n_contrasts
    rows = dims.rows(ls)
    records = list(range(rows.start, rows.stop))
    first = 0 if source.is_part else rows.start  # the label set's rows in src

    def read(name, index, which=records):
        try:
            return np.asarray(src[name][index])
        except OSError as err:
            raise _corrupt(source, which, f"{name}: {describe(err)}") from err

    block = slice(first, first + n_c)
    if not read("records/complete", block).all():
        raise _corrupt(source, records, "records/complete is not set")
    columns = {name: read(f"records/{name}", block) for name in RECORD_COLUMNS}
    if (columns["label_index"] != ls).any():
        raise _corrupt(source, records, "records/label_index disagrees")
    for name, values in columns.items():
        out["records"][name][rows] = values
    images, raw = src["images"], same_filters(src["images"], out["images"])
    raw = raw and transform is None
    for k in range(n_c):
        if transform is not None or not (raw and source.verified):
            image = read("images", first + k, [rows.start + k])
            if not np.isfinite(image).all():
                raise _corrupt(source, [rows.start + k], "images: non-finite values")
        if transform is not None:
            image = _transformed(transform, rows.start + k, image)
        if raw:  # verified bytes, copied without recompressing
            mask, chunk = images.id.read_direct_chunk((first + k, 0, 0, 0))
            out["images"].id.write_direct_chunk((rows.start + k, 0, 0, 0), chunk, mask)
        else:
            out["images"][rows.start + k] = image
    out["labels"][ls] = read("labels", 0 if source.is_part else ls)
    subject = int(columns["subject"][0])
    out["affines"][subject] = read("affines", 0 if source.is_part else subject)


def _transformed(transform, record: int, image: np.ndarray) -> np.ndarray:
    new = np.asarray(transform(record, image), np.float32)
    if new.shape != image.shape:
        raise ValueError(
            f"the image transform changed record {record}'s shape from "
            f"{image.shape} to {new.shape}"
        )
    if not np.isfinite(new).all():
        raise ValueError(f"the image transform made record {record} non-finite")
    return new


def _corrupt(source: Source, records, reason: str) -> CorruptDatabaseError:
    records = list(records)
    which = (
        f"record {records[0]}"
        if len(records) == 1
        else f"records {records[0]}-{records[-1]}"
    )
    kind = "part file" if source.is_part else "database"
    return CorruptDatabaseError(
        f"{which} in {kind} {escape(source.path)} is corrupt ({escape(reason)}); "
        "regenerate it with {repair}",
        records=records,
        reason=reason,
        **_REPAIR,
    )
