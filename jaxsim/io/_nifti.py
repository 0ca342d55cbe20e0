"""NIfTI images with their affines, and the HDF5 layout of the ACDC sample data."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from jaxsim.geometry import ImageGeometry

from ._files import atomic_path

__all__ = ["save_nifti", "load_nifti", "read_image_label_h5"]


def save_nifti(
    path: str | os.PathLike, array, geometry: ImageGeometry, *, overwrite: bool = False
) -> Path:
    """Write a ``(nz, ny, nx)`` (or ``(nt, nz, ny, nx)``) array as NIfTI.

    The affine is the geometry's voxel-to-world matrix (world RAS+ mm), stored as
    both qform and sform; NIfTI's array order is (x, y, z[, t]), so the array is
    transposed on the way out. Written atomically; never overwrites unless asked.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        array: ``(nz, ny, nx)`` or ``(nt, nz, ny, nx)`` array (dtype kept).
        geometry: placement of the ``(nz, ny, nx)`` grid.
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    arr = np.asarray(array)
    if arr.shape[-3:] != tuple(geometry.shape):
        raise ValueError(
            f"array shape {arr.shape} does not end with the geometry "
            f"shape {geometry.shape}"
        )
    if arr.ndim not in (3, 4):
        raise ValueError(f"array must be 3D or 4D; got shape {arr.shape}")
    data = arr.transpose(2, 1, 0) if arr.ndim == 3 else arr.transpose(3, 2, 1, 0)
    affine = np.asarray(geometry.affine, dtype=np.float64)
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path = Path(path)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    with atomic_path(path, overwrite=overwrite, what="NIfTI file") as tmp:
        nib.save(image, str(tmp) + suffix)
        os.replace(str(tmp) + suffix, tmp)
    return path


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """Read a 3D/4D NIfTI as a ``(…, nz, ny, nx)`` array and its geometry."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIfTI file {path} does not exist")
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    if data.ndim == 3:
        arr = data.transpose(2, 1, 0)
    elif data.ndim == 4:
        arr = data.transpose(3, 2, 1, 0)
    else:
        raise ValueError(f"{path}: expected a 3D or 4D image; got {data.ndim}D")
    geometry = ImageGeometry(
        affine=np.asarray(image.affine, np.float64), shape=arr.shape[-3:]
    )
    return np.ascontiguousarray(arr), geometry


def read_image_label_h5(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an HDF5 file holding ``image`` (z, y, x) and ``label`` datasets.

    This is the layout of the ACDC sample data (image min-max scaled, labels
    0 background, 1 RV blood, 2 LV myocardium, 3 LV blood; no spacing stored).

    Returns:
        ``(image float32 (nz, ny, nx), label uint8 (nz, ny, nx))``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"HDF5 file {path} does not exist")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("image", "label") if k not in f]
        if missing:
            raise ValueError(
                f"{path} lacks dataset(s) {missing}; expected 'image' and 'label'"
            )
        image = np.asarray(f["image"], np.float32)
        label = np.asarray(f["label"])
    if image.shape != label.shape:
        raise ValueError(f"{path}: image {image.shape} and label {label.shape} differ")
    return image, label.astype(np.uint8)
