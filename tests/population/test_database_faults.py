"""Killed, failing and interrupted writes: a database never reads complete when it
is not, and a resumed run ends bit-identical to an uninterrupted one.

A kill is modelled with ``jaxsim.io.write_hook``: at the n-th write the hook copies
the output folder (what SIGKILL would leave on disk at that instant: nothing of a
process's later clean-up) and aborts the run; the copy is then checked and resumed.
Real signals are in ``test_database_signals.py``.
"""

from __future__ import annotations

import errno
import shutil
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxsim.io import (
    RECORD_COLUMNS,
    Database,
    Interrupted,
    WriteError,
    generate_database,
    merge_databases,
    write_hook,
)

ARRAYS = (
    "images",
    "labels",
    "affines",
    *(f"records/{c}" for c in (*RECORD_COLUMNS, "complete")),
)


class Killed(BaseException):
    """Stands for SIGKILL at a write (a BaseException: no library code catches it)."""


def assert_same_database(path: Path, ref: Path) -> None:
    with h5py.File(path) as a, h5py.File(ref) as b:
        assert a.attrs["complete"] and a.attrs["layout"] == "single"
        for name in ARRAYS:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)


def assert_only_complete_reads_complete(path: Path, ref: Path) -> None:
    """Every record flagged complete equals the reference; 'complete' means all."""
    if not path.exists():
        return
    with Database(path) as db, Database(ref) as r:
        flags = db.complete_flags
        for i in np.flatnonzero(flags):
            image, labels, geometry = db.record(int(i))
            image_ref, labels_ref, geometry_ref = r.record(int(i))
            np.testing.assert_array_equal(image, image_ref)
            np.testing.assert_array_equal(labels, labels_ref)
            np.testing.assert_array_equal(geometry.affine, geometry_ref.affine)
        if db.complete:
            assert flags.all()


def write_log(fn) -> list[str]:
    """Names of the files ``fn`` writes, one entry per write."""
    log = []
    with write_hook(lambda path, offset, nbytes: log.append(path.name)):
        fn()
    return log


def kill_at(n: int, folder: Path, snapshot: Path, fn) -> bool:
    """Run ``fn``; at its n-th write copy ``folder`` to ``snapshot`` and abort."""
    count = 0

    def hook(path, offset, nbytes):
        nonlocal count
        count += 1
        if count == n:
            shutil.copytree(folder, snapshot)
            raise Killed

    with write_hook(hook):
        try:
            fn()
        except Killed:
            return True
    return False


@pytest.fixture(scope="module")
def run_writes(tiny_design, tmp_path_factory) -> list[str]:
    """The writes of an uninterrupted run of the tiny design, in order."""
    out = tmp_path_factory.mktemp("count") / "t.h5"
    return write_log(lambda: generate_database(tiny_design, out))


def moment(writes: list[str], which: str) -> int:
    """1-based index of a named moment in a run's writes."""
    first_final = writes.index("t.h5", writes.index("ls_000003.h5"))
    return {
        "journal": writes.index("run.json") + 1,
        "index": writes.index("t.h5") + 1,
        "first part": writes.index("ls_000000.h5") + 1,
        "last part": writes.index("ls_000003.h5") + 1,
        "first write of the single file": first_final + 1,
        "middle of the single file": (first_final + len(writes)) // 2 + 1,
        "last write": len(writes),
    }[which]


MOMENTS = (
    "journal",
    "index",
    "first part",
    "last part",
    "first write of the single file",
    "middle of the single file",
    "last write",
)


def test_a_run_writes_journal_index_parts_then_the_single_file(run_writes):
    assert run_writes[:2] == ["run.json", "t.h5"]
    assert run_writes[2:6] == [f"ls_{i:06d}.h5" for i in range(4)]
    assert set(run_writes[6:]) == {"t.h5"} and len(run_writes) > 20


