"""The population database (HDF5): writer, reader, resume, shards and merge.

Schema (format ``jaxsim-population``, version 1)::

    /images            float32 (n_records, nz, ny, nx), one chunk per record
    /labels            uint8   (n_label_sets, nz, ny, nx), one map per subject x phase
    /affines           float64 (n_subjects, 4, 4) voxel (i, j, k) -> world mm (RAS+)
    /records/<column>  one row per record (see ``RECORD_COLUMNS``); ``complete`` is
                       set only after the record's image and label are on disk
    /subjects/<field>  the phantom parameters of every subject
    attrs: format, format_version, jaxsim_version, preset, seed, shard, design
           (JSON), tissue_names (JSON), shape, spacing, complete

Record ``r`` of subject ``s``, phase ``p`` (0 ED, 1 ES) and contrast ``c`` is
``r = (s * 2 + p) * n_contrasts + c``; its label map is ``labels[s * 2 + p]`` and
its placement ``affines[s]``. Every file, shard or not, has the full design's
layout; a shard fills (and marks complete) only its own records. The file attribute
``complete`` is true only when every record of the file's shard is complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from jaxsim.geometry import ImageGeometry
from jaxsim.phantoms import TISSUES

from ._files import check_writable

__all__ = [
    "FORMAT",
    "RECORD_COLUMNS",
    "Database",
    "generate_database",
    "merge_databases",
]

FORMAT, FORMAT_VERSION = "jaxsim-population", 1
#: Per-record columns: name -> (dtype, trailing shape description).
RECORD_COLUMNS = {
    "subject": "int32",
    "phase_index": "int8",
    "cardiac_phase": "float32",
    "contrast": "int16",
    "snr_level": "int8",
    "sequence_index": "int8",
    "tissue_draw": "int8",
    "snr": "float32",
    "tr": "float32",
    "te": "float32",
    "flip": "float32",
    "pd": "float32",
    "t1": "float32",
    "t2": "float32",
    "noise_std": "float32",
    "label_index": "int32",
}


def _version() -> str:
    from jaxsim import __version__

    return __version__


class Database:
    """Read access to a population database; raises on foreign or corrupt files.

    Example:
        >>> with Database("quick.h5") as db:
        ...     image, labels, geometry = db.record(0)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"database {self.path} does not exist")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as err:
            raise ValueError(
                f"{self.path} is not a readable HDF5 file ({err})"
            ) from err
        fmt = self._f.attrs.get("format")
        if fmt != FORMAT:
            self._f.close()
            raise ValueError(
                f"{self.path} is not a jaxsim population database "
                f"(format attribute {fmt!r}, expected {FORMAT!r})"
            )
        try:
            self.design = json.loads(self._f.attrs["design"])
            self.complete_flags = np.asarray(self._f["records/complete"], bool)
        except (KeyError, OSError, ValueError) as err:
            self._f.close()
            raise ValueError(f"{self.path} is corrupt or incomplete: {err}") from err

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    @property
    def attrs(self) -> dict:
        return dict(self._f.attrs)

    @property
    def n_records(self) -> int:
        return int(self._f["images"].shape[0])

    @property
    def complete(self) -> bool:
        """True when the file says its whole shard is on disk."""
        return bool(self._f.attrs.get("complete", False))

    @property
    def tissue_names(self) -> list[str]:
        return json.loads(self._f.attrs["tissue_names"])

    def records(self) -> dict[str, np.ndarray]:
        """Every record column as arrays (rows of incomplete records are zero)."""
        g = self._f["records"]
        return {k: np.asarray(g[k]) for k in g}

    def subjects(self) -> dict[str, np.ndarray]:
        g = self._f["subjects"]
        return {k: np.asarray(g[k]) for k in g}

    def geometry(self, record: int) -> ImageGeometry:
        s = int(self._f["records/subject"][record])
        return ImageGeometry(
            affine=np.asarray(self._f["affines"][s]),
            shape=tuple(self._f["images"].shape[1:]),
        )

    def record(self, index: int) -> tuple[np.ndarray, np.ndarray, ImageGeometry]:
        """``(image float32 (nz, ny, nx), labels uint8, geometry)`` of a record.

        Raises:
            ValueError: the record is outside the file or not complete.
        """
        if not 0 <= index < self.n_records:
            raise ValueError(f"record must lie in [0, {self.n_records}); got {index}")
        if not self.complete_flags[index]:
            raise ValueError(f"record {index} of {self.path} is not complete")
        label_index = int(self._f["records/label_index"][index])
        return (
            np.asarray(self._f["images"][index]),
            np.asarray(self._f["labels"][label_index]),
            self.geometry(index),
        )


# ------------------------------------------------------------------ writing
def _create(path: Path, design, shard: tuple[int, int], subjects) -> None:
    p = design.preset
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "jaxsim_version": _version(),
                "preset": p.name,
                "seed": design.seed,
                "shard": f"{shard[0]}/{shard[1]}",
                "design": json.dumps(design.describe()),
                "tissue_names": json.dumps(list(TISSUES)),
                "shape": p.shape,
                "spacing": p.spacing,
                "complete": False,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        shape = p.shape
        f.create_dataset(
            "images",
            (design.n_records, *shape),
            "float32",
            chunks=(1, *shape),
            compression="lzf",
            shuffle=True,
        )
        f.create_dataset(
            "labels",
            (design.n_label_sets, *shape),
            "uint8",
            chunks=(1, *shape),
            compression="gzip",
            shuffle=True,
        )
        f.create_dataset("affines", (design.n_subjects, 4, 4), "float64")
        g = f.create_group("records")
        n_t = len(TISSUES)
        for name, dtype in RECORD_COLUMNS.items():
            extra = (n_t,) if name in ("pd", "t1", "t2") else ()
            g.create_dataset(name, (design.n_records, *extra), dtype)
        g.create_dataset("complete", (design.n_records,), bool)
        sg = f.create_group("subjects")
        for name, value in subjects.items():
            sg.create_dataset(name, data=value)


