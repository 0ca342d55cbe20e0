"""The database commands' answers to bad input, damaged files and existing outputs:
one line naming the flag, exit code 2 (1 for ``check`` finding bad records)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest

from jaxsim.cli import main
from jaxsim.io import generate_database
from jaxsim.population import PRESETS


@pytest.fixture
def tiny_preset(monkeypatch, tiny_design):
    monkeypatch.setitem(PRESETS, "tiny", tiny_design.preset)
    return ["population", "--preset", "tiny", "--seed", "7"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def last_error_line(capsys) -> str:
    """The error after a progress bar: the last line, and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.fixture
def inputs(tiny_db, tmp_path) -> dict[str, Path]:
    """A database, an empty file, a truncated database and a folder."""
    empty, truncated, folder = tmp_path / "e.h5", tmp_path / "t.h5", tmp_path / "dir"
    empty.write_bytes(b"")
    data = tiny_db.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    folder.mkdir()
    db = tmp_path / "db.h5"
    shutil.copy(tiny_db, db)
    return {"db": db, "empty": empty, "truncated": truncated, "folder": folder}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "0/8", "--out", "{tmp}/x.h5"], "--shard i/N needs 1 <= N <= 4"),
        (["--seed", str(2**64), "--out", "{tmp}/x.h5"], "--seed must be an integer in"),
        (["--seed", "-1", "--out", "{tmp}/x.h5"], "--seed must be an integer in"),
        (["--out", "{dir}"], "--out {dir} is a folder"),
        (["--out", "{db}"], "exists; pass --force to replace it"),
        (["--out", "{tmp}/x.h5", "--repair"], "--repair works only with --resume"),
        (["--out", "{empty}", "--resume"], "not a readable HDF5 file (it is empty)"),
        (["--out", "{truncated}", "--resume"], "not a readable HDF5 file"),
    ],
)
def test_population_errors(args, message, tiny_preset, inputs, tmp_path, capsys):
    names = {"tmp": tmp_path, "dir": inputs["folder"], **inputs}
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(**names) for a in args]
    assert main([*tiny_preset, "--no-pictures", *args]) == 2
    line = one_error_line(capsys)
    assert message.format(**names) in line and "overwrite=" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stub left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export-nnunet", "{db}", "{db}"], "OUT_DIR {db} is a file, not a folder"),
        (["export-nnunet", "{empty}", "{tmp}/nn"], "it is empty"),
        (["export-nnunet", "{truncated}", "{tmp}/nn"], "not a readable HDF5"),
        (["export-nnunet", "{dir}", "{tmp}/nn"], "is a folder, not a population"),
        (["merge", "{db}", "--out", "{db}"], "--out {db} is also an input"),
        (["merge", "{db}", "--out", "{truncated}"], "exists; pass --force"),
        (["merge", "{empty}", "--out", "{tmp}/m.h5"], "it is empty"),
        (["check", "{truncated}"], "not a readable HDF5"),
        (["check", "{tmp}/absent.h5"], "does not exist"),
    ],
)
def test_other_command_errors(args, message, inputs, tmp_path, capsys):
    names = {"tmp": tmp_path, "dir": inputs["folder"], **inputs}
    db_bytes = inputs["db"].read_bytes()
    assert main([a.format(**names) for a in args]) == 2
    line = one_error_line(capsys)
    assert message.format(**names) in line and "overwrite=" not in line
    assert inputs["db"].read_bytes() == db_bytes
    assert not (tmp_path / "nn" / "dataset.json").exists()


def test_seeds_are_32_bit(tiny_preset, tmp_path, capsys):
    # A key made from 2**32 is the key of seed 0 (JAX keeps 32 bits by default),
    # so larger seeds would silently repeat designs.
    if not jax.config.read("jax_enable_x64"):
        np.testing.assert_array_equal(
            jax.random.key_data(jax.random.key(2**32)),
            jax.random.key_data(jax.random.key(0)),
        )
    args = [*tiny_preset[:-2], "--out", str(tmp_path / "x.h5"), "--seed"]
    assert main([*args, str(2**32)]) == 2
    assert "[0, 4294967295]; got 4294967296" in one_error_line(capsys)


