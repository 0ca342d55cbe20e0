"""``jaxsim glo shape`` and ``jaxsim generate``: help, bad input, refusal; whole
runs under ``integration``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxsim.cli import build_parser, main


@pytest.mark.parametrize(
    "argv", [["glo", "--help"], ["glo", "shape", "--help"], ["generate", "--help"]]
)
def test_help_has_an_example(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 0
    assert "example: jaxsim" in capsys.readouterr().out


def test_glo_without_a_generator_prints_help(capsys):
    assert main(["glo"]) == 2
    assert "shape" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "-1"], "--steps must be >= 0"),
        (["--latent-dim", "0"], "--latent-dim must be >= 1"),
        (["--grid", "0", "2", "2"], "--grid takes three ints"),
        (["--labels", "RV=1,XX=2"], "XX"),
    ],
)
def test_glo_shape_bad_options(extra, message, tmp_path, capsys):
    code = main(
        ["glo", "shape", "--real", str(tmp_path), "--out", str(tmp_path / "r"), *extra]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_glo_shape_without_cases(tmp_path, capsys):
    code = main(
        ["glo", "shape", "--real", str(tmp_path / "none"), "--out", str(tmp_path / "r")]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_generate_bad_input(tmp_path, capsys):
    assert (
        main(
            [
                "generate",
                "--model",
                str(tmp_path),
                "--n",
                "0",
                "--out",
                str(tmp_path / "a.h5"),
            ]
        )
        == 2
    )
    assert "--n must be >= 1" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                "--model",
                str(tmp_path),
                "--n",
                "2",
                "--out",
                str(tmp_path / "a.h5"),
            ]
        )
        == 2
    )
    assert "no GLO shape run" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                "--model",
                str(tmp_path),
                "--n",
                "2",
                "--seed",
                "-3",
                "--out",
                str(tmp_path / "a.h5"),
            ]
        )
        == 2
    )
    assert "--seed" in capsys.readouterr().err


def _write_case(folder, name, labels):
    h5py = pytest.importorskip("h5py")
    with h5py.File(folder / f"{name}.h5", "w") as f:
        f["image"] = labels.astype(np.float32) / 3
        f["label"] = labels


@pytest.mark.slow
def test_glo_shape_and_generate_end_to_end(tmp_path, capsys):
    import jax.numpy as jnp

    from jaxsim.io import Database
    from jaxsim.labels import ACDC, task_labels
    from jaxsim.phantoms import (
        default_subject,
        end_systolic_phase,
        label_map,
        short_axis_geometry,
    )

    real = tmp_path / "real"
    real.mkdir()
    for k, edv in enumerate((120.0, 190.0)):
        s = default_subject().replace(edv=jnp.asarray(edv, jnp.float32))
        g = short_axis_geometry(s, spacing=(10.0, 4.0, 4.0), shape=(8, 40, 40))
        for frame, phase in ((1, 0.0), (2, float(end_systolic_phase(s)))):
            lab = np.asarray(
                task_labels(np.asarray(label_map(s, g, cardiac_phase=phase)), ACDC)
            )
            # file values RV=3, MYO=2, LV=1 to exercise --labels
            lab = np.choose(lab, [0, 3, 2, 1]).astype(np.uint8)
            _write_case(real, f"patient00{k}_frame0{frame}", lab)
    run = tmp_path / "run"
    argv = [
        "glo",
        "shape",
        "--real",
        str(real),
        "--labels",
        "RV=3,MYO=2,LV=1",
        "--spacing",
        "10",
        "4",
        "4",
        "--steps",
        "2",
        "--warm-steps",
        "2",
        "--latent-dim",
        "3",
        "--hidden",
        "8",
        "--grid",
        "2",
        "2",
        "2",
        "--n-generated",
        "2",
        "--quiet",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    report = json.loads((run / "shape" / "report.json").read_text())
    assert set(report["dice"]) == {"patient000", "patient001"}
    assert main(argv) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    db = tmp_path / "gen.h5"
    gen = [
        "generate",
        "--model",
        str(run),
        "--n",
        "2",
        "--out",
        str(db),
        "--no-pictures",
    ]
    assert main(gen) == 0
    with Database(db) as d:
        assert d.n_records == 2 * 2 * 3
        assert d.design["subject_source"]["checksum"] == report["checksum"]
        _, labels, _ = d.record(0)
        assert set(np.unique(labels).tolist()) > {0}
    assert main(gen) == 2  # exists
    assert main([*gen, "--resume"]) == 0  # verifies the finished file
    assert main([*gen, "--force"]) == 0
    # a retrained model no longer resumes the database
    assert main([*argv[:-3], "--seed", "1", "--force", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main([*gen, "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err
