"""Real signals and real failing system calls against ``jaxsim population``.

The command runs in a subprocess whose simulator replays the reference database's
label sets (the simulation itself is tested elsewhere; here it would only cost
compile time), each one when the test opens its gate; it says when it waits for
one, so a signal can be sent at a known moment. Failing ``pwrite`` calls are
injected with strace where it is installed and allowed to trace.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxsim.io import RECORD_COLUMNS, Database, generate_database

SCRIPT = r"""
import json, sys, time
from pathlib import Path

import jaxsim.population as population
from jaxsim.cli import main
from jaxsim.io import RECORD_COLUMNS, Database
from jaxsim.population import PRESETS, LabelSet, Preset

ref, gate, preset = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
PRESETS["tiny"] = Preset(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in preset.items()})


def replay(design, label_set, *, subjects=None, devices=None):
    if gate:  # say we wait, then wait for the test to open this label set's gate
        (Path(gate) / f"waiting{label_set}").touch()
    while gate and not (Path(gate) / str(label_set)).exists():
        time.sleep(0.01)
    n_c = design.n_contrasts
    rows = range(label_set * n_c, (label_set + 1) * n_c)
    with Database(ref) as db:
        records = db.records()
        image, labels, geometry = db.record(rows[0])
        images = [db.record(r)[0] for r in rows]
    return LabelSet(
        index=label_set, subject=label_set // 2, phase=label_set % 2,
        cardiac_phase=float(records["cardiac_phase"][rows[0]]), labels=labels,
        images=__import__("numpy").stack(images), affine=geometry.affine,
        records={k: records[k][rows.start:rows.stop] for k in RECORD_COLUMNS},
    )


population.simulate_label_set = replay
sys.exit(main(sys.argv[4:]))
"""

ARRAYS = ("images", "labels", "affines", *(f"records/{c}" for c in RECORD_COLUMNS))


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory) -> dict[str, str]:
    """Environment sharing compiled code between the subprocesses (faster)."""
    folder = tmp_path_factory.mktemp("jax_cache")
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def command(tiny_design, tiny_db, gate, out: Path) -> list[str]:
    preset = json.dumps(dataclasses.asdict(tiny_design.preset))
    return [
        sys.executable,
        "-c",
        SCRIPT,
        str(tiny_db),
        str(gate or ""),
        preset,
        *("population", "--preset", "tiny", "--seed", "7", "--no-pictures"),
        *("--out", str(out)),
    ]


def assert_same_database(path: Path, ref: Path) -> None:
    with h5py.File(path) as a, h5py.File(ref) as b:
        assert a.attrs["complete"]
        for name in ARRAYS:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
)
def test_a_signal_stops_at_a_record_boundary_and_readers_keep_reading(
    signum, code, tiny_design, tiny_db, jax_cache, tmp_path
):
    gate, out = tmp_path / "gate", tmp_path / "t.h5"
    gate.mkdir()
    proc = subprocess.Popen(
        command(tiny_design, tiny_db, gate, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=jax_cache,
    )
    try:
        for ls in (0, 1):
            (gate / str(ls)).touch()
        wait_for(gate / "waiting2", proc)  # parts 0 and 1 are written
        # Another process reads while the run writes (no lock stops either).
        reader = Database(out)
        assert reader.complete_flags.sum() == 6
        with Database(tiny_db) as ref:
            np.testing.assert_array_equal(reader.record(4)[0], ref.record(4)[0])
        proc.send_signal(signum)  # the run waits for label set 2's gate
        time.sleep(0.2)
        (gate / "2").touch()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert line.startswith(f"jaxsim population: {name}: stopped at a record boundary")
    assert "9 of 12 records" in line and line.endswith("continue with --resume")
    with reader:
        assert reader.complete_flags.sum() == 9 and not reader.complete
        generate_database(tiny_design, out, resume=True)
        assert reader.complete  # the open reader moved on to the finished file
    assert_same_database(out, tiny_db)


def _strace_works() -> bool:
    strace = shutil.which("strace")
    if strace is None:
        return False
    try:
        probe = subprocess.run(
            [strace, "-f", "-qq", "-o", os.devnull, "-e", "trace=pwrite64", "true"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


needs_strace = pytest.mark.skipif(
    not _strace_works(), reason="strace is absent or may not trace here"
)


def run_under_strace(injection: str, tiny_design, tiny_db, out: Path, env):
    args = ["strace", "-f", "-qq", "-o", os.devnull]
    args += ["-e", "trace=pwrite64", "-e", f"inject=pwrite64:{injection}"]
    return subprocess.run(
        args + command(tiny_design, tiny_db, None, out),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@needs_strace
@pytest.mark.parametrize(
    ("injection", "code"),
    [
        ("signal=SIGKILL:when=20", -signal.SIGKILL),
        pytest.param("error=ENOSPC:when=4+", 1, marks=pytest.mark.slow),
    ],
)
def test_real_kill_and_full_disk_in_a_system_call(
    injection, code, tiny_design, tiny_db, jax_cache, tmp_path
):
    out = tmp_path / "k.h5"
    proc = run_under_strace(injection, tiny_design, tiny_db, out, jax_cache)
    assert proc.returncode in (code, 128 - code), proc.stderr
    assert "Traceback" not in proc.stderr
    if code == 1:
        line = proc.stderr.strip().splitlines()[-1]
        assert "No space left on device" in line and "--resume" in line
    with Database(out) as db:  # parts 0-1 are whole (writes 3-4 of the run)
        assert db.complete_flags.sum() >= 3 and not db.complete
    generate_database(tiny_design, out, resume=True)
    assert_same_database(out, tiny_db)


@pytest.mark.slow
@needs_strace
def test_real_kills_at_random_system_calls(tiny_design, tiny_db, jax_cache, tmp_path):
    rng = np.random.default_rng(2)
    for k, when in enumerate(rng.integers(1, 240, 12)):
        out = tmp_path / f"k{k}.h5"
        kind = "signal=SIGKILL" if k % 2 else "signal=SIGTERM"
        proc = run_under_strace(
            f"{kind}:when={when}", tiny_design, tiny_db, out, jax_cache
        )
        assert "Traceback" not in proc.stderr
        generate_database(tiny_design, out, resume=True)
        assert_same_database(out, tiny_db)