def test_resume_refuses_side_files_of_another_run(tiny_preset, tmp_path, capsys):
    out = tmp_path / "t.h5"
    stats = tmp_path / "t_stats.json"
    stats.write_text(json.dumps({"database": {"preset": "tiny", "seed": 8}}))
    (tmp_path / "t_stats.csv").write_text("theirs\n")
    assert main([*tiny_preset, "--out", str(out), "--resume"]) == 2
    line = one_error_line(capsys)
    assert "t_stats.csv" in line and "do not belong to this run" in line
    assert "--force" in line
    assert (tmp_path / "t_stats.csv").read_text() == "theirs\n" and not out.exists()
    stats.unlink()  # a CSV alone: whose it is cannot be told
    assert main([*tiny_preset, "--out", str(out), "--resume"]) == 2
    assert "t_stats.csv" in one_error_line(capsys)


def test_resume_regenerates_its_own_side_files(tiny_preset, tmp_path, capsys):
    out = tmp_path / "t.h5"
    assert main([*tiny_preset, "--out", str(out)]) == 0
    stats = json.loads((tmp_path / "t_stats.json").read_text())
    assert stats["database"] == {
        "file": "t.h5",
        "preset": "tiny",
        "seed": 7,
        "shard": "0/1",
    }
    (tmp_path / "t_montage.png").unlink()  # e.g. killed before the montage
    assert main([*tiny_preset, "--out", str(out), "--resume"]) == 0
    assert "wrote 0 records (12 already done)" in capsys.readouterr().out
    assert (tmp_path / "t_montage.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "t_stats.json").read_text()) == stats


def test_export_force_replaces_a_larger_set(tiny_design, tiny_db, tmp_path, capsys):
    nn = tmp_path / "nn"
    assert main(["export-nnunet", str(tiny_db), str(nn)]) == 0
    (nn / "imagesTs").mkdir()  # the user's own, not part of the training set
    (nn / "imagesTs" / "x.nii.gz").write_bytes(b"keep")
    half = tmp_path / "half.h5"
    generate_database(tiny_design, half, shard=(1, 2))
    capsys.readouterr()
    assert main(["export-nnunet", str(half), str(nn)]) == 2
    assert "pass --force" in one_error_line(capsys)
    assert main(["export-nnunet", str(half), str(nn), "--force"]) == 0
    meta = json.loads((nn / "dataset.json").read_text())
    images = sorted(p.name for p in (nn / "imagesTr").iterdir())
    labels = sorted(p.name for p in (nn / "labelsTr").iterdir())
    assert meta["numTraining"] == len(images) == len(labels) == 6
    assert images[0] == "jaxsim_00006_0000.nii.gz"  # shard 1/2: records 6-11
    assert (nn / "imagesTs" / "x.nii.gz").read_bytes() == b"keep"
    assert sorted(p.name for p in nn.iterdir()) == [
        "dataset.json",
        "imagesTr",
        "imagesTs",
        "labelsTr",
    ]


def test_check_and_repair_from_the_command_line(tiny_preset, tiny_db, tmp_path, capsys):
    path = tmp_path / "d.h5"
    shutil.copy(tiny_db, path)
    assert main(["check", str(path)]) == 0
    assert "12 of 12 records of its shard on disk, 0 bad" in capsys.readouterr().out
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info_by_coord((10, 0, 0, 0))
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 7)
        fh.write(b"\x00\x01\x02\x03")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 bad" in out and "bad: record 10: images" in out
    assert "jaxsim population --preset tiny --seed 7 --shard 0/1 --out" in out
    assert main(["export-nnunet", str(path), str(tmp_path / "nn")]) == 2
    line = last_error_line(capsys)
    assert "record 10 of" in line and "--resume --repair" in line
    args = [*tiny_preset, "--out", str(path), "--no-pictures", "--resume"]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert "record 10 is corrupt" in line
    assert "regenerate them with --resume --repair" in line
    assert main([*args, "--repair"]) == 0
    assert "1 repaired" in capsys.readouterr().out
    assert main(["check", str(path)]) == 0
