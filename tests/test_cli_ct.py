"""``jaxsim ct``: files, affines, scan geometry, physical HU, overwrite and errors."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from jaxsim.cli import build_parser, main
from jaxsim.ct import nominal_hu
from jaxsim.phantoms import TISSUES, axial_geometry, default_subject

SMALL = ["--mean", "--sex", "male", "--shape", "8", "40", "40", "--spacing", "6"]
SMALL += ["--views", "30", "--noise", "none"]


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "scan"
    assert main(["ct", "--out", str(out), *SMALL]) == 0
    return out


def test_help_lists_every_output(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["ct", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in ("ct_hu.nii.gz", "labels.nii.gz", "projections.h5", "ct.png"):
        assert name in text


def test_outputs_share_the_phantom_grid_and_affine(ct_run):
    geometry = axial_geometry(
        default_subject("male"), spacing=(6.0, 6.0, 6.0), shape=(8, 40, 40)
    )
    image = nib.load(ct_run / "ct_hu.nii.gz")
    labels = nib.load(ct_run / "labels.nii.gz")
    for nii in (image, labels):
        assert nii.shape == (40, 40, 8)  # NIfTI order (x, y, z)
        np.testing.assert_allclose(nii.affine, np.asarray(geometry.affine), atol=1e-4)
    assert labels.get_data_dtype() == np.uint8
    present = set(np.unique(np.asarray(labels.dataobj)).tolist())
    for tissue in ("lv_blood", "lv_myocardium", "lung", "bone"):
        assert TISSUES.index(tissue) in present
    assert (ct_run / "ct.png").read_bytes()[:4] == b"\x89PNG"


def test_projections_file_holds_the_scan(ct_run):
    with h5py.File(ct_run / "projections.h5") as f:
        proj = f["projections"][()]
        angles = f["angles"][()]
        assert proj.shape[0] == 30 and proj.ndim == 3
        np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 30, rtol=1e-9)
        assert f.attrs["dsd"] > f.attrs["dso"] > 0
        assert f.attrs["beam"] == "120kVp"
    assert np.all(np.isfinite(proj)) and proj.min() >= -1e-3 and proj.max() > 1.0


def test_hu_follow_the_materials(ct_run):
    summary = json.loads((ct_run / "summary.json").read_text())
    hu = {k: v["mean"] for k, v in summary["hu_by_tissue"].items()}
    # the lungs are large enough at 6 mm for their mean to meet the spectrum-mean
    # (nominal) HU; partial volume biases the small tissues
    assert abs(hu["lung"] - nominal_hu("120kVp")["lung"]) < 60.0
    assert hu["lv_blood"] > hu["lv_myocardium"] + 150.0  # iodine contrast
    assert summary["options"]["views"] == 30
    assert summary["subject"]["edv"] == pytest.approx(160.0)


def test_no_overwrite_without_force_then_force(ct_run, capsys):
    before = (ct_run / "summary.json").stat().st_mtime_ns
    assert main(["ct", "--out", str(ct_run), *SMALL]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (ct_run / "summary.json").stat().st_mtime_ns == before
    assert main(["ct", "--out", str(ct_run), *SMALL, "--force"]) == 0


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--beam", "75kV"], "--beam must be one of"),
        (["--beam", "300"], "--beam must be one of"),
        (["--phase", "1.2"], "--phase must lie in"),
        (["--spacing", "1", "2"], "--spacing takes 1 or 3"),
        (["--spacing", "nan"], "--spacing must be finite"),
        (["--spacing", "1e6"], "must fit inside"),
        (["--i0", "0"], "--i0 must be > 0"),
    ],
)
def test_invalid_options_are_named(tmp_path, capsys, extra, match):
    assert main(["ct", "--out", str(tmp_path / "x"), *SMALL, *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
