"""Export a population database as an nnU-Net v2 raw data set."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxsim.phantoms import TISSUE_INDEX, TISSUES

from ._database import Database
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

    Args:
        database: population HDF5 file.
        out_dir: the nnU-Net data set folder (e.g. ``Dataset501_Jaxsim``).
        acdc_labels: map labels to the ACDC convention.
        overwrite: allow writing into a folder that already holds a dataset.json.
        prefix: case-name prefix.
        progress: optional callable per written case.

    Returns:
        ``{"cases": n, "out_dir": str}``.
    """
    out = Path(out_dir)
    if (out / "dataset.json").exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds an nnU-Net dataset.json; pass "
            "overwrite=True (--force)"
        )
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    lut = _acdc_lut() if acdc_labels else np.arange(len(TISSUES), dtype=np.uint8)
    with Database(database) as db:
        rows = np.flatnonzero(db.complete_flags)
        if rows.size == 0:
            raise ValueError(f"{database} has no complete record to export")
        for r in rows:
            image, labels, geometry = db.record(int(r))
            case = f"{prefix}_{int(r):05d}"
            save_nifti(
                out / "imagesTr" / f"{case}_0000.nii.gz",
                image,
                geometry,
                overwrite=overwrite,
            )
            save_nifti(
                out / "labelsTr" / f"{case}.nii.gz",
                lut[labels],
                geometry,
                overwrite=overwrite,
            )
            if progress is not None:
                progress(1)
    labels = (
        ACDC_LABELS
        if acdc_labels
        else {("background" if n == "air" else n): i for i, n in enumerate(TISSUES)}
    )
    dataset = {
        "channel_names": {"0": "cine bSSFP MRI"},
        "labels": labels,
        "numTraining": int(rows.size),
        "file_ending": ".nii.gz",
        "name": Path(database).stem,
        "description": "Simulated cine bSSFP from a jaxsim virtual population",
    }
    # Written last: a folder without dataset.json is visibly unfinished.
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return {"cases": int(rows.size), "out_dir": str(out)}
