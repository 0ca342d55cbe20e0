"""The journal of a run in progress: ``FILE.h5.parts/``.

The folder holds ``run.json`` (what the run makes: preset, seed, shard, design)
and one part file per finished label set, ``ls_NNNNNN.h5``. A part is built in
memory and written to a hidden temporary file, synced and renamed: a part that
exists is whole. The folder itself appears by rename, with ``run.json`` in it,
and disappears by rename (into a hidden folder that is then deleted).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path

import h5py
import numpy as np

from ._database import describe
from ._errors import OptionError, escape
from ._files import fsync_dir, remove_tree, write_bytes
from ._schema import (
    FORMAT,
    FORMAT_VERSION,
    PART_FORMAT,
    RECORD_COLUMNS,
    Dims,
    create_arrays,
    design_json,
    file_attrs,
    identity,
    scalar,
    version,
    write_subjects,
)

__all__ = ["Journal", "write_index"]

_PART = re.compile(r"ls_(\d{6})\.h5")


def run_description(design, shard) -> dict:
    return {
        "format": FORMAT + "-journal",
        "format_version": FORMAT_VERSION,
        **identity(design, shard),
        "design": json.loads(design_json(design)),
    }


class Journal:
    """The parts folder beside a database ``path``."""

    def __init__(self, path: Path):
        self.path = path
        self.folder = path.parent / f"{path.name}.parts"

    def exists(self) -> bool:
        return self.folder.exists()

    def read_run(self) -> dict:
        """``run.json`` of an existing journal.

        Raises:
            OptionError: the folder is not a jaxsim journal.
        """
        try:
            run = json.loads((self.folder / "run.json").read_text())
            if run.get("format") != FORMAT + "-journal":
                raise ValueError(f"format {run.get('format')!r}")
        except (OSError, ValueError, AttributeError) as err:
            raise OptionError(
                f"{escape(self.folder)} is in the way of the run's journal but is "
                f"not one ({escape(err)}); move it away"
            ) from err
        return run

    def create(self, design, shard) -> None:
        """Make the folder with its ``run.json``, atomically."""
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=self.path.parent)
        )
        try:
            text = json.dumps(run_description(design, shard), indent=1) + "\n"
            write_bytes(tmp / "run.json", text.encode(), what="journal")
            os.chmod(tmp, 0o777 & ~_umask())
            os.replace(tmp, self.folder)
            fsync_dir(self.path.parent)
        finally:
            if tmp.exists():
                remove_tree(tmp)

    def discard(self) -> None:
        remove_tree(self.folder)

    def part_path(self, label_set: int) -> Path:
        return self.folder / f"ls_{label_set:06d}.h5"

    def relative_part(self, label_set: int) -> str:
        """A part's name relative to the database's folder (for the index)."""
        return f"{self.folder.name}/ls_{label_set:06d}.h5"

    def committed(self) -> dict[int, Path]:
        """Finished parts: label set -> path (temporaries are not listed)."""
        if not self.exists():
            return {}
        found = {}
        for entry in os.scandir(self.folder):
            m = _PART.fullmatch(entry.name)
            if m:
                found[int(m.group(1))] = Path(entry.path)
        return dict(sorted(found.items()))

    def remove_temporaries(self) -> None:
        """Delete what a killed writer left half-written."""
        if self.exists():
            for entry in os.scandir(self.folder):
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    os.unlink(entry.path)

    def write_part(self, design, result, dims: Dims) -> None:
        """Commit one label set's records (see :mod:`jaxsim.io._journal`)."""
        write_bytes(
            self.part_path(result.index),
            part_bytes(design, result, dims),
            what=f"part {result.index} of database",
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def part_bytes(design, result, dims: Dims) -> memoryview:
    """An HDF5 file image holding one simulated label set."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver="latest") as f:
        f.attrs.update(
            {
                "format": PART_FORMAT,
                "format_version": FORMAT_VERSION,
                "jaxsim_version": version(),
                "preset": design.preset.name,
                "seed": int(design.seed),
                "design": design_json(design),
                "label_set": int(result.index),
                "subject": int(result.subject),
            }
        )
        create_arrays(f, dims, 1)
        f["images"][...] = result.images
        f["labels"][0] = result.labels
        f["affines"][0] = result.affine
        for name in RECORD_COLUMNS:
            f["records"][name][...] = result.records[name]
        f["records/complete"][...] = True
    return buffer.getbuffer()


def verify_part(path: Path, label_set: int, design, dims: Dims) -> str | None:
    """Why a committed part cannot be used, or None if every byte checks out."""
    try:
        f = h5py.File(path, "r", locking="best-effort")
    except (OSError, ValueError) as err:
        return f"unreadable part file ({err})"
    with f:
        try:
            a = f.attrs
            if a.get("format") != PART_FORMAT:
                return f"not a part file (format {a.get('format')!r})"
            if scalar(a.get("label_set")) != label_set:
                return f"holds label set {scalar(a.get('label_set'))}"
            if json.loads(a["design"]) != json.loads(design_json(design)):
                return "belongs to another design"
            for name in ("images", "labels", "affines"):
                _read_all(f[name])
            images = f["images"]
            if images.shape != (dims.n_contrasts, *dims.shape):
                return f"images have shape {images.shape}"
            for name in (*RECORD_COLUMNS, "complete"):
                values = _read_all(f["records"][name])
                if len(values) != dims.n_contrasts:
                    return f"records/{name} has {len(values)} rows"
            if not np.asarray(f["records/complete"][()]).all():
                return "records/complete is not set"
            if (np.asarray(f["records/label_index"][()]) != label_set).any():
                return "records/label_index disagrees with the label set"
            for k in range(dims.n_contrasts):
                if not np.isfinite(images[k]).all():
                    return f"image {k} holds non-finite values"
        except _ChecksumError as err:
            return str(err)
        except (OSError, KeyError, ValueError, TypeError) as err:
            return f"unreadable part file ({err})"
    return None


class _ChecksumError(Exception):
    pass


def _read_all(dset: h5py.Dataset) -> np.ndarray:
    try:
        return np.asarray(dset[()])
    except OSError as err:
        raise _ChecksumError(f"{dset.name.lstrip('/')}: {describe(err)}") from err


def write_index(
    path: Path, journal: Journal, design, shard, dims: Dims, subjects, todo
) -> None:
    """Write the journal index at ``path``: virtual datasets over the parts.

    Besides the single file's datasets it has ``label_set_affines``
    ``(n_label_sets, 4, 4)``, each label set's own affine; ``affines[s]`` shows
    the affine of subject ``s``'s first label set in the shard.

    Args:
        subjects: ``name -> (n_subjects,)`` phantom parameters.
        todo: the shard's label sets.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver="latest") as f:
        f.attrs.update(file_attrs(design, shard, layout="journal"))
        f.attrs["parts"] = journal.folder.name
        _virtual(f, "images", dims, todo, journal, per_record=True)
        _virtual(f, "labels", dims, todo, journal, per_record=False)
        _virtual(f, "affines", dims, todo, journal, per_record=False)
        f.create_group("records")
        for name in (*RECORD_COLUMNS, "complete"):
            _virtual(f, f"records/{name}", dims, todo, journal, per_record=True)
        write_subjects(f, subjects)
    write_bytes(path, buffer.getbuffer(), what="database index")


def _virtual(f, name, dims: Dims, todo, journal: Journal, *, per_record: bool):
    n_c = dims.n_contrasts
    column = name.rsplit("/", 1)[-1]
    if name in ("images", "labels"):
        dtype = "float32" if name == "images" else "uint8"
        trailing = dims.shape
    elif name == "affines":
        dtype, trailing = "float64", (4, 4)
    else:
        dtype = "bool" if column == "complete" else RECORD_COLUMNS[column]
        trailing = dims.column_shape(column, 1)[1:]
    n = dims.n_records if per_record else dims.n_label_sets
    rows = n_c if per_record else 1
    layout = h5py.VirtualLayout((n, *trailing), dtype)
    for ls in todo:
        source = h5py.VirtualSource(
            journal.relative_part(ls), name, shape=(rows, *trailing)
        )
        layout[ls * rows : (ls + 1) * rows] = source
    fill = np.zeros((), dtype)[()]
    if name != "affines":
        f.create_virtual_dataset(name, layout, fillvalue=fill)
        return
    f.create_virtual_dataset("label_set_affines", layout, fillvalue=fill)
    per_subject = h5py.VirtualLayout((dims.n_subjects, 4, 4), dtype)
    first: dict[int, int] = {}
    for ls in todo:
        first.setdefault(ls // (dims.n_label_sets // dims.n_subjects), ls)
    for s, ls in first.items():
        source = h5py.VirtualSource(journal.relative_part(ls), name, shape=(1, 4, 4))
        per_subject[s : s + 1] = source
    f.create_virtual_dataset("affines", per_subject, fillvalue=fill)
