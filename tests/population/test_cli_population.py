"""``jaxsim population``, ``merge`` and ``export-nnunet`` from the command line."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from jaxsim.cli import main
from jaxsim.population import PRESETS


@pytest.fixture
def tiny_preset(monkeypatch, tiny_design):
    monkeypatch.setitem(PRESETS, "tiny", tiny_design.preset)
    return "tiny"


def test_population_command_end_to_end(tiny_preset, tiny_db, tmp_path, capsys):
    out = tmp_path / "t.h5"
    args = ["population", "--preset", tiny_preset, "--seed", "7", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "wrote 12 records" in text and "volumes/s" in text
    png = (tmp_path / "t_montage.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    with (tmp_path / "t_stats.csv").open() as f:
        rows = list(csv.DictReader(f))
    stats = json.loads((tmp_path / "t_stats.json").read_text())
    assert len(rows) == 2 and stats["records"] == 12
    assert stats["snr_levels"] == [10.0, 20.0, 40.0]
    ef = [float(r["ef"]) for r in rows]
    edv = [float(r["edv_ml"]) for r in rows]
    esv = [float(r["esv_ml"]) for r in rows]
    np.testing.assert_allclose(ef, [(a - b) / a for a, b in zip(edv, esv, strict=True)])
    with h5py.File(out) as a, h5py.File(tiny_db) as b:  # CLI == library, same seed
        np.testing.assert_array_equal(a["images"][()], b["images"][()])

    assert main(args) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert "wrote 0 records (12 already done)" in capsys.readouterr().out

    nn = tmp_path / "nn"
    assert main(["export-nnunet", str(out), str(nn)]) == 0
    meta = json.loads((nn / "dataset.json").read_text())
    assert meta["numTraining"] == 12 and meta["labels"]["lv_myocardium"] == 3


def test_shards_and_merge_from_the_command_line(tiny_preset, tiny_db, tmp_path):
    base = ["population", "--preset", tiny_preset, "--seed", "7", "--no-pictures"]
    for i in range(2):
        assert (
            main([*base, "--shard", f"{i}/2", "--out", str(tmp_path / f"{i}.h5")]) == 0
        )
    merged = tmp_path / "m.h5"
    assert (
        main(
            [
                "merge",
                str(tmp_path / "0.h5"),
                str(tmp_path / "1.h5"),
                "--out",
                str(merged),
            ]
        )
        == 0
    )
    with h5py.File(merged) as a, h5py.File(tiny_db) as b:
        np.testing.assert_array_equal(a["images"][()], b["images"][()])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "3/2"], "--shard"),
        (["--shard", "a/b"], "--shard"),
        (["--out", "/nonexistent/dir/x.h5"], "does not exist"),
    ],
)
def test_population_command_errors(extra, message, tmp_path, capsys):
    args = ["population", "--preset", "quick", "--out", str(tmp_path / "q.h5"), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unknown_preset_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["population", "--preset", "nope", "--out", "x.h5"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["population", "--help"])
    text = capsys.readouterr().out
    assert "seed2021" in text and "--shard" in text and "--resume" in text


def test_export_rejects_foreign_files(tmp_path, capsys):
    foreign = tmp_path / "f.h5"
    with h5py.File(foreign, "w") as f:
        f["image"] = np.zeros(3)
    assert main(["export-nnunet", str(foreign), str(tmp_path / "o")]) == 2
    assert "not a jaxsim population database" in capsys.readouterr().err
