"""Memory planning: chunk sizes, refusal before work starts, estimate vs measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import pytest

import jaxsim.ct as ct
from jaxsim.ct._memory import plan_ct_memory
from jaxsim.kernels import VolumeGeometry
from jaxsim.phantoms import axial_geometry, default_subject

GiB = 1 << 30


def test_available_memory_is_within_the_machine():
    available = ct.available_memory()
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert available is not None and 0 < available <= total


def test_less_memory_means_smaller_chunks_and_a_smaller_estimate():
    args = dict(n_views=720, detector=(480, 420), n_basis=4, n_tissues=17, itemsize=4)
    plans = [plan_ct_memory((256, 256, 256), max_memory=64 * GiB, **args)]
    while True:  # each time a little less memory than the last plan needs
        try:
            limit = plans[-1].peak_bytes - 1
            plans.append(plan_ct_memory((256, 256, 256), max_memory=limit, **args))
        except ValueError as err:
            # the projections (720 x 480 x 420 float32, measured and corrected)
            # and the reconstruction cannot be chunked away: refused, naming both
            assert "not enough memory" in str(err) and "needs an estimated" in str(err)
            break
    chunks = [p.views_per_chunk for p in plans]
    peaks = [p.peak_bytes for p in plans]
    assert len(plans) >= 2 and chunks == sorted(chunks, reverse=True)
    assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == len(peaks)
    for p in plans:
        assert p.fits and p.peak_bytes <= p.limit_bytes
        assert 256 % p.slices_per_slab == 0
    smallest = plans[-1].peak_bytes
    unchecked = plan_ct_memory(
        (256, 256, 256), max_memory=smallest - 1, check=False, **args
    )
    assert not unchecked.fits and unchecked.peak_bytes == smallest


def test_a_job_that_cannot_fit_is_refused_before_it_starts():
    # the user's case: 400^3 voxels of 1 mm, 360 views, in 2 GiB
    vol_geom = VolumeGeometry((400, 400, 400), (1.0, 1.0, 1.0))
    subject = default_subject("male")
    geometry = axial_geometry(subject, spacing=(1.0, 1.0, 1.0), shape=(400,) * 3)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"estimated .* GiB .* \(max_memory\)"):
        ct.plan_ct(vol_geom, ct.CTAcquisition(), max_memory=2 * GiB)
    with pytest.raises(ValueError, match="not enough memory"):
        ct.simulate_ct(
            jax.random.key(0), subject, geometry=geometry, max_memory=2 * GiB
        )
    assert time.perf_counter() - start < 3.0  # nothing was rasterised or compiled
    # absurd view counts never reach XLA
    with pytest.raises(ValueError, match=r"n_views must be an integer in"):
        ct.CTAcquisition(n_views=10_000_000)


_CHILD = """
import json, resource, sys
import jax, jax.numpy as jnp
import jaxsim.ct as ct
from jaxsim.kernels import VolumeGeometry
from jaxsim.phantoms import axial_geometry, default_subject
shape, spacing, views = (64, 256, 256), (1.5, 1.5, 1.5), 60
vol_geom = VolumeGeometry(shape, spacing)
acq = ct.CTAcquisition(n_views=views, noise="none")
_, plan = ct.plan_ct(vol_geom, acq, rasterise=False)
body = ct.default_ct_materials().index("body")
f = jax.jit(lambda: jnp.zeros((17, *shape)).at[body].set(1.0))()
res = ct.simulate_ct_from_fractions(jax.random.key(0), f, vol_geom, acquisition=acq)
jax.block_until_ready(res)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(dict(estimate=plan.peak_bytes, peak=peak)))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB on Linux")
def test_estimate_brackets_the_measured_peak_memory():
    # A moderate scan in a fresh process: 64 x 256 x 256 voxels of 1.5 mm given as
    # fractions (285 MiB), 60 views; the estimate must cover the measured peak
    # resident memory and not exceed it by more than a third.
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["peak"] <= result["estimate"] <= 1.34 * result["peak"]


def test_on_an_accelerator_the_device_memory_is_the_limit(monkeypatch):
    from jaxsim.ct import _memory

    args = dict(n_views=360, detector=(240, 210), n_basis=4, n_tissues=17)
    host = plan_ct_memory((128, 128, 128), max_memory=64 * GiB, **args)
    monkeypatch.setattr(_memory, "_device_free", lambda: 8 * GiB)
    device = plan_ct_memory((128, 128, 128), **args)
    # the same arrays, without the host process baseline, against 85 % of 8 GiB
    assert host.peak_bytes - device.peak_bytes == (
        _memory.BASELINE + _memory.RASTER_COMPILE
    )
    assert device.limit_bytes == int(0.85 * 8 * GiB)
    monkeypatch.setattr(_memory, "_device_free", lambda: 64 << 20)
    with pytest.raises(ValueError, match="not enough memory"):
        plan_ct_memory((128, 128, 128), **args)
