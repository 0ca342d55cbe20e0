"""``jaxsim translate``: apply to a database (labels kept, schema unchanged) and
whole command-line runs on tiny networks (integration)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from jaxsim.cli import main
from jaxsim.geometry import ImageGeometry
from jaxsim.io import Database, export_nnunet, save_nifti
from jaxsim.population import PopulationDesign, Preset

TINY_DB = Preset(
    name="tiny", description="test design", n_male=1, n_female=1, shape=(2, 48, 48),
    spacing=(10.0, 2.5, 2.5), contrasts=(0, 14), n_coils=2, oversample=1,
    contrast_batch=2,
)  # fmt: skip
TINY_NETS = [
    "--ngf", "4", "--blocks", "1", "--ndf", "4", "--d-layers", "2",
    "--shape", "16", "16", "--pixel-size", "6", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory):
    from jaxsim.io import generate_database

    path = tmp_path_factory.mktemp("db") / "tiny.h5"
    generate_database(PopulationDesign(TINY_DB, 7), path)
    return path


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """Two 'real' NIfTI cases (image + labels) with blobs of three classes."""
    folder = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    for n in range(2):
        shape = (2, 40, 40)
        yy, xx = np.mgrid[:40, :40]
        r = np.hypot(yy - 20, xx - 20)
        labels = np.zeros(shape, np.uint8)
        labels[:, r < 12] = 2
        labels[:, r < 8] = 3
        labels[:, (np.abs(yy - 20) < 5) & (xx < 8)] = 1
        image = (100 + 200 * (labels == 3) + 50 * (labels == 1)).astype(np.float32)
        image = image + rng.normal(0, 10, shape).astype(np.float32)
        geom = ImageGeometry.axis_aligned(shape=shape, spacing=(10.0, 3.0, 3.0))
        save_nifti(folder / f"case{n}.nii.gz", np.abs(image), geom)
        save_nifti(folder / f"case{n}_gt.nii.gz", labels, geom)
    return folder


@pytest.mark.parametrize(
    "method",
    [
        pytest.param("cut", marks=pytest.mark.integration),
        pytest.param("fastcut", marks=pytest.mark.slow),  # CUT with other weights
        pytest.param("cyclegan", marks=pytest.mark.integration),
    ],
)
def test_cli_train_then_apply_keeps_labels_and_schema(
    method, tiny_db, real_folder, tmp_path, capsys
):
    run = tmp_path / "run"
    args = ["translate", "train", "--source", str(tiny_db), "--target",
            str(real_folder), "--method", method, "--steps", "2", "--out", str(run),
            *TINY_NETS]  # fmt: skip
    assert main(args) == 0
    assert (run / "samples" / "step_000002.png").stat().st_size > 0
    assert main(args) == 2  # the run exists: refused without --resume/--force
    assert "holds a run" in capsys.readouterr().err
    assert main([*args, "--resume", "--steps", "3"]) == 0
    meta = json.loads((run / "config.json").read_text())
    assert meta["config"]["steps"] == 3 and meta["config"]["method"] == method

    out = tmp_path / "real.h5"
    assert main(["translate", "apply", "--model", str(run), str(tiny_db), "--out",
                 str(out), "--quiet"]) == 0  # fmt: skip
    with Database(tiny_db) as a, Database(out) as b:
        assert b.n_records == a.n_records and b.shape == a.shape and b.complete
        ra, rb = a.records(), b.records()
        assert sorted(ra) == sorted(rb)
        for name in ra:
            np.testing.assert_array_equal(ra[name], rb[name])
        for name, value in a.subjects().items():
            np.testing.assert_array_equal(value, b.subjects()[name])
        changed = 0
        for r in range(a.n_records):
            ia, la, ga = a.record(r)
            ib, lb, gb = b.record(r)
            np.testing.assert_array_equal(la, lb)
            np.testing.assert_array_equal(ga.affine, gb.affine)
            assert ib.dtype == np.float32 and np.isfinite(ib).all() and ib.min() >= 0
            changed += not np.allclose(ia, ib)
        assert changed == a.n_records
        by = json.loads(b.attrs["translated_by"])
        assert by["method"] == method and by["step"] == 3
        assert b.attrs["design"] == a.attrs["design"]
    with h5py.File(out) as f:
        assert "translated_by" in f.attrs
    # refuses to overwrite, then replaces with --force
    assert main(["translate", "apply", "--model", str(run), str(tiny_db), "--out",
                 str(out), "--quiet"]) == 2  # fmt: skip
    assert main(["translate", "apply", "--model", str(run), str(tiny_db), "--out",
                 str(out), "--quiet", "--force"]) == 0  # fmt: skip
    summary = export_nnunet(out, tmp_path / "nnunet")
    with Database(tiny_db) as a:
        assert summary["cases"] == a.n_records == 8


@pytest.mark.integration
def test_cli_report(tiny_db, real_folder, tmp_path):
    seg = tmp_path / "seg"
    assert main(["train", "--data", str(real_folder), "--steps", "2", "--batch-size",
                 "2", "--shape", "16", "16", "--pixel-size", "6", "--quiet",
                 "--model-options", '{"channels": [4, 8], "strides": [2]}',
                 "--out", str(seg)]) == 0  # fmt: skip
    report = tmp_path / "realism.json"
    args = ["translate", "report", "--segmenter", str(seg), "--real",
            str(real_folder), "--simulated", str(tiny_db), "--translated",
            str(tiny_db), "--out", str(report)]  # fmt: skip
    assert main(args) == 0
    r = json.loads(report.read_text())
    for name in ("simulated", "translated"):
        assert set(r[name]["ks"]) == {"RV", "MYO", "LV"}
        assert r[name]["fd_seg"] >= 0 and 0 <= r[name]["dice"]["mean"] <= 1
    # the same database twice: identical figures
    assert r["simulated"] == r["translated"]
    assert main(args) == 2  # exists: not overwritten without --force
    # named sets: the same figures under the chosen names
    named = ["translate", "report", "--segmenter", str(seg), "--real",
             str(real_folder), "--set", f"analytic={tiny_db}", "--out",
             str(tmp_path / "named.json")]  # fmt: skip
    assert main(named) == 0
    assert (
        json.loads((tmp_path / "named.json").read_text())["analytic"] == r["simulated"]
    )
    bad = [*named[:-1], str(tmp_path / "bad.json"), "--set", "oops"]
    assert main(bad) == 2 and not (tmp_path / "bad.json").exists()


def test_help_for_every_action(capsys):
    for action in ("train", "apply", "report"):
        with pytest.raises(SystemExit) as exit_info:
            main(["translate", action, "--help"])
        assert exit_info.value.code == 0
        assert "usage: jaxsim translate " + action in capsys.readouterr().out


def test_missing_target_is_named(tmp_path, capsys):
    code = main(["translate", "train", "--source", "sim", "--target",
                 str(tmp_path / "nope"), "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 2
    assert "--target" in capsys.readouterr().err


@pytest.mark.integration
def test_cli_train_on_the_shared_acdc_files(shared_data, tmp_path):
    """The real target as shipped (HDF5 image/label files that need --spacing);
    skipped without the shared data folder."""
    acdc = shared_data / "acdc"
    if not acdc.is_dir():
        pytest.skip(f"real data folder {acdc} is absent (set JAXSIM_SHARED_DATA)")
    run = tmp_path / "run"
    assert main(["translate", "train", "--source", "sim", "--target", str(acdc),
                 "--spacing", "10", "1.5", "1.5", "--method", "cut", "--steps", "2",
                 "--out", str(run), *TINY_NETS]) == 0  # fmt: skip
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("step")


@pytest.mark.slow  # CI runs every example in smoke mode in a step of its own
def test_cine_to_tagged_example_smoke(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples"
    script = script / "07_cine_to_tagged_cyclegan.py"
    env = {**os.environ, "SMOKE": "1"}
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)], env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 steps" in done.stdout
    assert (tmp_path / "run" / "samples" / "step_000003.png").exists()


@pytest.mark.integration
def test_map_database_checks_and_atomicity(tiny_db, tmp_path):
    from jaxsim.io import OptionError, map_database

    out = tmp_path / "copy.h5"
    with pytest.raises(ValueError, match="changed record 0's shape"):
        map_database(tiny_db, out, lambda r, im: im[:, :-1])
    with pytest.raises(ValueError, match="non-finite"):
        map_database(tiny_db, out, lambda r, im: im * np.nan)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(OptionError, match="is the source"):
        map_database(tiny_db, tiny_db, lambda r, im: im)
    seen = []
    info = map_database(tiny_db, out, lambda r, im: 2 * im, attrs={"note": {"a": 1}},
                        progress=seen.append)  # fmt: skip
    assert info["records"] == 8 and seen[-1] == 8
    with Database(tiny_db) as a, Database(out) as b:
        for r in range(a.n_records):
            np.testing.assert_allclose(b.record(r)[0], 2 * a.record(r)[0], rtol=1e-6)
        assert json.loads(b.attrs["note"]) == {"a": 1}
    with pytest.raises(FileExistsError):
        map_database(tiny_db, out, lambda r, im: im)


def test_schedule_and_negative_flags_reach_the_configuration(tmp_path):
    from jaxsim._cli_translate import config_from_args
    from jaxsim.cli import build_parser

    base = ["translate", "train", "--source", "sim", "--target", str(tmp_path),
            "--out", str(tmp_path / "run"), "--steps", "40"]  # fmt: skip
    default = config_from_args(build_parser().parse_args(base))
    assert default.decay_steps is None and default.decay_steps_used == 20
    assert default.nce_negatives == "image"
    args = build_parser().parse_args(
        [*base, "--decay-steps", "10", "--nce-negatives", "batch"]
    )
    config = config_from_args(args)
    assert (config.decay_steps_used, config.nce_negatives) == (10, "batch")
    with pytest.raises(ValueError, match=r"decay_steps must lie in \[0, steps=40\]"):
        config_from_args(build_parser().parse_args([*base, "--decay-steps", "41"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--nce-negatives", "all"])
