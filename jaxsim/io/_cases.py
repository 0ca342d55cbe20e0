"""Folders of real labelled images: ACDC as distributed, NIfTI pairs, HDF5 files.

A labelled case is an image volume, its integer label map on the same grid, and
the grid's geometry (or, for files that store none, a spacing the caller gives).
:func:`find_cases` recognises, under a folder (recursively):

* the ACDC layout as distributed: ``patientNNN/patientNNN_frameXX.nii.gz`` with
  ``patientNNN_frameXX_gt.nii.gz`` (``Info.cfg`` names the ED and ES frames);
* NIfTI pairs ``NAME.nii[.gz]`` with ``NAME_gt``, ``NAME_seg``, ``NAME_label`` or
  ``NAME_labels`` beside it, and the nnU-Net raw layout ``imagesTr/NAME_0000`` with
  ``labelsTr/NAME``;
* HDF5 files holding ``image`` and ``label`` datasets (the layout of
  ``../shared/data/acdc``), which store no spacing.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from jaxsim.geometry import ImageGeometry

from ._errors import OptionError, escape
from ._nifti import load_nifti, read_image_label_h5
from ._schema import FORMAT

__all__ = [
    "LabelledCase",
    "CaseFiles",
    "find_cases",
    "load_case",
    "load_cases",
    "is_population_database",
]

_NII = (".nii.gz", ".nii")
_H5 = (".h5", ".hdf5")
_LABEL_SUFFIXES = ("_gt", "_seg", "_label", "_labels")
_ACDC_FRAME = re.compile(r"^(patient\d+)_frame(\d+)$")


@dataclasses.dataclass(frozen=True)
class CaseFiles:
    """Where one labelled case lives.

    Attributes:
        name: case name (file stem, e.g. ``patient001_frame01``).
        image: image file (NIfTI or HDF5).
        labels: label NIfTI, or ``None`` when ``image`` is an HDF5 file holding both.
        phase: ``"ED"``/``"ES"`` when the ACDC ``Info.cfg`` says so, else ``None``.
    """

    name: str
    image: Path
    labels: Path | None
    phase: str | None = None


@dataclasses.dataclass(frozen=True)
class LabelledCase:
    """A real image with its labels.

    Attributes:
        name: case name.
        image: ``(nz, ny, nx)`` float32 intensities (as stored).
        labels: ``(nz, ny, nx)`` uint8 labels in the task scheme.
        geometry: the grid's :class:`~jaxsim.geometry.ImageGeometry` (for HDF5
            files, axis-aligned with the given spacing).
        spacing: ``(sz, sy, sx)`` mm.
        phase: ``"ED"``/``"ES"`` or ``None``.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    geometry: ImageGeometry
    spacing: tuple[float, float, float]
    phase: str | None = None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _NII + _H5:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _acdc_phases(folder: Path) -> dict[int, str]:
    """``{frame: "ED"/"ES"}`` from a patient folder's ``Info.cfg`` (if any)."""
    info = folder / "Info.cfg"
    out: dict[int, str] = {}
    if info.exists():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("ED", "ES"):
                try:
                    out[int(value.strip())] = key.strip()
                except ValueError:
                    pass
    return out


def _nifti_cases(folder: Path) -> list[CaseFiles]:
    files = {p.name: p for p in folder.iterdir() if p.name.endswith(_NII)}
    out = []
    for _, path in sorted(files.items()):
        stem = _stem(path)
        if any(stem.endswith(s) for s in _LABEL_SUFFIXES) or stem.endswith("_4d"):
            continue
        for suffix in _LABEL_SUFFIXES:
            label = next(
                (
                    files[f"{stem}{suffix}{ext}"]
                    for ext in _NII
                    if f"{stem}{suffix}{ext}" in files
                ),
                None,
            )
            if label is not None:
                phase = None
                match = _ACDC_FRAME.match(stem)
                if match:
                    phase = _acdc_phases(folder).get(int(match.group(2)))
                out.append(CaseFiles(stem, path, label, phase))
                break
    return out


def _nnunet_cases(folder: Path) -> list[CaseFiles]:
    images, labels = folder / "imagesTr", folder / "labelsTr"
    if not (images.is_dir() and labels.is_dir()):
        return []
    out = []
    for path in sorted(images.iterdir()):
        stem = _stem(path)
        if not path.name.endswith(_NII) or not stem.endswith("_0000"):
            continue
        case = stem[: -len("_0000")]
        label = next(
            (
                labels / f"{case}{ext}"
                for ext in _NII
                if (labels / f"{case}{ext}").exists()
            ),
            None,
        )
        if label is not None:
            out.append(CaseFiles(case, path, label))
    return out