def _check_resumable(path: Path, design, shard) -> None:
    with Database(path) as db:
        a = db.attrs
        expected = {
            "preset": design.preset.name,
            "seed": design.seed,
            "shard": f"{shard[0]}/{shard[1]}",
        }
        found = {k: (a[k].item() if hasattr(a[k], "item") else a[k]) for k in expected}
        if found != expected:
            raise ValueError(f"cannot resume {path}: it holds {found}, not {expected}")
        if db.design != json.loads(json.dumps(design.describe())):
            raise ValueError(f"cannot resume {path}: its design differs from this run")


def _write_label_set(f: h5py.File, design, ls) -> None:
    n_c = design.n_contrasts
    rows = slice(ls.index * n_c, (ls.index + 1) * n_c)
    f["images"][rows] = ls.images
    f["labels"][ls.index] = ls.labels
    f["affines"][ls.subject] = ls.affine
    for name, values in ls.records.items():
        f["records"][name][rows] = values
    f.flush()  # data first ...
    f["records/complete"][rows] = True  # ... then the flag that vouches for it
    f.flush()


def generate_database(
    design,
    path: str | os.PathLike,
    *,
    shard=(0, 1),
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable | None = None,
    devices=None,
) -> dict:
    """Simulate a design (or one shard of it) into an HDF5 database.

    Args:
        design: :class:`jaxsim.population.PopulationDesign`.
        path: output file.
        shard: ``(i, N)``: generate the i-th of N contiguous blocks of label sets.
        resume: continue an interrupted file of the same design and shard (the
            result is identical to an uninterrupted run); start it if absent.
        overwrite: replace an existing file (otherwise it is an error, unless
            resuming).
        progress: optional callable ``progress(n_records_done_now)`` per label set.
        devices: JAX devices to spread contrasts over (default: all local ones).

    Returns:
        Summary dict: records written, skipped, seconds, file size.
    """
    from jaxsim.population import simulate_label_set

    path = Path(path)
    i, n = shard
    todo = design.label_sets_for_shard(i, n)
    subjects = design.subjects()
    if resume and path.exists():
        _check_resumable(path, design, shard)
    else:
        check_writable(path, overwrite=overwrite, what="database")
        _create(
            path, design, shard, {k: np.asarray(v) for k, v in vars(subjects).items()}
        )
    with h5py.File(path, "r") as f:
        flags = np.asarray(f["records/complete"], bool)
    n_c = design.n_contrasts
    pending = [ls for ls in todo if not flags[ls * n_c : (ls + 1) * n_c].all()]
    t0 = time.perf_counter()
    written = 0
    for ls in pending:
        result = simulate_label_set(design, ls, subjects=subjects, devices=devices)
        with h5py.File(path, "r+") as f:
            _write_label_set(f, design, result)
        written += n_c
        if progress is not None:
            progress(n_c)
    with h5py.File(path, "r+") as f:
        flags = np.asarray(f["records/complete"], bool)
        mine = np.concatenate([np.arange(ls * n_c, (ls + 1) * n_c) for ls in todo])
        f.attrs["complete"] = bool(flags[mine].all())
    return {
        "records_written": written,
        "records_skipped": len(todo) * n_c - written,
        "records_in_shard": len(todo) * n_c,
        "seconds": time.perf_counter() - t0,
        "bytes": path.stat().st_size,
    }


def merge_databases(
    inputs, path: str | os.PathLike, *, overwrite: bool = False
) -> dict:
    """Join complete shards of one design into a single complete database.

    Raises:
        ValueError: shards of different designs, incomplete shards, overlapping or
            missing records.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise ValueError("merge needs at least one input database")
    dbs = [Database(p) for p in inputs]
    try:
        ref = dbs[0]
        n_records = ref.n_records
        for db in dbs:
            if db.design != ref.design:
                raise ValueError(f"{db.path} and {ref.path} hold different designs")
            if not db.complete:
                raise ValueError(f"{db.path} is not complete; finish it with --resume")
        owner = np.full(ref.n_records, -1)
        for k, db in enumerate(dbs):
            overlap = db.complete_flags & (owner >= 0)
            if overlap.any():
                raise ValueError(f"{db.path} repeats records already in another input")
            owner[db.complete_flags] = k
        if (owner < 0).any():
            missing = int((owner < 0).sum())
            raise ValueError(f"the inputs lack {missing} records of the design")
        path = check_writable(path, overwrite=overwrite, what="merged database")
        with h5py.File(path, "w", libver="latest") as out:
            for key, value in ref.attrs.items():
                out.attrs[key] = value
            out.attrs["shard"] = "0/1"
            for name in ("images", "labels", "affines", "records", "subjects"):
                ref._f.copy(ref._f[name], out, name=name)
            n_c = ref.n_records // out["labels"].shape[0]
            for db in dbs[1:]:
                rows = np.flatnonzero(db.complete_flags)
                for r in rows:
                    out["images"][r] = db._f["images"][r]
                    for col in db._f["records"]:
                        out["records"][col][r] = db._f["records"][col][r]
                for ls in np.unique(rows // n_c):
                    out["labels"][ls] = db._f["labels"][ls]
                    s = int(db._f["records/subject"][ls * n_c])
                    out["affines"][s] = db._f["affines"][s]
            out.attrs["complete"] = bool(np.asarray(out["records/complete"]).all())
    finally:
        for db in dbs:
            db.close()
    return {
        "records": int(n_records),
        "inputs": len(inputs),
        "bytes": Path(path).stat().st_size,
    }
