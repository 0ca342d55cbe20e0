"""``jaxsim fit`` end to end on small files, and its input errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from jaxsim.cli import main
from jaxsim.geometry import ImageGeometry
from jaxsim.io import save_nifti


def _image(labels):
    rng = np.random.default_rng(0)
    base = np.choose(labels, [0.05, 0.35, 0.1, 0.45])
    return np.abs(base + 0.02 * rng.normal(size=labels.shape)).astype(np.float32)


@pytest.fixture
def nifti_pair(tmp_path, labels):
    geom = ImageGeometry.axis_aligned(spacing=(8.0, 1.4, 1.4), shape=labels.shape)
    img, lab = tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"
    save_nifti(img, _image(labels), geom)
    save_nifti(lab, labels, geom)
    return img, lab


@pytest.mark.integration  # a whole fit from the command line
def test_fit_command_nifti(tmp_path, nifti_pair, capsys):
    img, lab = nifti_pair
    out = tmp_path / "fit"
    argv = ["fit", str(img), str(lab), "--out", str(out), "--steps", "30"]
    assert main([*argv, "--restarts", "1", "--quiet"]) == 0
    assert "lv_blood" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert set(report["tissues"]) == {"rv_blood", "lv_myocardium", "lv_blood"}
    for m in report["tissues"].values():
        assert {
            "ks_before",
            "ks_after",
            "chi2_before",
            "chi2_after",
            "kl_before",
            "kl_after",
        } <= set(m)
        assert m["ks_after"] < m["ks_before"]
    assert report["input"]["spacing_mm"] == pytest.approx([8.0, 1.4, 1.4])
    assert report["parameters"]["sigma"]["value"] > 0
    assert (out / "histograms.png").read_bytes().startswith(b"\x89PNG")
    # Existing outputs are kept unless --force.
    assert main([*argv, "--restarts", "1", "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err


def _h5(path, image, label):
    with h5py.File(path, "w") as f:
        f["image"] = image
        f["label"] = label
    return path


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--labels", "RV=1,MYO=2,LV=9"], "label value 9"),
        (["--labels", "RV=1,FOO=2"], "unknown class 'FOO'"),
        (["--spacing", "1,2"], "--spacing"),
        (["--flip", "190"], "--flip"),
    ],
)
def test_fit_command_errors(tmp_path, labels, capsys, extra, match):
    path = _h5(tmp_path / "case.h5", _image(labels), labels)
    assert main(["fit", str(path), "--out", str(tmp_path / "o"), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.json").exists()


def test_fit_command_input_errors(tmp_path, labels, nifti_pair, capsys):
    h5 = _h5(tmp_path / "c.h5", _image(labels), labels)
    img, lab = nifti_pair
    out = str(tmp_path / "o")
    assert main(["fit", str(h5), str(lab), "--out", out]) == 2
    assert "LABELS must be omitted" in capsys.readouterr().err
    assert main(["fit", str(img), "--out", out]) == 2
    assert "needs a LABELS" in capsys.readouterr().err
    const = _h5(tmp_path / "k.h5", np.full(labels.shape, 0.3, np.float32), labels)
    assert main(["fit", str(const), "--out", out]) == 2
    assert "constant" in capsys.readouterr().err
    geom = ImageGeometry.axis_aligned(spacing=(8.0, 1.4, 1.4), shape=(4, 48, 40))
    small = tmp_path / "small.nii.gz"
    save_nifti(small, labels[:, :, :40], geom)
    assert main(["fit", str(img), str(small), "--out", out]) == 2
    assert "differ" in capsys.readouterr().err
    shifted = tmp_path / "shifted.nii.gz"
    moved = ImageGeometry.axis_aligned(
        spacing=(8.0, 1.4, 1.4), shape=labels.shape, center=(0.0, 5.0, 0.0)
    )
    save_nifti(shifted, labels, moved)
    assert main(["fit", str(img), str(shifted), "--out", out]) == 2
    assert "not on IMAGE's grid" in capsys.readouterr().err


@pytest.mark.slow  # two whole fits from the command line
def test_swapped_labels_are_reported_not_fitted_silently(tmp_path, labels, capsys):
    """MYO and LV swapped: the bright blood pool is called myocardium."""
    path = _h5(tmp_path / "case.h5", _image(labels), labels)
    out = tmp_path / "swapped"
    argv = ["fit", str(path), "--out", str(out), "--steps", "10", "--restarts", "1"]
    assert main([*argv, "--labels", "RV=1,MYO=3,LV=2", "--quiet"]) == 0
    err = capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    swapped = [w for w in report["warnings"] if "swapped" in w]
    assert swapped and any("lv_blood (label 2)" in w for w in swapped)
    assert "warning" in err and "swapped" in err
    # The right labels raise no ordering warning.
    right = tmp_path / "right"
    assert (
        main(
            [
                "fit",
                str(path),
                "--out",
                str(right),
                "--steps",
                "10",
                "--restarts",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads((right / "report.json").read_text())
    assert not [w for w in report["warnings"] if "swapped" in w]
