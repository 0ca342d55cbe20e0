"""Checksums catch damaged bytes everywhere a database is read; readers may open a
database while a run writes it; the reader refuses formats it does not know."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxsim.io import (
    CorruptDatabaseError,
    Database,
    Interrupted,
    check_database,
    export_nnunet,
    generate_database,
    merge_databases,
)

ARRAYS = ("images", "labels", "affines", "records/t1", "records/complete")


def flip_byte(path: Path, dataset: str, coord: tuple[int, ...]) -> None:
    """Invert one byte in the middle of the stored chunk at ``coord``."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info_by_coord(coord)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte ^ 0xFF]))


def assert_same_arrays(path: Path, ref: Path) -> None:
    with h5py.File(path) as a, h5py.File(ref) as b:
        assert a.attrs["complete"]
        for name in ARRAYS:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)


@pytest.fixture
def damaged(tiny_db, tmp_path) -> Path:
    """A copy of the tiny database whose record 5 has one flipped image byte."""
    path = tmp_path / "d.h5"
    shutil.copy(tiny_db, path)
    flip_byte(path, "images", (5, 0, 0, 0))
    return path


def test_a_damaged_image_is_named_on_read_and_by_check(damaged, tiny_db):
    with Database(damaged) as db, Database(tiny_db) as ref:
        with pytest.raises(CorruptDatabaseError, match="record 5 of") as err:
            db.record(5)
        assert err.value.records == (5,)
        np.testing.assert_array_equal(db.record(4)[0], ref.record(4)[0])
    report = check_database(damaged)
    assert list(report["bad"]) == [5] and "images" in report["bad"][5]
    assert report["complete"] and report["missing"] == []


def test_a_damaged_record_stops_export_before_anything_is_replaced(damaged, tmp_path):
    out = tmp_path / "nn"
    with pytest.raises(CorruptDatabaseError, match="record 5"):
        export_nnunet(damaged, out)
    assert not out.exists()  # created for the export, removed with it
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CorruptDatabaseError, match="record 5"):
        export_nnunet(damaged, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_resume_names_damaged_records_and_repair_regenerates_them(
    damaged, tiny_design, tiny_db
):
    with pytest.raises(CorruptDatabaseError, match="record 5 is corrupt") as err:
        generate_database(tiny_design, damaged, resume=True)
    assert err.value.records == (5,) and "repair=True" in str(err.value)
    summary = generate_database(tiny_design, damaged, resume=True, repair=True)
    assert summary["records_repaired"] == 1 and summary["records_written"] == 3
    assert_same_arrays(damaged, tiny_db)
    assert check_database(damaged)["bad"] == {}


@pytest.mark.parametrize(
    ("dataset", "coord", "bad"),
    [
        ("labels", (2, 0, 0, 0), [6, 7, 8]),  # a label map: its label set's records
        ("records/t1", (9, 0), [9, 10, 11]),  # a column chunk: one label set's rows
        ("affines", (1, 0, 0), [6, 7, 8, 9, 10, 11]),  # subject 1: both phases
    ],
)
def test_check_names_every_record_a_damaged_chunk_affects(
    dataset, coord, bad, tiny_db, tmp_path
):
    path = tmp_path / "d.h5"
    shutil.copy(tiny_db, path)
    flip_byte(path, dataset, coord)
    assert list(check_database(path)["bad"]) == bad


def test_merge_refuses_a_damaged_shard(tiny_design, tmp_path):
    shards = [tmp_path / f"s{i}.h5" for i in range(2)]
    for i, p in enumerate(shards):
        generate_database(tiny_design, p, shard=(i, 2))
    flip_byte(shards[1], "images", (8, 0, 0, 0))
    with pytest.raises(CorruptDatabaseError, match="record 8"):
        merge_databases(shards, tmp_path / "m.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0.h5", "s1.h5"]


def test_a_non_finite_image_with_a_valid_checksum_is_refused(tiny_db, tmp_path):
    path = tmp_path / "nan.h5"
    shutil.copy(tiny_db, path)
    with h5py.File(path, "r+") as f:
        image = f["images"][3]
        image[0, 0, 0] = np.nan
        f["images"][3] = image
    with Database(path) as db, pytest.raises(CorruptDatabaseError, match="record 3"):
        db.record(3)
    assert list(check_database(path)["bad"]) == [3]


def test_a_damaged_part_of_an_interrupted_run(tiny_design, tiny_db, tmp_path):
    out = tmp_path / "t.h5"
    done = []
    with pytest.raises(Interrupted):
        generate_database(
            tiny_design,
            out,
            progress=done.append,
            stop=lambda: signal.SIGINT if len(done) == 3 else None,
        )
    part = tmp_path / "t.h5.parts" / "ls_000001.h5"
    flip_byte(part, "images", (1, 0, 0, 0))
    with Database(out) as db:  # the index reads through to the parts
        with pytest.raises(CorruptDatabaseError, match="record 4 of"):
            db.record(4)
    report = check_database(out)
    assert report["layout"] == "journal" and list(report["bad"]) == [3, 4, 5]
    assert report["missing"] == [9, 10, 11]
    with pytest.raises(CorruptDatabaseError, match="3-5"):
        generate_database(tiny_design, out, resume=True)
    generate_database(tiny_design, out, resume=True, repair=True)
    assert_same_arrays(out, tiny_db)


def test_a_reader_opened_during_a_run_sees_finished_records(
    tiny_design, tiny_db, tmp_path
):
    out = tmp_path / "t.h5"
    readers, seen = [], []

    def progress(n):
        if not readers:
            readers.append(Database(out))  # the writer keeps going
        seen.append(int(readers[0].complete_flags.sum()))

    with Database(tiny_db) as ref:
        generate_database(tiny_design, out, progress=progress)
        db = readers[0]
        with db:
            assert seen == [3, 6, 9, 12]
            assert db.complete  # it followed the finished file
            for r in (0, 11):
                np.testing.assert_array_equal(db.record(r)[0], ref.record(r)[0])
    assert not (tmp_path / "t.h5.parts").exists()


def test_reader_refuses_unknown_versions_and_reads_version_1(tiny_db, tmp_path):
    newer = tmp_path / "v3.h5"
    shutil.copy(tiny_db, newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(ValueError, match="format_version 3.*reads versions 1 to 2"):
        Database(newer)
    older = tmp_path / "v1.h5"
    shutil.copy(tiny_db, older)
    with h5py.File(older, "r+") as f:
        f.attrs["format_version"] = 1
        del f.attrs["layout"]
    with Database(older) as db, Database(tiny_db) as ref:
        assert db.format_version == 1 and db.layout == "single"
        np.testing.assert_array_equal(db.record(7)[0], ref.record(7)[0])


@pytest.mark.parametrize("content", ["empty", "truncated"])
def test_empty_or_truncated_files_are_named(content, tiny_db, tmp_path):
    path = tmp_path / "x.h5"
    data = tiny_db.read_bytes()
    path.write_bytes(b"" if content == "empty" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        Database(path)


def test_database_files_carry_checksums(tiny_db):
    with h5py.File(tiny_db) as f:
        assert f.attrs["format_version"] == 2 and f.attrs["checksums"] == "fletcher32"
        names = ["images", "labels", "affines", "records/t1", "records/complete"]
        assert all(f[n].fletcher32 for n in names)
        assert json.loads(f.attrs["design"])["n_records"] == 12
