"""``jaxsim enhance``: help, flags mapped onto the configuration, refusals, and a
whole train-then-apply run on a real twin (integration)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from jaxsim.cli import build_parser, main


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("train", ["--real", "--twins", "--reference", "--resume", "examples:"]),
        ("apply", ["--model", "--force", "example:"]),
    ],
)
def test_help(capsys, action, words):
    with pytest.raises(SystemExit) as exit_:
        main(["enhance", action, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(w in out for w in words)


def test_without_action_prints_help(capsys):
    assert main(["enhance"]) == 2
    assert "train" in capsys.readouterr().out


def _args(tmp_path, *extra):
    return ["enhance", "train", "--real", str(tmp_path), "--twins", str(tmp_path),
            "--spacing", "10", "1.5", "1.5", "--out", str(tmp_path / "run"),
            *extra]  # fmt: skip


def test_flags_reach_the_configuration(tmp_path):
    from jaxsim._cli_enhance import config_from_args

    args = build_parser().parse_args(_args(tmp_path, "--steps", "7"))
    c = config_from_args(args)
    assert (c.steps, c.shape, c.spacing, c.ngf, c.hidden) == (
        7,
        (128, 128),
        2.5,
        16,
        32,
    )
    assert c.data_spacing == (10.0, 1.5, 1.5) and c.real == (str(tmp_path),)
    args = build_parser().parse_args(_args(tmp_path, "--reference"))
    c = config_from_args(args)
    assert (c.shape, c.spacing, c.ngf, c.hidden, c.ndf) == (
        (256, 256),
        1.25,
        64,
        128,
        64,
    )
    args = build_parser().parse_args(_args(tmp_path, "--reference", "--ngf", "32"))
    assert config_from_args(args).ngf == 32


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--shape", "100", "100"], "multiples of 32"),
        (["--steps", "0"], "steps"),
        (["--pixel-size", "-1"], "spacing"),
    ],
)
def test_bad_options(tmp_path, capsys, extra, match):
    assert main(_args(tmp_path, *extra)) == 2
    assert match in capsys.readouterr().err


def test_bad_spacing_and_missing_paths(tmp_path, capsys):
    args = _args(tmp_path)
    args[args.index("--spacing") + 1] = "-10"
    assert main(args) == 2
    assert "--spacing" in capsys.readouterr().err
    args = _args(tmp_path)
    args[args.index("--real") + 1] = str(tmp_path / "absent")
    assert main(args) == 2
    assert "--real" in capsys.readouterr().err


def test_real_file_without_twin(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    with h5py.File(data / "p_frame01.h5", "w") as f:
        f["image"] = np.zeros((2, 32, 32), np.float32)
        f["label"] = np.zeros((2, 32, 32), np.uint8)
    twins = tmp_path / "twins" / "q"
    twins.mkdir(parents=True)
    report = {"parameters": {"grid_shape": [2, 32, 32], "es_phase": None},
              "input": {"labels": "q_frame01.h5", "es": None,
                        "spacing_mm": [10, 1.5, 1.5]}}  # fmt: skip
    (twins / "report.json").write_text(json.dumps(report))
    code = main(["enhance", "train", "--real", str(data), "--twins",
                 str(tmp_path / "twins"), "--spacing", "10", "1.5", "1.5",
                 "--out", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    assert code == 2
    assert "no twin was fitted to the real file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_apply_refusals(tmp_path, capsys):
    db = tmp_path / "db.h5"
    assert main(["enhance", "apply", "--model", str(tmp_path), str(db), "--out",
                 str(tmp_path / "o.h5")]) == 2  # fmt: skip
    assert "no such database" in capsys.readouterr().err
    db.write_bytes(b"")
    assert main(["enhance", "apply", "--model", str(tmp_path / "none"), str(db),
                 "--out", str(tmp_path / "o.h5")]) == 2  # fmt: skip
    assert "no enhancer run" in capsys.readouterr().err


@pytest.mark.slow
def test_train_on_a_real_twin_then_apply(shared_data, tmp_path):
    from jaxsim.io import Database, generate_database
    from jaxsim.population import PopulationDesign, Preset

    acdc = shared_data / "acdc"
    ed = acdc / "patient001_frame01.h5"
    if not ed.exists():
        pytest.skip("patient001 of the shared ACDC data is absent")
    twin = tmp_path / "twins" / "p001"
    assert main(["twin", str(ed), "--spacing", "10", "1.5", "1.5", "--steps", "2",
                 "2", "--no-cine", "--quiet", "--out", str(twin)]) == 0  # fmt: skip
    run = tmp_path / "run"
    tiny = ["--ngf", "2", "--hidden", "4", "--ndf", "4", "--shape", "64", "64",
            "--pixel-size", "5", "--quiet"]  # fmt: skip
    train = ["enhance", "train", "--real", str(ed), "--twins", str(tmp_path / "twins"),
             "--spacing", "10", "1.5", "1.5", "--out", str(run), "--steps", "2",
             *tiny]  # fmt: skip
    assert main(train) == 0
    assert (run / "samples" / "step_000002.png").stat().st_size > 0
    assert main(train) == 2  # exists: refused without --resume / --force
    assert main([*train, "--resume", "--steps", "3"]) == 0
    meta = json.loads((run / "config.json").read_text())
    assert meta["config"]["steps"] == 3 and meta["data"]["files"] == [ed.name]

    preset = Preset(
        name="tiny", description="test design", n_male=1, n_female=0,
        shape=(2, 40, 40), spacing=(10.0, 2.5, 2.5), contrasts=(0,), n_coils=1,
        oversample=1, contrast_batch=1,
    )  # fmt: skip
    db = tmp_path / "tiny.h5"
    generate_database(PopulationDesign(preset, 3), db)
    out = tmp_path / "enh.h5"
    apply = ["enhance", "apply", "--model", str(run), str(db), "--out", str(out)]
    assert main([*apply, "--quiet"]) == 0
    assert main([*apply, "--quiet"]) == 2  # exists: refused without --force
    assert main([*apply, "--quiet", "--force"]) == 0
    with Database(db) as a, Database(out) as b:
        assert b.n_records == a.n_records and "enhanced_by" in b.attrs
        np.testing.assert_array_equal(a.record(0)[1], b.record(0)[1])
