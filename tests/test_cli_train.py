"""``jaxsim train``, ``segment`` and ``evaluate`` from the command line: help, the
clear errors a user meets first, the evaluation table against NumPy, and (in the
integration step) a whole train -> segment -> evaluate round trip."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from jaxsim.cli import build_parser, main
from jaxsim.geometry import ImageGeometry
from jaxsim.io import save_nifti

SPACING = (8.0, 2.5, 2.5)


def _heart(seed: int, nz: int = 3, size: int = 40):
    """A short-axis-like stack: LV blood (3) in a myocardial ring (2), an RV
    crescent (1) beside it, and intensities that separate them, with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size].astype(float)
    labels = np.zeros((nz, size, size), np.uint8)
    for k in range(nz):
        cy, cx = size / 2 + rng.uniform(-3, 3, 2)
        r_lv = 6.0 - k
        r = np.hypot(y - cy, x - cx)
        rv = np.hypot(y - cy, x - cx + 12)
        labels[k][(rv < 8) & (r >= r_lv + 3)] = 1
        labels[k][r < r_lv + 3] = 2
        labels[k][r < r_lv] = 3
    means = np.array([0.1, 0.8, 0.3, 0.9])
    image = means[labels] + 0.03 * rng.normal(size=labels.shape)
    return image.astype(np.float32), labels


def _geometry(shape):
    return ImageGeometry.axis_aligned(shape=shape, spacing=SPACING)


