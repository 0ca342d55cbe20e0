"""Several host devices give the same records; a killed run resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from jaxsim.io import generate_database

TINY_CODE = """
import sys, jax, numpy as np
from jaxsim.population import PopulationDesign, Preset
TINY = Preset(name="tiny", description="test design", n_male=1, n_female=1,
              shape=(2, 48, 48), spacing=(10.0, 2.5, 2.5), contrasts=(0, 14, 26),
              n_coils=2, oversample=1, contrast_batch=2)
design = PopulationDesign(TINY, 7)
"""


def _python(code: str, env_extra: dict, **kwargs):
    env = {**os.environ, **env_extra}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.integration  # a subprocess with 4 forced host devices
def test_four_host_devices_match_one_device():
    code = (
        TINY_CODE
        + """
from jaxsim.population import simulate_label_set
assert len(jax.local_devices()) == 4, jax.local_devices()
many = simulate_label_set(design, 1)
one = simulate_label_set(design, 1, devices=jax.local_devices()[:1])
# Labels are identical; images agree to float32 rounding (a different per-device
# batch lets XLA vectorise reductions in a different order).
np.testing.assert_array_equal(many.labels, one.labels)
scale = float(np.abs(one.images).max())
np.testing.assert_allclose(many.images, one.images, rtol=1e-5, atol=1e-6 * scale)
print("same", many.images.shape)
"""
    )
    proc = _python(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert "same (3, 2, 48, 48)" in out


@pytest.mark.slow
def test_kill_at_random_moments_then_resume(tiny_design, tiny_db, tmp_path):
    path = tmp_path / "killed.h5"
    code = (
        TINY_CODE
        + f"""
from jaxsim.io import generate_database
generate_database(design, {str(path)!r}, resume=True,
                  progress=lambda n: print("done", flush=True))
"""
    )
    rng = np.random.default_rng(0)
    for _ in range(3):
        with _python(code, {}) as proc:  # closes the pipes and reaps the process
            # Wait for the first label set, then kill at a random moment after it.
            line = proc.stdout.readline()
            if line:
                time.sleep(rng.uniform(0.0, 2.0))
                proc.send_signal(signal.SIGKILL)
            proc.communicate()
        if not line:
            break  # finished (or failed) before the first kill point
    generate_database(tiny_design, path, resume=True)
    with h5py.File(path) as a, h5py.File(tiny_db) as b:
        assert a.attrs["complete"]
        for name in ("images", "labels", "affines", "records/complete"):
            np.testing.assert_array_equal(a[name][()], b[name][()])
