"""Export a population database as an nnU-Net v2 raw data set."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxsim.phantoms import TISSUE_INDEX, TISSUES

from ._database import Database
from ._errors import OptionError, OutputExistsError, escape
from ._files import fsync_dir
from ._nifti import save_nifti

__all__ = ["ACDC_LABELS", "export_nnunet"]

#: The ACDC convention: background 0, RV blood 1, LV myocardium 2, LV blood 3.
ACDC_LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
_ACDC_SOURCE = {"RV": "rv_blood", "MYO": "lv_myocardium", "LV": "lv_blood"}


def _acdc_lut() -> np.ndarray:
    lut = np.zeros(len(TISSUES), np.uint8)
    for name, value in ACDC_LABELS.items():
        if name != "background":
            lut[TISSUE_INDEX[_ACDC_SOURCE[name]]] = value
    return lut


def export_nnunet(
    database: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    acdc_labels: bool = False,
    overwrite: bool = False,
    prefix: str = "jaxsim",
    progress: Callable | None = None,
) -> dict:
    """Write ``imagesTr/``, ``labelsTr/`` and ``dataset.json`` (nnU-Net v2 raw).

    Every complete record becomes one training case ``{prefix}_{record:05d}`` with
    its image as channel 0000 and its label map (all phantom tissues, or the ACDC
    convention RV=1, MYO=2, LV=3 with ``acdc_labels``), both NIfTI with the
    record's affine.

    The cases are written into a hidden folder inside ``out_dir`` and moved into
    place at the end, ``dataset.json`` last: an interrupted export leaves no
    ``dataset.json``, and a replaced set keeps none of its old cases. Other
    content of ``out_dir`` (e.g. ``imagesTs/``) is left alone.

    Args:
        database: population HDF5 file.
        out_dir: the nnU-Net data set folder (e.g. ``Dataset501_Jaxsim``).
        acdc_labels: map labels to the ACDC convention.
        overwrite: replace the data set already in ``out_dir``.
        prefix: case-name prefix.
        progress: optional callable per written case.

    Returns:
        ``{"cases": n, "out_dir": str}``.

    Raises:
        OptionError: ``out_dir`` is a file, or the database has no complete record.
        OutputExistsError: ``out_dir`` holds a data set and ``overwrite`` is false.
        CorruptDatabaseError: a record fails its checksum (nothing is replaced).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OptionError(
            f"{{out_dir}} {escape(out)} is a file, not a folder", out_dir="out_dir"
        )
    present = [n for n in _OURS if (out / n).exists()]
    if present and not overwrite:
        raise OutputExistsError(
            f"{escape(out)} already holds an nnU-Net data set "
            f"({', '.join(present)}); pass {{overwrite}} to replace it",
            overwrite="overwrite=True",
        )
    lut = _acdc_lut() if acdc_labels else np.arange(len(TISSUES), dtype=np.uint8)
    with Database(database) as db:
        rows = np.flatnonzero(db.complete_flags)
        if rows.size == 0:
            raise OptionError(
                f"{{database}} {escape(database)} has no complete record to export",
                database="database",
            )
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        for entry in out.glob(".jaxsim-export-*"):
            shutil.rmtree(entry, ignore_errors=True)  # left by a killed export
        stage = Path(tempfile.mkdtemp(prefix=".jaxsim-export-", dir=out))
        try:
            for sub in ("imagesTr", "labelsTr"):
                (stage / sub).mkdir()
            for r in rows:
                image, labels, geometry = db.record(int(r))
                case = f"{prefix}_{int(r):05d}"
                save_nifti(stage / "imagesTr" / f"{case}_0000.nii.gz", image, geometry)
                save_nifti(stage / "labelsTr" / f"{case}.nii.gz", lut[labels], geometry)
                if progress is not None:
                    progress(1)
            _dataset_json(stage, database, acdc_labels, int(rows.size))
            _swap_in(stage, out)
        except BaseException:
            if created:  # nothing of ours is left in it
                shutil.rmtree(out, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return {"cases": int(rows.size), "out_dir": str(out)}


_OURS = ("dataset.json", "imagesTr", "labelsTr")


def _dataset_json(stage: Path, database, acdc_labels: bool, n: int) -> None:
    labels = (
        ACDC_LABELS
        if acdc_labels
        else {("background" if n == "air" else n): i for i, n in enumerate(TISSUES)}
    )
    dataset = {
        "channel_names": {"0": "cine bSSFP MRI"},
        "labels": labels,
        "numTraining": n,
        "file_ending": ".nii.gz",
        "name": Path(database).stem,
        "description": "Simulated cine bSSFP from a jaxsim virtual population",
    }
    (stage / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")


def _swap_in(stage: Path, out: Path) -> None:
    """Replace ``out``'s data set by ``stage``'s; ``dataset.json`` goes last."""
    old = stage / "old"
    old.mkdir()
    if (out / "dataset.json").exists():  # from here on the folder reads unfinished
        os.replace(out / "dataset.json", old / "dataset.json")
        fsync_dir(out)
    for sub in ("imagesTr", "labelsTr"):
        if (out / sub).exists():
            os.replace(out / sub, old / sub)
        os.replace(stage / sub, out / sub)
    fsync_dir(out)
    os.replace(stage / "dataset.json", out / "dataset.json")
    fsync_dir(out)