@pytest.mark.parametrize("which", MOMENTS)
def test_killed_at_any_write_resumes_to_the_same_arrays(
    which, tiny_design, tiny_db, run_writes, tmp_path
):
    folder, snapshot = tmp_path / "run", tmp_path / "killed"
    folder.mkdir()
    n = moment(run_writes, which)
    assert kill_at(
        n, folder, snapshot, lambda: generate_database(tiny_design, folder / "t.h5")
    )
    assert_only_complete_reads_complete(snapshot / "t.h5", tiny_db)
    summary = generate_database(tiny_design, snapshot / "t.h5", resume=True)
    assert_same_database(snapshot / "t.h5", tiny_db)
    parts_before = max(0, min(4, n - 3))  # parts are writes 3..6
    assert summary["records_written"] == 3 * (4 - parts_before)
    assert sorted(p.name for p in snapshot.iterdir()) == ["t.h5"]


@pytest.mark.parametrize("which", ["first part", "middle of the single file"])
@pytest.mark.parametrize("persistent", [True, False], ids=["disk full", "one failure"])
def test_a_failing_write_is_one_clear_error_and_the_run_resumes(
    which, persistent, tiny_design, tiny_db, run_writes, tmp_path
):
    n, count = moment(run_writes, which), 0

    def full(path, offset, nbytes):
        nonlocal count
        count += 1
        if count == n or (persistent and count > n):
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "t.h5"
    with write_hook(full), pytest.raises(WriteError) as err:
        generate_database(tiny_design, out)
    assert err.value.errno == errno.ENOSPC
    assert "No space left on device" in str(err.value) and "resume=True" in str(
        err.value
    )
    assert_only_complete_reads_complete(out, tiny_db)
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == []  # no temporaries left behind by a clean failure
    generate_database(tiny_design, out, resume=True)
    assert_same_database(out, tiny_db)


@pytest.mark.parametrize("after_writes", [3, 5, 7])
def test_stop_request_ends_at_a_record_boundary(
    after_writes, tiny_design, tiny_db, tmp_path
):
    count = 0

    def hook(path, offset, nbytes):
        nonlocal count
        count += 1

    out = tmp_path / "t.h5"
    with write_hook(hook), pytest.raises(Interrupted) as err:
        generate_database(
            tiny_design,
            out,
            stop=lambda: signal.SIGTERM if count >= after_writes else None,
        )
    assert err.value.reason == signal.SIGTERM
    # Writes 1-2 are the journal and index, 3-6 the parts: the run stops after
    # the part in progress when asked, or before the single file.
    parts = min(4, after_writes - 2)
    assert f"{3 * parts} of 12 records" in str(err.value)
    with Database(out) as db:
        assert db.complete_flags.sum() == 3 * parts and not db.complete
    assert_only_complete_reads_complete(out, tiny_db)
    generate_database(tiny_design, out, resume=True)
    assert_same_database(out, tiny_db)


@pytest.mark.parametrize("which", ["first part", "middle of the single file"])
def test_force_keeps_the_old_file_until_the_new_one_is_complete(
    which, tiny_design, tiny_db, run_writes, tmp_path
):
    folder, snapshot = tmp_path / "run", tmp_path / "killed"
    folder.mkdir()
    old = tiny_db.read_bytes()
    (folder / "t.h5").write_bytes(old)
    n = moment(run_writes, which) - 1  # no index is written over an old file
    assert kill_at(
        n,
        folder,
        snapshot,
        lambda: generate_database(tiny_design, folder / "t.h5", overwrite=True),
    )
    assert (snapshot / "t.h5").read_bytes() == old
    with pytest.raises(ValueError, match="interrupted run"):
        generate_database(tiny_design, snapshot / "t.h5")
    generate_database(tiny_design, snapshot / "t.h5", resume=True)
    assert_same_database(snapshot / "t.h5", tiny_db)


