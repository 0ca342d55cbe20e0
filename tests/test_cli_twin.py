"""``jaxsim twin``: options, refusals, and a whole run on a real ACDC case."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from jaxsim.cli import main


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["twin", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--es" in out and "--force" in out and "report.json" in out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--grid", "0", "4", "4"], "--grid"),
        (["--max-displacement", "-1"], "--max-displacement"),
        (["--steps", "-1", "10"], "--steps"),
        (["--labels", "RV=1,MYO=2,LV=x"], "labels"),
    ],
)
def test_bad_options(tmp_path, capsys, extra, match):
    code = main(["twin", str(tmp_path / "x.h5"), "--out", str(tmp_path / "o"), *extra])
    assert code == 2
    assert match in capsys.readouterr().err


def test_bad_file_kind(tmp_path, capsys):
    path = tmp_path / "labels.txt"
    path.write_text("0")
    assert main(["twin", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "LABELS must end with" in capsys.readouterr().err


def test_existing_outputs_need_force(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.json").write_text("{}")
    assert main(["twin", str(tmp_path / "x.h5"), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "report.json").read_text() == "{}"


@pytest.mark.slow
def test_real_acdc_case(shared_data, tmp_path, capsys):
    ed = shared_data / "acdc" / "patient022_frame01.h5"
    es = shared_data / "acdc" / "patient022_frame02.h5"
    if not (ed.exists() and es.exists()):
        pytest.skip("patient022 is not in the ACDC folder")
    out = tmp_path / "twin"
    args = ["twin", str(ed), "--es", str(es), "--out", str(out), "--quiet",
            "--steps", "10", "30", "--grid", "4", "4", "5"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["dice"]) == {"LV", "MYO", "RV"}
    assert set(report["dice_by_phase"]) == {"ED", "ES"}
    assert report["dice"]["LV"] > 0.8
    with h5py.File(ed) as f:
        real = np.asarray(f["label"])
    twin = np.asarray(nib.load(str(out / "twin_ed.nii.gz")).dataobj).T
    assert twin.shape == real.shape
    inter = np.sum((twin == 3) & (real == 3))
    dice_lv = 2 * inter / (np.sum(twin == 3) + np.sum(real == 3))
    assert dice_lv == pytest.approx(report["dice"]["LV"], abs=1e-9)
    assert (out / "twin.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "twin_es.nii.gz").exists()
    assert main(args) == 2  # no overwrite without --force
    # the report rebuilds the twin: its label map on the real grid is the file's
    from jaxsim.fit import twin_from_parameters, twin_labels

    subject, geometry = twin_from_parameters(report["parameters"])
    assert geometry.shape == real.shape
    assert np.array_equal(twin_labels(subject, geometry), twin)
