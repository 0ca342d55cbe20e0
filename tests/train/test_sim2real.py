"""The sim-to-real protocol's pieces: patients and phases from case names, the
fixed split, scoring by segmentation, and (integration) the whole command."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.geometry import ImageGeometry
from jaxsim.io import LabelledCase, save_nifti
from jaxsim.train import (
    Preprocessing,
    Sim2RealConfig,
    TrainConfig,
    evaluate_cases,
    patient_phases,
    split_patients,
)


def _case(name, image=None, labels=None, phase=None, spacing=(8.0, 1.5, 1.5)):
    if labels is None:
        labels = np.zeros((2, 40, 40), np.uint8)
    if image is None:
        image = labels.astype(np.float32)
    geometry = ImageGeometry.axis_aligned(shape=labels.shape, spacing=spacing)
    return LabelledCase(
        name=name, image=image, labels=labels, geometry=geometry,
        spacing=spacing, phase=phase,
    )  # fmt: skip


def test_patients_and_phases_from_names():
    cases = [
        _case("patient001_frame01"),
        _case("patient001_frame12"),
        _case("patient002_frame01"),
        _case("patient003_frame01", phase="ES"),  # Info.cfg wins
        _case("patient004_frame01"),
        _case("patient004_frame05"),
        _case("patient004_frame09"),
        _case("scan7"),
    ]
    got = patient_phases(cases)
    assert got["patient001_frame01"] == ("patient001", "ED")
    assert got["patient001_frame12"] == ("patient001", "ES")
    assert got["patient002_frame01"] == ("patient002", "ED")
    assert got["patient003_frame01"] == ("patient003", "ES")
    # three frames: ED is frame 1, the others are not known to be ES
    assert got["patient004_frame01"] == ("patient004", "ED")
    assert got["patient004_frame05"] == ("patient004", None)
    assert got["scan7"] == ("scan7", None)


def test_split_is_fixed_disjoint_and_complete():
    patients = [f"p{i}" for i in range(8)]
    test, pool = split_patients(patients[::-1] + patients[:2], 0.5)
    assert (test, pool) == split_patients(patients, 0.5)  # order-free, repeatable
    assert len(test) == 4 and not set(test) & set(pool)
    assert sorted(test + pool) == patients
    test, pool = split_patients(patients[:2], 0.9)  # at least one of each
    assert len(test) == 1 and len(pool) == 1
    with pytest.raises(ValueError, match="at least 2 real patients"):
        split_patients(["only"], 0.5)


def test_config_checks():
    with pytest.raises(ValueError, match="pretrain.data must be 'sim'"):
        Sim2RealConfig(real="x", pretrain=TrainConfig(data="cases/"))
    with pytest.raises(ValueError, match="ks"):
        Sim2RealConfig(real="x", ks=(0,))
    with pytest.raises(ValueError, match="test_fraction"):
        Sim2RealConfig(real="x", test_fraction=1.0)
    assert json.loads(json.dumps(Sim2RealConfig(real="x").to_json()))["ks"] == [1, 2, 4]


def oracle(batch):
    x = batch[..., 0]
    classes = sum((x > t).astype(jnp.int32) for t in (0.25, 0.5, 0.75))
    return 30.0 * jax.nn.one_hot(classes, 4)


def test_evaluate_cases_scores_what_it_segments():
    labels = np.zeros((2, 40, 40), np.uint8)
    labels[:, 5:15, 5:15] = 1
    labels[:, 20:30, 20:35] = 2
    labels[:, 22:28, 24:31] = 3
    image = (np.array([0.1, 0.4, 0.6, 0.9])[labels] * 100).astype(np.float32)
    wrong = labels.copy()
    wrong[:, 5:15, 5:10] = 0  # half the RV missing from the "truth"
    cases = [_case("a_frame01", image, labels), _case("a_frame02", image, wrong)]
    prep = Preprocessing(shape=(32, 32), spacing=1.5)
    rows = evaluate_cases(oracle, prep, cases, patient_phases(cases), tta=False)
    assert len(rows) == 6
    by = {(r["case"], r["structure"]): r for r in rows}
    for s in ("LV", "MYO", "RV"):
        assert by[("a_frame01", s)]["dice"] == 1.0
        assert by[("a_frame01", s)]["phase"] == "ED"
    # prediction has the full RV (100 px), truth half of it (50): 2*50/150
    np.testing.assert_allclose(by[("a_frame02", "RV")]["dice"], 2 * 50 / 150)
    assert by[("a_frame02", "RV")]["phase"] == "ES"


@pytest.mark.integration
def test_sim2real_smoke(tmp_path, capsys):
    from jaxsim.cli import main

    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for p in range(3):
        for frame in (1, 2):
            labels = np.zeros((2, 40, 40), np.uint8)
            c = rng.integers(14, 26)
            labels[:, c - 8 : c + 8, c - 8 : c + 8] = 2
            labels[:, c - 5 : c + 5, c - 5 : c + 5] = 3
            labels[:, c - 8 : c + 8, c - 16 : c - 9] = 1
            image = np.array([0.1, 0.8, 0.3, 0.9], np.float32)[labels]
            g = ImageGeometry.axis_aligned(shape=labels.shape, spacing=(8, 2, 2))
            name = f"patient{p:03d}_frame{frame:02d}"
            save_nifti(real / f"{name}.nii.gz", image, g)
            save_nifti(real / f"{name}_gt.nii.gz", labels, g)
    out = tmp_path / "s2r"
    argv = ["sim2real", "--real", str(real), "--out", str(out), "--smoke", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "zero-shot" in text and "fine-tune" in text and "scratch" in text
    results = json.loads((out / "sim2real.json").read_text())
    test = set(results["split"]["test"])
    assert test and not test & set(results["split"]["pool"])
    for row in results["scores"]:
        if row["condition"] != "zero-shot":
            assert row["patient"] in test  # scored on held-out patients only
            assert row["patient"] not in row["train_patients"]
    for name in ("scores.csv", "summary.csv", "dice_vs_k.png", "overlays.png"):
        assert (out / name).stat().st_size > 0
    assert main(argv) == 2  # results are not overwritten silently
    assert main([*argv, "--resume"]) == 0  # finished runs are reused
    # ... but never a run configured otherwise
    assert main([*argv, "--resume", "--steps", "4"]) == 2
