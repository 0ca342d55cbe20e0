"""Data parallel training: four forced host devices take the same steps as one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
import sys
sys.path.insert(0, {tests!r})
import jax, numpy as np
from flax import nnx
from test_loop import Tiny, blobs, cross_entropy
from jaxsim.train import SliceData, TrainConfig, Trainer

devices = jax.local_devices()
assert len(devices) == 4, devices
# SGD: Adam would divide the float-rounding noise of gradients that vanish
# analytically (a convolution bias before batch norm) by itself, and amplify it
config = TrainConfig(model="tiny", steps=4, batch_size=8, shape=(24, 24),
                     optimizer="sgd", learning_rate=1e-2, augment=True)
data = SliceData(*blobs())
runs = {{}}
for n in (4, 1):
    trainer = Trainer(config, Tiny(nnx.Rngs(0)), cross_entropy, data,
                      devices=devices[:n])
    losses = [float(trainer.step()) for _ in range(4)]
    key, images, labels = trainer.batch(0)
    placed = jax.device_put(images, trainer.batch_sharding)
    assert len(placed.sharding.device_set) == n
    assert placed.addressable_shards[0].data.shape[0] == 8 // n
    runs[n] = (losses, jax.tree.leaves(trainer.state["params"]))
np.testing.assert_allclose(runs[4][0], runs[1][0], rtol=1e-5)
for a, b in zip(runs[4][1], runs[1][1], strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
assert runs[4][0][-1] < runs[4][0][0]
bad = TrainConfig(model="tiny", steps=2, batch_size=6, shape=(24, 24))
from jaxsim.train import fit
try:
    fit(Trainer(bad, Tiny(nnx.Rngs(0)), cross_entropy, data), {out!r},
        validation=None, meta={{}}, progress=False)
except ValueError as err:
    assert "multiple of the 4" in str(err), err
else:
    raise AssertionError("batch 6 on 4 devices was accepted")
print("same steps on 4 devices", runs[4][0])
"""


@pytest.mark.integration  # a subprocess with 4 forced host devices
def test_four_host_devices_take_the_same_steps(tmp_path):
    tests = str(Path(__file__).parent)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run(
        [sys.executable, "-c", CODE.format(tests=tests, out=str(tmp_path / "r"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same steps on 4 devices" in proc.stdout
