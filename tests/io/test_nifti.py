"""NIfTI round trip with affines, safe writes, the ACDC HDF5 reader."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from jaxsim.geometry import ImageGeometry
from jaxsim.io import atomic_path, load_nifti, read_image_label_h5, save_nifti


def _geometry():
    a, b = 0.3, -0.5
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return ImageGeometry.from_axes(
        center=(10.0, -20.0, 35.0),
        axes=(rz @ rx).T,
        spacing=(8.0, 1.5, 1.25),
        shape=(3, 5, 4),
    )


def test_round_trip_keeps_array_and_affine(tmp_path):
    g = _geometry()
    arr = np.arange(60, dtype=np.float32).reshape(3, 5, 4)
    path = save_nifti(tmp_path / "x.nii.gz", arr, g)
    back, g2 = load_nifti(path)
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_allclose(g2.affine, g.affine, atol=1e-5)
    assert g2.shape == g.shape
    # nibabel's own view: voxel (i, j, k) = arr[k, j, i] sits at affine @ (i, j, k).
    img = nib.load(str(path))
    assert img.get_fdata()[3, 1, 2] == arr[2, 1, 3]
    np.testing.assert_allclose(img.header.get_zooms(), (1.25, 1.5, 8.0), rtol=1e-5)


def test_no_overwrite_without_asking_and_no_partial_files(tmp_path):
    g = _geometry()
    arr = np.zeros(g.shape, np.uint8)
    save_nifti(tmp_path / "a.nii", arr, g)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_nifti(tmp_path / "a.nii", arr, g)
    save_nifti(tmp_path / "a.nii", arr + 1, g, overwrite=True)
    assert load_nifti(tmp_path / "a.nii")[0].max() == 1
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii"]
    with pytest.raises(ValueError, match="geometry shape"):
        save_nifti(tmp_path / "c.nii", np.zeros((2, 2, 2)), g)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_nifti(tmp_path / "missing" / "c.nii", arr, g)


def test_acdc_reader(shared_data):
    image, label = read_image_label_h5(shared_data / "acdc" / "patient001_frame01.h5")
    assert image.shape == label.shape and image.ndim == 3
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3}


def test_acdc_reader_rejects_foreign_files(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["image"] = np.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="lacks dataset"):
        read_image_label_h5(tmp_path / "x.h5")
