"""``jaxsim tag``: NIfTI in/out (affine kept), ACDC HDF5 input, overwrite rules."""

from __future__ import annotations

import math

import h5py
import nibabel as nib
import numpy as np
import pytest

from jaxsim.cli import build_parser, main
from jaxsim.geometry import ImageGeometry
from jaxsim.io import save_nifti
from jaxsim.mr import cine_to_tagged


@pytest.fixture
def nifti(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 100.0, (3, 24, 20)).astype(np.float32)
    affine = np.array(
        [
            [0.0, 1.4, 0.0, -10.0],
            [-1.6, 0.0, 0.0, 5.0],
            [0.0, 0.0, 8.0, 2.0],
            [0, 0, 0, 1],
        ]
    )
    path = tmp_path / "cine.nii.gz"
    save_nifti(path, image, ImageGeometry(affine=affine, shape=image.shape))
    return path, image, affine


@pytest.fixture
def h5file(tmp_path):
    image = np.random.default_rng(1).uniform(size=(2, 16, 12)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8) * 2
    path = tmp_path / "patient.h5"
    with h5py.File(path, "w") as f:
        f["image"], f["label"] = image, label
    return path, image, label


def test_help_mentions_inputs_and_force(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tag", "--help"])
    text = capsys.readouterr().out
    for word in ("NIfTI", "HDF5", "--spacing", "--force", "--tag-spacing", "--angle"):
        assert word in text


def test_nifti_round_trip_keeps_affine_and_matches_library(nifti, tmp_path):
    path, image, affine = nifti
    out = tmp_path / "tagged.nii.gz"
    assert (
        main(["tag", str(path), str(out), "--angle", "30", "--tag-spacing", "6"]) == 0
    )
    written = nib.load(str(out))
    np.testing.assert_allclose(written.affine, affine, atol=1e-6)
    data = np.asarray(written.dataobj).transpose(2, 1, 0)
    # pixel size from the affine: columns (i) step 1.6 mm, rows (j) step 1.4 mm
    want = cine_to_tagged(
        image,
        pixel_spacing=(1.4, 1.6),
        tag_spacing=6.0,
        flip_total=math.radians(70),
        angle=math.radians(30),
        frame_times=0.0,
        readout_flip=math.radians(10),
        tr=4.5e-3,
    )
    np.testing.assert_allclose(data, np.asarray(want), rtol=1e-5, atol=1e-5)


def test_refuses_overwrite_without_force(nifti, tmp_path, capsys):
    path, _, _ = nifti
    out = tmp_path / "tagged.nii"
    out.write_bytes(b"old")
    assert main(["tag", str(path), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"old"
    assert main(["tag", str(path), str(out), "--force"]) == 0
    assert nib.load(str(out)).shape == (20, 24, 3)


def test_hdf5_needs_spacing_and_writes_labels(h5file, tmp_path, capsys):
    path, image, label = h5file
    out = tmp_path / "p.nii.gz"
    assert main(["tag", str(path), str(out)]) == 2
    assert "--spacing" in capsys.readouterr().err
    argv = ["tag", str(path), str(out), "--spacing", "10", "1.5", "1.25", "--labels"]
    assert main(argv) == 0
    written = nib.load(str(out))
    np.testing.assert_allclose(np.diag(written.affine)[:3], [1.25, 1.5, 10.0])
    labels = nib.load(str(tmp_path / "patient_label.nii.gz"))
    np.testing.assert_array_equal(np.asarray(labels.dataobj).transpose(2, 1, 0), label)
    assert np.asarray(written.dataobj).shape == image.shape[::-1]


def test_many_inputs_to_folder(h5file, nifti, tmp_path):
    folder = tmp_path / "out"
    argv = [
        "tag",
        str(h5file[0]),
        str(nifti[0]),
        str(folder),
        "--spacing",
        "1.5",
        "--tag-spacing-px",
        "5",
        "--lines",
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "cine_tagged.nii.gz",
        "patient_tagged.nii.gz",
    ]


def test_same_basename_in_two_folders_is_an_error(h5file, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = other / h5file[0].name
    twin.write_bytes(h5file[0].read_bytes())
    folder = tmp_path / "out"
    argv = ["tag", str(h5file[0]), str(twin), str(folder), "--spacing", "1.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "would both write" in err and "patient_tagged.nii.gz" in err
    assert not folder.exists() or not any(folder.iterdir())


def test_out_that_is_a_file_with_many_inputs(h5file, nifti, tmp_path, capsys):
    out = tmp_path / "a_file"
    out.write_text("x")
    argv = ["tag", str(h5file[0]), str(nifti[0]), str(out), "--spacing", "1.5"]
    assert main(argv) == 2
    assert "is a file" in capsys.readouterr().err
    assert out.read_text() == "x"


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--flip-total", "400"], "--flip-total"),
        (["--t1", "0"], "--t1"),
        (["--tag-spacing", "-1"], "--tag-spacing"),
    ],
)
def test_bad_options(nifti, tmp_path, capsys, extra, match):
    assert main(["tag", str(nifti[0]), str(tmp_path / "o.nii"), *extra]) == 2
    assert match in capsys.readouterr().err


def test_real_acdc_file(shared_data, tmp_path):
    files = sorted((shared_data / "acdc").glob("*.h5"))
    if not files:
        pytest.skip("no ACDC HDF5 files")
    out = tmp_path / "acdc.nii.gz"
    assert main(["tag", str(files[0]), str(out), "--spacing", "1.5"]) == 0
    assert nib.load(str(out)).shape[::-1] == h5py.File(files[0])["image"].shape
