"""Reading population databases (HDF5); see :mod:`jaxsim.io._schema` for the layout.

Schema (format ``jaxsim-population``, version 2)::

    /images            float32 (n_records, nz, ny, nx), one chunk per record
    /labels            uint8   (n_label_sets, nz, ny, nx), one map per subject x phase
    /affines           float64 (n_subjects, 4, 4) voxel (i, j, k) -> world mm (RAS+)
    /records/<column>  one row per record (see ``RECORD_COLUMNS``); ``complete`` is
                       true only for records whose image and label are on disk
    /subjects/<field>  the phantom parameters of every subject
    attrs: format, format_version, jaxsim_version, preset, seed, shard, design
           (JSON), tissue_names (JSON), shape, spacing, layout, checksums, complete

Record ``r`` of subject ``s``, phase ``p`` (0 ED, 1 ES) and contrast ``c`` is
``r = (s * 2 + p) * n_contrasts + c``; its label map is ``labels[s * 2 + p]`` and
its placement ``affines[s]``. Every file, shard or not, has the full design's
layout; a shard fills (and marks complete) only its own records. The file attribute
``complete`` is true only when every record of the file's shard is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from jaxsim.geometry import ImageGeometry

from ._errors import CorruptDatabaseError, OptionError, escape
from ._schema import FORMAT, READABLE_VERSIONS, version

__all__ = ["Database", "describe"]

# Appended to corruption messages (the CLI spells the option as its flags).
_REPAIR_HINT = "; regenerate it with {repair}"
_REPAIR = {"repair": "generate_database(..., resume=True, repair=True)"}


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r", locking="best-effort")
    except (OSError, ValueError) as err:
        size = path.stat().st_size
        why = "it is empty" if size == 0 else f"{err}"
        raise CorruptDatabaseError(
            f"{escape(path)} is not a readable HDF5 file ({escape(why)}): "
            "truncated, damaged or of another kind"
        ) from err


class Database:
    """Read access to a population database; raises on foreign or corrupt files.

    Opening a database that a run is writing is safe: the reader sees the records
    completed so far (more as they complete), and the writer is unaffected. When
    the run finishes, the reader moves on to the finished file by itself.

    Stored arrays carry checksums: a damaged record raises
    :class:`CorruptDatabaseError` naming it, never returns wrong values.

    Example:
        >>> with Database("quick.h5") as db:
        ...     image, labels, geometry = db.record(0)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"database {self.path} does not exist")
        if self.path.is_dir():
            raise OptionError(
                f"{escape(self.path)} is a folder, not a population database file"
            )
        self._f: h5py.File | None = None
        self._open()

    # ------------------------------------------------------------ opening
    def _open(self) -> None:
        f = _open_h5(self.path)
        try:
            self._inode = _inode(self.path)
            self._read_header(f)
        except BaseException:
            f.close()
            raise
        if self._f is not None:
            self._f.close()
        self._f = f
        self._flags: np.ndarray | None = None

    def _read_header(self, f: h5py.File) -> None:
        fmt = f.attrs.get("format")
        if fmt != FORMAT:
            raise ValueError(
                f"{self.path} is not a jaxsim population database "
                f"(format attribute {fmt!r}, expected {FORMAT!r})"
            )
        found = f.attrs.get("format_version")
        if found is None or int(found) not in READABLE_VERSIONS:
            lo, hi = READABLE_VERSIONS[0], READABLE_VERSIONS[-1]
            raise ValueError(
                f"{self.path} has format_version {found}; jaxsim {version()} reads "
                f"versions {lo} to {hi}: open it with the jaxsim that wrote it "
                f"({f.attrs.get('jaxsim_version', 'unknown')}) or a newer one"
            )
        try:
            self.format_version = int(found)
            self.layout = str(f.attrs.get("layout", "single"))
            self.design = json.loads(f.attrs["design"])
            n_records, *shape = f["images"].shape
            n_sets = f["labels"].shape[0]
        except (KeyError, OSError, ValueError, TypeError) as err:
            raise CorruptDatabaseError(
                f"{escape(self.path)} is corrupt or incomplete: {escape(err)}"
            ) from err
        if n_sets < 1 or n_records % n_sets:
            raise CorruptDatabaseError(
                f"{escape(self.path)} is corrupt: {n_records} images do not split "
                f"into {n_sets} label sets"
            )
        self._n_records, self._n_sets, self._shape = n_records, n_sets, tuple(shape)

    def _refresh(self) -> None:
        """A journal index is replaced by the finished file: follow it."""
        if self.layout == "journal" and _inode(self.path) not in (None, self._inode):
            self._open()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    # ------------------------------------------------------------ sizes
    @property
    def attrs(self) -> dict:
        self._refresh()
        return dict(self._f.attrs)

    @property
    def n_records(self) -> int:
        return self._n_records

    @property
    def n_label_sets(self) -> int:
        """Label sets (subject x phase); each has ``n_contrasts`` records."""
        return self._n_sets

    @property
    def n_contrasts(self) -> int:
        return self._n_records // self._n_sets

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def complete(self) -> bool:
        """True when the file says its whole shard is on disk."""
        self._refresh()
        return bool(self._f.attrs.get("complete", False))

    @property
    def tissue_names(self) -> list[str]:
        return json.loads(self._f.attrs["tissue_names"])

    # ------------------------------------------------------------ flags
    @property
    def complete_flags(self) -> np.ndarray:
        """``(n_records,)`` bool: which records are on disk (re-read while a run
        writes the file). Records whose flag cannot be read count as incomplete
        (:meth:`unreadable_label_sets` lists them)."""
        self._refresh()
        if self._flags is None or self.layout == "journal":
            self._flags, self._unreadable = self._read_flags()
        return self._flags.copy()

    def unreadable_label_sets(self) -> dict[int, str]:
        """Label sets whose ``complete`` flags fail to read: index -> reason."""
        self.complete_flags  # noqa: B018 - refreshes
        return dict(self._unreadable)

    def _read_flags(self) -> tuple[np.ndarray, dict[int, str]]:
        dset = self._f["records/complete"]
        try:
            return np.asarray(dset[()], bool), {}
        except OSError:
            pass
        flags = np.zeros(self._n_records, bool)
        bad = {}
        n_c = self.n_contrasts
        for ls in range(self._n_sets):
            rows = slice(ls * n_c, (ls + 1) * n_c)
            try:
                flags[rows] = dset[rows]
            except OSError as err:
                bad[ls] = str(err)
        return flags, bad

    # ------------------------------------------------------------ tables
    def records(self) -> dict[str, np.ndarray]:
        """Every record column as arrays (rows of incomplete records are zero).

        Raises:
            CorruptDatabaseError: a column's stored bytes fail their checksum.
        """
        self._refresh()
        g = self._f["records"]
        out = {}
        for name in g:
            try:
                out[name] = np.asarray(g[name][()])
            except OSError as err:
                rows = self._bad_rows(g[name])
                raise self._corrupt(rows, f"records/{name}", err) from err
        return out

    def subjects(self) -> dict[str, np.ndarray]:
        g = self._f["subjects"]
        out = {}
        for name in g:
            try:
                out[name] = np.asarray(g[name][()])
            except OSError as err:
                raise CorruptDatabaseError(
                    f"{escape(self.path)} is corrupt: subjects/{name} fails its "
                    f"checksum ({escape(err)})"
                ) from err
        return out

    def _bad_rows(self, dset: h5py.Dataset) -> list[int]:
        n_c, bad = self.n_contrasts, []
        for ls in range(self._n_sets):
            try:
                dset[ls * n_c : (ls + 1) * n_c]
            except OSError:
                bad.extend(range(ls * n_c, (ls + 1) * n_c))
        return bad

    # ------------------------------------------------------------ records
    def geometry(self, record: int) -> ImageGeometry:
        """Placement of a record's grid (its subject's affine)."""
        self._refresh()
        self._check_index(record)
        if self.layout == "journal":  # each part holds its own affine
            name, row = "label_set_affines", record // self.n_contrasts
        else:
            name, row = "affines", int(self._read(record, "records/subject", record))
        return ImageGeometry(
            affine=np.asarray(self._read(record, name, row)), shape=self._shape
        )

    def record(self, index: int) -> tuple[np.ndarray, np.ndarray, ImageGeometry]:
        """``(image float32 (nz, ny, nx), labels uint8, geometry)`` of a record.

        Raises:
            ValueError: the record is outside the file or not complete.
            CorruptDatabaseError: its stored bytes fail their checksum, or hold
                values no record can have (non-finite image, wrong label index).
        """
        self._refresh()
        self._check_index(index)
        if not self._read(index, "records/complete", index):
            raise ValueError(f"record {index} of {self.path} is not complete")
        label_index = int(self._read(index, "records/label_index", index))
        expected = index // self.n_contrasts
        if label_index != expected:
            raise self._corrupt(
                [index],
                "records/label_index",
                f"it says {label_index}, the record order says {expected}",
            )
        image = np.asarray(self._read(index, "images", index))
        if not np.isfinite(image).all():
            raise self._corrupt([index], "images", "non-finite values")
        labels = np.asarray(self._read(index, "labels", label_index))
        return image, labels, self.geometry(index)

    def verify(self, index: int) -> str | None:
        """Why record ``index`` is bad (unreadable or implausible), else None.

        Reads the record and its row of every column; an incomplete record is not
        bad (``complete_flags`` tells those apart).
        """
        try:
            if not self._read(index, "records/complete", index):
                return None
            self.record(index)
            for name in self._f["records"]:
                self._read(index, f"records/{name}", index)
        except CorruptDatabaseError as err:
            return err.reason
        return None

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._n_records:
            raise OptionError(
                f"{{record}} must lie in [0, {self._n_records}); got {index}",
                record="record",
            )

    def _read(self, record: int, name: str, row: int):
        try:
            return self._f[name][row]
        except OSError as err:
            raise self._corrupt([record], name, err) from err

    def _corrupt(self, rows, name: str, err) -> CorruptDatabaseError:
        rows = sorted(set(int(r) for r in rows))
        which = (
            f"record {rows[0]}"
            if len(rows) == 1
            else f"records {_ranges(rows)}"
            if rows
            else "a record"
        )
        reason = f"{name}: {describe(err)}"
        return CorruptDatabaseError(
            f"{which} of {escape(self.path)} is corrupt ({escape(reason)})"
            + _REPAIR_HINT,
            records=rows,
            reason=reason,
            **_REPAIR,
        )


def describe(err) -> str:
    """An HDF5 read error in words (a failed filter is a failed checksum)."""
    text = str(err)
    if "filter returned failure" in text or "checksum" in text:
        return f"stored bytes fail their checksum ({text})"
    return text


def _inode(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _ranges(rows: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts, start = [], rows[0]
    for a, b in zip(rows, [*rows[1:], None], strict=True):
        if b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(parts)