@pytest.fixture
def cases(tmp_path):
    """A folder of NIfTI image/label pairs (NAME.nii.gz + NAME_gt.nii.gz)."""
    folder = tmp_path / "cases"
    folder.mkdir()
    for i in range(3):
        image, labels = _heart(i)
        save_nifti(folder / f"case{i}.nii.gz", image, _geometry(image.shape))
        save_nifti(folder / f"case{i}_gt.nii.gz", labels, _geometry(image.shape))
    return folder


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("train", ("--data", "--model", "--steps", "--resume", "sim", "--labels")),
        ("segment", ("--model", "--out", "--no-tta", "--largest-component")),
        ("evaluate", ("--labels", "--out", "Hausdorff", "--spacing")),
    ],
)
def test_help(command, words, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in words:
        assert word in text


def test_train_names_missing_data(tmp_path, capsys):
    code, _, err = _run(
        ["train", "--data", tmp_path / "nope", "--out", tmp_path / "r"], capsys
    )
    assert code == 2 and "--data" in err and "no such file" in err


def test_train_names_a_missing_translator(cases, tmp_path, capsys):
    code, _, err = _run(
        ["train", "--data", cases, "--translator", tmp_path / "nope", "--out",
         tmp_path / "r"], capsys,
    )  # fmt: skip
    assert code == 2 and "holds no translation run" in err
    assert not (tmp_path / "r").exists()


def test_train_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(
        ["train", "--data", tmp_path / "empty", "--out", tmp_path / "r"], capsys
    )
    assert code == 2 and "error" in err
    assert not (tmp_path / "r").exists()


def test_train_labels_outside_the_scheme(cases, tmp_path, capsys):
    image, labels = _heart(9)
    labels[0, 0, 0] = 7
    save_nifti(cases / "odd.nii.gz", image, _geometry(image.shape))
    save_nifti(cases / "odd_gt.nii.gz", labels, _geometry(image.shape))
    code, _, err = _run(["train", "--data", cases, "--out", tmp_path / "r"], capsys)
    assert code == 2 and "7" in err and "--labels" in err


def test_train_label_spec_outside_acdc(cases, tmp_path, capsys):
    code, _, err = _run(
        ["train", "--data", cases, "--out", tmp_path / "r", "--labels", "LA=4"],
        capsys,
    )
    assert code == 2 and "--labels" in err


def test_train_model_options_must_be_json(cases, tmp_path, capsys):
    argv = ["train", "--data", cases, "--out", tmp_path / "r"]
    code, _, err = _run([*argv, "--model-options", "{channels: 8}"], capsys)
    assert code == 2 and "--model-options" in err
    code, _, err = _run([*argv, "--model-options", "[8, 16]"], capsys)
    assert code == 2 and "JSON object" in err


def test_train_refuses_to_overwrite_a_run(cases, tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    code, _, err = _run(["train", "--data", cases, "--out", run], capsys)
    assert code == 2 and "resume" in err
    assert (run / "config.json").read_text() == "{}"


def test_segment_needs_a_run(cases, tmp_path, capsys):
    code, _, err = _run(
        [
            "segment", "--model", tmp_path, cases / "case0.nii.gz",
            "--out", tmp_path / "seg",
        ],
        capsys,
    )  # fmt: skip
    assert code == 2 and "no training run" in err


def test_segment_needs_spacing_for_hdf5(tmp_path, capsys):
    import h5py

    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f["image"] = np.zeros((2, 16, 16), np.float32)
        f["label"] = np.zeros((2, 16, 16), np.uint8)
    code, _, err = _run(
        ["segment", "--model", tmp_path, path, "--out", tmp_path / "seg"], capsys
    )
    assert code == 2 and "--spacing" in err


def _dice(pred, truth, value):
    p, t = pred == value, truth == value
    return 2 * np.sum(p & t) / (p.sum() + t.sum())


def test_evaluate_table_against_numpy(tmp_path, capsys):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    expected = {}
    for i in range(2):
        image, truth = _heart(i)
        pred = truth.copy()
        lv = truth[1] == 3
        cols = np.nonzero(lv)[1]
        pred[1][lv & (np.arange(lv.shape[1]) < cols.mean())] = 0  # half an LV gone
        if i == 0:
            pred[0, :2, :2] = 1  # a stray RV island
        g = _geometry(truth.shape)
        save_nifti(gt_dir / f"c{i}.nii.gz", image, g)
        save_nifti(gt_dir / f"c{i}_gt.nii.gz", truth, g)
        save_nifti(pred_dir / f"c{i}_seg.nii.gz", pred, g)
        for name, v in (("RV", 1), ("MYO", 2), ("LV", 3)):
            expected[(f"c{i}", name)] = _dice(pred, truth, v)
    out = tmp_path / "report.csv"
    png = tmp_path / "report.png"
    code, text, err = _run(
        ["evaluate", pred_dir, gt_dir, "--out", out, "--png", png], capsys
    )
    assert code == 0, err
    assert png.read_bytes().startswith(b"\x89PNG")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    by_case = {(r["case"], r["structure"]): r for r in rows}
    for key, dice in expected.items():
        np.testing.assert_allclose(float(by_case[key]["dice"]), dice, rtol=1e-6)
        assert float(by_case[key]["hd95_mm"]) >= 0.0
    for name in ("RV", "MYO", "LV"):
        values = [expected[(f"c{i}", name)] for i in range(2)]
        np.testing.assert_allclose(
            float(by_case[("mean", name)]["dice"]), np.mean(values), rtol=1e-6
        )
        np.testing.assert_allclose(
            float(by_case[("sd", name)]["dice"]), np.std(values), rtol=1e-6, atol=1e-9
        )
    # exact RV in case 1: zero distances; the stray island of case 0 lies far
    # from its RV: too small to move HD95 much, but ASSD averages it in
    assert float(by_case[("c1", "RV")]["hd95_mm"]) == 0.0
    assert float(by_case[("c1", "RV")]["assd_mm"]) == 0.0
    assert float(by_case[("c0", "RV")]["assd_mm"]) > 0.0
    assert "LV" in text and "wrote" in text
    # the table is not overwritten silently
    code, _, err = _run(["evaluate", pred_dir, gt_dir, "--out", out], capsys)
    assert code == 2 and "--force" in err


def test_evaluate_grid_mismatches(tmp_path, capsys):
    _, truth = _heart(0)
    gt, pred = tmp_path / "gt.nii.gz", tmp_path / "pred.nii.gz"
    save_nifti(gt, truth, _geometry(truth.shape))
    save_nifti(pred, truth[:, :-1], _geometry(truth[:, :-1].shape))
    code, _, err = _run(["evaluate", pred, gt, "--out", tmp_path / "a.csv"], capsys)
    assert code == 2 and "shape" in err
    coarse = ImageGeometry.axis_aligned(shape=truth.shape, spacing=(8.0, 3.0, 3.0))
    save_nifti(pred, truth, coarse, overwrite=True)
    code, _, err = _run(["evaluate", pred, gt, "--out", tmp_path / "b.csv"], capsys)
    assert code == 2 and "voxel size" in err
    moved = ImageGeometry.axis_aligned(
        shape=truth.shape, spacing=SPACING, center=(50.0, 0.0, 0.0)
    )
    save_nifti(pred, truth, moved, overwrite=True)
    code, _, err = _run(["evaluate", pred, gt, "--out", tmp_path / "c.csv"], capsys)
    assert code == 2 and "different grids" in err
    assert not any((tmp_path / n).exists() for n in ("a.csv", "b.csv", "c.csv"))


def test_evaluate_empty_prediction_folder(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    code, _, err = _run(
        ["evaluate", tmp_path / "pred", tmp_path, "--out", tmp_path / "r.csv"], capsys
    )
    assert code == 2 and "no NIfTI" in err


@pytest.mark.integration
def test_train_segment_evaluate_round_trip(cases, tmp_path, capsys):
    run = tmp_path / "run"
    options = json.dumps({"channels": [8, 16, 32], "strides": [2, 2]})
    argv = [
        "train", "--data", cases, "--out", run, "--steps", 100, "--batch-size", 4,
        "--shape", 32, 32, "--pixel-size", 2.5, "--eval-every", 20,
        "--model-options", options, "--lr", 3e-3, "--quiet", "--no-augment",
    ]  # fmt: skip
    code, text, err = _run(argv, capsys)
    assert code == 0, err
    assert "trained 100 steps" in text
    for name in ("config.json", "metrics.csv", "curves.png"):
        assert (run / name).exists()
    with open(run / "metrics.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 100 and np.mean(losses[-5:]) < np.mean(losses[:5])

    seg = tmp_path / "seg"
    code, _, err = _run(
        ["segment", "--model", run, cases / "case0.nii.gz", "--out", seg, "--no-tta"],
        capsys,
    )  # no flip averaging: the network never saw flipped hearts
    assert code == 0, err
    written = nib.load(str(seg / "case0_seg.nii.gz"))
    source = nib.load(str(cases / "case0.nii.gz"))
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.shape == source.shape
    labels = np.asarray(written.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    code, _, err = _run(
        ["segment", "--model", run, cases / "case0.nii.gz", "--out", seg], capsys
    )
    assert code == 2 and "--force" in err

    report = tmp_path / "report.csv"
    code, text, err = _run(["evaluate", seg, cases, "--out", report], capsys)
    assert code == 0, err
    with open(report, newline="") as f:
        rows = {(r["case"], r["structure"]): r for r in csv.DictReader(f)}
    assert float(rows[("case0", "LV")]["dice"]) > 0.7  # the easy structure

    # a run whose recorded network is not the one in its checkpoints
    other = tmp_path / "other"
    shutil.copytree(run, other)
    meta = json.loads((other / "config.json").read_text())
    meta["model"]["options"]["channels"] = [4, 8, 16]
    (other / "config.json").write_text(json.dumps(meta))
    code, _, err = _run(
        [
            "segment", "--model", other, cases / "case1.nii.gz",
            "--out", tmp_path / "seg2",
        ],
        capsys,
    )  # fmt: skip
    assert code == 2 and "another network" in err

    # resume to more steps continues the same run
    code, text, err = _run([*argv[:6], 110, *argv[7:], "--resume"], capsys)
    assert code == 0, err
    assert "trained 110 steps" in text


UNET3D = json.dumps({"channels": [8, 16, 32], "strides": [[1, 2, 2], [2, 2, 2]]})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "shape", "options"),
    [
        ("dynunet", [64, 64], []),
        ("segresnetvae", [64, 64], []),
        ("unet3d", [4, 32, 32], ["--model-options", UNET3D]),
    ],
)
def test_other_networks_train_and_segment(
    model, shape, options, cases, tmp_path, capsys
):
    run = tmp_path / model
    argv = [
        "train", "--data", cases, "--out", run, "--model", model, "--steps", 2,
        "--batch-size", 2, "--shape", *shape, "--eval-every", 2, "--quiet", *options,
    ]  # fmt: skip
    code, text, err = _run(argv, capsys)
    assert code == 0, err
    meta = json.loads((run / "config.json").read_text())
    assert meta["model"]["name"] == model
    assert meta["model"]["spatial_dims"] == len(shape)
    code, _, err = _run(
        ["segment", "--model", run, cases / "case1.nii.gz", "--out", tmp_path / "s"],
        capsys,
    )
    assert code == 0, err
    # nibabel's order (x, y, z) of the (3, 40, 40) volume
    assert nib.load(str(tmp_path / "s" / "case1_seg.nii.gz")).shape == (40, 40, 3)


def test_train_shape_must_match_the_network(cases, tmp_path, capsys):
    argv = ["train", "--data", cases, "--out", tmp_path / "r"]
    code, _, err = _run([*argv, "--shape", 4, 32, 32], capsys)
    assert code == 2 and "2D network" in err
    code, _, err = _run([*argv, "--shape", 32], capsys)
    assert code == 2 and "--shape" in err
    code, _, err = _run([*argv, "--model", "unet3d", "--shape", 4, 4, 32], capsys)
    assert code == 2 and "--shape" in err
