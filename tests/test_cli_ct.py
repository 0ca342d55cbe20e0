"""``jaxsim ct``: files, affines, scan geometry, physical HU, overwrite and errors."""

from __future__ import annotations

import json
import time

import h5py
import nibabel as nib
import numpy as np
import pytest

from jaxsim._cli_common import parse_spacing
from jaxsim.cli import build_parser, main
from jaxsim.ct import DEFAULT_SHAPE, DEFAULT_SPACING, CTAcquisition, nominal_hu
from jaxsim.io import load_projections
from jaxsim.phantoms import TISSUES, axial_geometry, default_subject

SMALL = ["--mean", "--sex", "male", "--shape", "8", "40", "40", "--spacing", "6,6,6"]
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


@pytest.mark.integration  # a whole jaxsim ct run
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


@pytest.mark.integration  # a whole jaxsim ct run
def test_projections_file_holds_the_scan(ct_run):
    with h5py.File(ct_run / "projections.h5") as f:
        proj = f["projections"][()]
        angles = f["angles"][()]
        assert proj.shape[0] == 30 and proj.ndim == 3
        np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 30, rtol=1e-9)
        assert f.attrs["dsd"] > f.attrs["dso"] > 0
        assert f.attrs["beam"] == "120kVp"
    assert np.all(np.isfinite(proj)) and proj.min() >= -1e-3 and proj.max() > 1.0
    # the library reader gives the same scan back
    data, geom, attrs = load_projections(ct_run / "projections.h5")
    np.testing.assert_array_equal(data, proj)
    assert (geom.n_angles, geom.n_v, geom.n_u) == proj.shape
    np.testing.assert_array_equal(geom.angles, angles)
    assert attrs["beam"] == "120kVp" and attrs["i0"] == 1e5


@pytest.mark.integration  # a whole jaxsim ct run
def test_hu_follow_the_materials(ct_run):
    summary = json.loads((ct_run / "summary.json").read_text())
    hu = {k: v["mean"] for k, v in summary["hu_by_tissue"].items()}
    # the lungs are large enough at 6 mm for their mean to meet the spectrum-mean
    # (nominal) HU; partial volume biases the small tissues
    assert abs(hu["lung"] - nominal_hu("120kVp")["lung"]) < 60.0
    assert hu["lv_blood"] > hu["lv_myocardium"] + 150.0  # iodine contrast
    assert summary["options"]["views"] == 30
    assert summary["subject"]["edv"] == pytest.approx(160.0)
    memory = summary["memory"]
    assert 0 < memory["measured_peak_rss_bytes"] <= memory["limit_bytes"]
    assert memory["views_per_chunk"] == 30  # a small scan runs in one chunk


@pytest.mark.integration  # a whole jaxsim ct run
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
        (["--spacing", "1,2"], "--spacing takes 1 or 3"),
        (["--spacing", "1,x,2"], "--spacing takes numbers in mm"),
        (["--spacing", "nan"], "--spacing must be finite"),
        (["--spacing", "1e6"], "must fit inside"),
        (["--i0", "0"], "--i0 must be > 0"),
        (["--views", "10000000"], "--views must lie in [2, 100000]"),
        (["--views", "1"], "--views must lie in"),
        (["--max-memory", "0"], "--max-memory must be > 0"),
        # a job that cannot fit is refused before anything runs, naming flags
        (["--max-memory", "0.25"], "not enough memory: --shape 8 40 40"),
        (
            ["--shape", "400", "400", "400", "--spacing", "1", "--max-memory", "2"],
            "--max-memory",
        ),
    ],
)
def test_invalid_options_are_named(tmp_path, capsys, extra, match):
    start = time.perf_counter()
    assert main(["ct", "--out", str(tmp_path / "x"), *SMALL, *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert time.perf_counter() - start < 5.0  # refused before simulating


def test_defaults_are_the_library_defaults():
    args = build_parser().parse_args(["ct", "--out", "x"])
    acq = CTAcquisition()
    assert tuple(args.shape) == DEFAULT_SHAPE
    assert parse_spacing(args.spacing) == DEFAULT_SPACING
    assert (args.views, args.beam, args.i0) == (acq.n_views, acq.beam, acq.i0)
    assert (args.noise, args.filter) == (acq.noise, acq.filter)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["2.5"], (2.5, 2.5, 2.5)),
        (["10", "1.5", "1.25"], (10.0, 1.5, 1.25)),
        (["10,1.5,1.25"], (10.0, 1.5, 1.25)),
        (["10, 1.5", "1.25"], (10.0, 1.5, 1.25)),
        ("8,1,1", (8.0, 1.0, 1.0)),
    ],
)
def test_parse_spacing_accepts_spaces_and_commas(tokens, expected):
    assert parse_spacing(tokens) == expected
