"""The population database layout (format ``jaxsim-population``, version 2).

Three kinds of HDF5 file share the dataset names below:

- a *single* file (``layout = "single"``): the database, every array stored in
  it; what a finished run, a merge or a repair leaves;
- a *part* (``format = "jaxsim-population-part"``): the records of one label set
  (subject x phase), written whole, then renamed into the run's journal folder;
- a journal *index* (``layout = "journal"``): what ``FILE.h5`` is while a run
  without an older ``FILE.h5`` is in progress; its arrays are HDF5 virtual
  datasets over the parts (absent parts read as zeros with ``complete`` false).

Every chunked dataset carries HDF5's Fletcher-32 checksum (version 2; version-1
files have none and stay readable).
"""

from __future__ import annotations

import dataclasses
import json
import time

import h5py
import numpy as np

from jaxsim.phantoms import TISSUES

FORMAT = "jaxsim-population"
PART_FORMAT = "jaxsim-population-part"
FORMAT_VERSION = 2
#: Versions this reader understands.
READABLE_VERSIONS = (1, 2)

#: Per-record columns: name -> dtype (``pd``, ``t1``, ``t2`` have a tissue axis).
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
PER_TISSUE = ("pd", "t1", "t2")

IMAGE_FILTERS = {"compression": "lzf", "shuffle": True, "fletcher32": True}
LABEL_FILTERS = {"compression": "gzip", "shuffle": True, "fletcher32": True}
CHECKSUM = {"fletcher32": True}


@dataclasses.dataclass(frozen=True)
class Dims:
    """Sizes of a design: subjects, label sets (subject x phase), contrasts, grid."""

    n_subjects: int
    n_label_sets: int
    n_contrasts: int
    shape: tuple[int, int, int]
    n_tissues: int = len(TISSUES)

    @property
    def n_records(self) -> int:
        return self.n_label_sets * self.n_contrasts

    @classmethod
    def of(cls, design) -> Dims:
        return cls(
            design.n_subjects,
            design.n_label_sets,
            design.n_contrasts,
            tuple(design.preset.shape),
        )

    def rows(self, label_set: int) -> slice:
        return slice(label_set * self.n_contrasts, (label_set + 1) * self.n_contrasts)

    def column_shape(self, name: str, n: int) -> tuple[int, ...]:
        return (n, self.n_tissues) if name in PER_TISSUE else (n,)


def version() -> str:
    from jaxsim import __version__

    return __version__


def identity(design, shard: tuple[int, int]) -> dict:
    """What a file or journal must match to be resumed by a run."""
    return {
        "preset": design.preset.name,
        "seed": int(design.seed),
        "shard": f"{shard[0]}/{shard[1]}",
    }


def design_json(design) -> str:
    return json.dumps(design.describe())


def file_attrs(design, shard, *, layout: str) -> dict:
    p = design.preset
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxsim_version": version(),
        **identity(design, shard),
        "design": design_json(design),
        "tissue_names": json.dumps(list(TISSUES)),
        "shape": p.shape,
        "spacing": p.spacing,
        "layout": layout,
        "checksums": "fletcher32",
        "complete": False,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def scalar(value):
    """An HDF5 attribute as a plain Python value."""
    return value.item() if hasattr(value, "item") else value


def create_arrays(f: h5py.File, dims: Dims, n_label_sets: int) -> None:
    """Create empty ``images``, ``labels``, ``affines`` and ``records/*``.

    ``n_label_sets`` is the design's count for a single file and 1 for a part.
    """
    n_c, shape = dims.n_contrasts, dims.shape
    n = n_label_sets * n_c
    f.create_dataset(
        "images", (n, *shape), "float32", chunks=(1, *shape), **IMAGE_FILTERS
    )
    f.create_dataset(
        "labels", (n_label_sets, *shape), "uint8", chunks=(1, *shape), **LABEL_FILTERS
    )
    n_affines = dims.n_subjects if n_label_sets > 1 else 1
    f.create_dataset(
        "affines", (n_affines, 4, 4), "float64", chunks=(1, 4, 4), **CHECKSUM
    )
    g = f.create_group("records")
    for name, dtype in RECORD_COLUMNS.items():
        shape_ = dims.column_shape(name, n)
        g.create_dataset(
            name, shape_, dtype, chunks=dims.column_shape(name, n_c), **CHECKSUM
        )
    g.create_dataset("complete", (n,), bool, chunks=(n_c,), **CHECKSUM)


def write_subjects(f: h5py.File, subjects: dict[str, np.ndarray]) -> None:
    g = f.create_group("subjects")
    for name, value in subjects.items():
        value = np.asarray(value)
        if value.size and value.ndim:
            g.create_dataset(name, data=value, chunks=value.shape, **CHECKSUM)
        else:
            g.create_dataset(name, data=value)


def same_filters(a: h5py.Dataset, b: h5py.Dataset) -> bool:
    """Whether raw chunks of ``a`` can be copied into ``b`` byte for byte."""
    return (
        a.chunks == b.chunks
        and a.dtype == b.dtype
        and a.id.get_create_plist().get_nfilters()
        == b.id.get_create_plist().get_nfilters()
        and all(
            a.id.get_create_plist().get_filter(i)[:3]
            == b.id.get_create_plist().get_filter(i)[:3]
            for i in range(a.id.get_create_plist().get_nfilters())
        )
    )