def find_cases(root: str | os.PathLike) -> list[CaseFiles]:
    """Every labelled case under ``root`` (a folder, or one file), sorted by name.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no labelled case was found (the message lists the layouts).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if root.is_file():
        if root.name.endswith(_H5):
            return [CaseFiles(_stem(root), root, None)]
        raise ValueError(
            f"{root} is a file but not an HDF5 case; give a folder of cases or an "
            ".h5 file with 'image' and 'label'"
        )
    found: list[CaseFiles] = []
    for folder in sorted({root, *(p for p in root.rglob("*") if p.is_dir())}):
        found += _nifti_cases(folder) + _nnunet_cases(folder)
        found += [
            CaseFiles(_stem(p), p, None)
            for p in sorted(folder.iterdir())
            if p.is_file() and p.name.endswith(_H5)
        ]
    if not found:
        raise ValueError(
            f"no labelled cases found under {root} (looked for ACDC patientNNN "
            "folders, NIfTI image/label pairs NAME + NAME_gt|_seg|_label, nnU-Net "
            "imagesTr/labelsTr, and HDF5 files with 'image' and 'label')"
        )
    names = [c.name for c in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"case names repeat under {root}: {dupes[:5]}")
    return sorted(found, key=lambda c: c.name)


def _map_labels(labels: np.ndarray, label_map, name: str, n_classes) -> np.ndarray:
    if label_map is not None:
        lut = np.zeros(256, np.int32) - 1
        lut[0] = 0
        for src, dst in label_map.items():
            lut[int(src)] = int(dst)
        values = np.unique(labels)
        unknown = values[lut[values] < 0]
        if unknown.size:
            raise OptionError(
                escape(
                    f"{name}: label values {unknown.tolist()} are not in the label "
                    f"mapping {dict(label_map)} (map them in "
                )
                + "{label_map}; 0 is background)",
                label_map="label_map",
            )
        labels = lut[labels]
    if n_classes is not None and labels.max(initial=0) >= n_classes:
        raise OptionError(
            escape(
                f"{name}: label values up to {int(labels.max())} fall outside the "
                f"scheme of {n_classes} classes (0..{n_classes - 1}); give a label "
                "mapping ("
            )
            + "{label_map})",
            label_map="label_map={file value: class value}",
        )
    return labels.astype(np.uint8)


def load_case(
    files: CaseFiles,
    *,
    spacing=None,
    label_map: Mapping[int, int] | None = None,
    n_classes: int | None = None,
) -> LabelledCase:
    """Read one case.

    Args:
        files: from :func:`find_cases`.
        spacing: ``(sz, sy, sx)`` mm for files that store none (HDF5); ignored for
            NIfTI, whose header gives it.
        label_map: ``{file value: task value}``; values absent from it are an
            error (0 maps to 0 unless given).
        n_classes: the task's class count, to reject labels outside the scheme.

    Raises:
        ValueError: unreadable case, image/label shape or affine mismatch, labels
            outside the scheme, non-integer labels, or no spacing for an HDF5 file.
    """
    if files.labels is None:
        image, labels = read_image_label_h5(files.image)
        if spacing is None:
            raise ValueError(
                f"{files.image} stores no voxel spacing; give one (--spacing SZ SY SX)"
            )
        spacing = tuple(float(s) for s in spacing)
        geometry = ImageGeometry.axis_aligned(shape=image.shape, spacing=spacing)
    else:
        image, geometry = load_nifti(files.image)
        raw, lgeom = load_nifti(files.labels)
        if image.ndim != 3:
            raise ValueError(f"{files.image} must be a 3D volume; got {image.shape}")
        if raw.shape != image.shape:
            raise ValueError(
                f"{files.labels} shape {raw.shape} differs from {files.image} "
                f"shape {image.shape}"
            )
        gap = np.max(np.abs(np.asarray(geometry.affine) - np.asarray(lgeom.affine)))
        if gap > 1e-3 * max(1.0, float(np.max(np.abs(np.asarray(geometry.affine))))):
            raise ValueError(
                f"{files.labels} is not on the grid of {files.image}: their affines "
                f"differ by up to {gap:.3g} mm"
            )
        if np.issubdtype(raw.dtype, np.floating):
            if not np.all(raw == np.round(raw)):
                raise ValueError(f"{files.labels} holds non-integer label values")
        labels = np.asarray(raw).astype(np.int64)
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
            raise ValueError(f"{files.labels} holds label values outside [0, 255]")
        spacing = tuple(float(s) for s in np.asarray(geometry.spacing))
    labels = _map_labels(np.asarray(labels), label_map, files.name, n_classes)
    return LabelledCase(
        name=files.name,
        image=np.asarray(image, np.float32),
        labels=labels,
        geometry=geometry,
        spacing=spacing,
        phase=files.phase,
    )


def load_cases(
    root: str | os.PathLike,
    *,
    spacing=None,
    label_map: Mapping[int, int] | None = None,
    n_classes: int | None = None,
) -> list[LabelledCase]:
    """Every labelled case under ``root`` (:func:`find_cases`, :func:`load_case`)."""
    return [
        load_case(c, spacing=spacing, label_map=label_map, n_classes=n_classes)
        for c in find_cases(root)
    ]


def is_population_database(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a jaxsim population database (not an image/label file)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False