@pytest.fixture(scope="module")
def shards(tiny_design, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    paths = [folder / f"s{i}.h5" for i in range(2)]
    for i, p in enumerate(paths):
        generate_database(tiny_design, p, shard=(i, 2))
    return paths


@pytest.mark.parametrize("at", ["first", "middle", "last"])
def test_merge_leaves_its_output_absent_or_complete(at, shards, tiny_db, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    writes = write_log(lambda: merge_databases(shards, tmp_path / "count.h5"))
    n = {"first": 1, "middle": len(writes) // 2, "last": len(writes)}[at]
    assert kill_at(
        n, folder, tmp_path / "killed", lambda: merge_databases(shards, folder / "m.h5")
    )
    assert not (tmp_path / "killed" / "m.h5").exists()
    count = 0

    def fail_once(path, offset, nbytes):
        nonlocal count
        count += 1
        if count == n:
            raise OSError(errno.EIO, "Input/output error")

    (folder / "m.h5").write_bytes(b"old")
    with write_hook(fail_once), pytest.raises(WriteError, match="Input/output"):
        merge_databases(shards, folder / "m.h5", overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["m.h5"]
    assert (folder / "m.h5").read_bytes() == b"old"
    merge_databases(shards, folder / "m.h5", overwrite=True)
    assert_same_database(folder / "m.h5", tiny_db)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kill", "disk full"])
def test_every_write_point(mode, tiny_design, tiny_db, run_writes, tmp_path):
    rng = np.random.default_rng(1)
    points = range(1, len(run_writes) + 1)
    for n in points if mode == "kill" else rng.choice(points, 40, replace=False):
        folder, snapshot = tmp_path / f"run{n}", tmp_path / f"killed{n}"
        folder.mkdir()
        if mode == "kill":
            assert kill_at(
                int(n),
                folder,
                snapshot,
                lambda f=folder: generate_database(tiny_design, f / "t.h5"),
            )
        else:
            count = 0

            def full(path, offset, nbytes, n=n):
                nonlocal count
                count += 1
                if count >= n:
                    raise OSError(errno.ENOSPC, "No space left on device")

            with write_hook(full), pytest.raises(WriteError):
                generate_database(tiny_design, folder / "t.h5")
            snapshot = folder
        assert_only_complete_reads_complete(snapshot / "t.h5", tiny_db)
        generate_database(tiny_design, snapshot / "t.h5", resume=True)
        assert_same_database(snapshot / "t.h5", tiny_db)
        shutil.rmtree(folder)
        shutil.rmtree(snapshot, ignore_errors=True)


def test_a_second_writer_of_the_same_file_is_refused(tiny_design, tiny_db, tmp_path):
    out, refused = tmp_path / "t.h5", []

    def progress(n):
        if not refused:
            with pytest.raises(ValueError, match="another process is writing") as e:
                generate_database(tiny_design, out, resume=True)
            refused.append(e.value)

    generate_database(tiny_design, out, progress=progress)
    assert refused and sorted(p.name for p in tmp_path.iterdir()) == ["t.h5"]
    assert_same_database(out, tiny_db)


def test_an_interrupted_run_is_continued_only_as_asked(tiny_design, tiny_db, tmp_path):
    from jaxsim.population import PopulationDesign

    out, done = tmp_path / "t.h5", []
    with pytest.raises(Interrupted):
        generate_database(
            tiny_design, out, progress=done.append, stop=lambda: len(done) == 2
        )
    other = PopulationDesign(tiny_design.preset, tiny_design.seed + 1)
    with pytest.raises(ValueError, match=r"makes .*'seed': 7.*not .*'seed': 8"):
        generate_database(other, out, resume=True)
    with pytest.raises(ValueError, match="pass resume=True to continue it or "):
        generate_database(tiny_design, out)
    with pytest.raises(ValueError, match=r"'shard': '0/1'.*not .*'shard': '0/2'"):
        generate_database(tiny_design, out, resume=True, shard=(0, 2))
    summary = generate_database(tiny_design, out, overwrite=True)  # starts over
    assert summary["records_written"] == 12
    assert_same_database(out, tiny_db)


def test_stopping_a_forced_run_keeps_the_old_file(tiny_design, tiny_db, tmp_path):
    out, done = tmp_path / "t.h5", []
    shutil.copy(tiny_db, out)
    old = out.read_bytes()
    with pytest.raises(Interrupted) as err:
        generate_database(
            tiny_design,
            out,
            overwrite=True,
            progress=done.append,
            stop=lambda: signal.SIGINT if done else None,
        )
    assert "3 of 12 records of the shard are safe in" in str(err.value)
    assert "t.h5 stays as it was until the run completes" in str(err.value)
    assert out.read_bytes() == old
