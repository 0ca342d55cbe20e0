"""Steps per second of a whole training loop, fed by the simulator or by a database.

The loop is ``jaxsim train``'s: the default 2D U-Net at 128 x 128, batch 16,
AdamW, on-device augmentation, one compiled step per batch. Rows, measured in the
same run on the same network:

* fed by the on-device sampler (``--data sim``: a fresh simulated batch per step);
* fed from an HDF5 database written by ``jaxsim population`` (``--data DB.h5``:
  random slices read, resampled and normalised per step);
* the step alone on a batch held on device (the network's own cost), and each
  data source alone, so the table shows which side bounds the loop.

Compilation is timed apart (first step); steady state is the median of the
per-step wall times with the loss synchronised every step.

    python benchmarks/bench_training.py [--steps 20] [--db quick.h5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from _timing import block, print_table, write_json
from flax import nnx

from jaxsim.io import generate_database
from jaxsim.models import build_model
from jaxsim.population import PRESETS, PopulationDesign
from jaxsim.train import (
    DatabaseData,
    Preprocessing,
    SimulatedData,
    TrainConfig,
    Trainer,
    make_objective,
    model_options,
)


class Held:
    """One batch kept on device: the step without any data cost."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def batch(self, key, n):
        return self.images, self.labels


def _times(fn, steps: int) -> dict:
    t0 = time.perf_counter()
    block(fn(0))
    first = time.perf_counter() - t0
    times = []
    for s in range(1, steps + 1):
        t0 = time.perf_counter()
        block(fn(s))
        times.append(time.perf_counter() - t0)
    return {
        "first_s": first,
        "median_s": float(np.median(times)),
        "min_s": float(np.min(times)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--db", type=Path, default=None, help="an existing database")
    args = parser.parse_args()

    config = TrainConfig(batch_size=args.batch_size)
    prep = Preprocessing(shape=config.shape, spacing=config.spacing)
    with tempfile.TemporaryDirectory() as tmp:
        db_path = args.db
        made = None
        if db_path is None:
            db_path = Path(tmp) / "quick.h5"
            t0 = time.perf_counter()
            generate_database(PopulationDesign(PRESETS["quick"], 0), db_path)
            made = time.perf_counter() - t0
        sources = {
            "simulator (--data sim)": SimulatedData(prep),
            "HDF5 database (--data DB.h5)": DatabaseData(db_path, prep),
        }
        key = jax.random.key(0)
        held = Held(*sources["simulator (--data sim)"].batch(key, args.batch_size))
        rows = []
        for name, data in [*sources.items(), ("batch held on device", held)]:
            model = build_model(
                config.model, in_channels=1, out_channels=4, spatial_dims=2,
                rngs=nnx.Rngs(0), **model_options(config),
            )  # fmt: skip
            trainer = Trainer(config, model, make_objective(config), data)
            t = _times(lambda s, tr=trainer: tr.step(), args.steps)
            rows.append(
                {"case": f"train step, {name}", **t, "steps_s": 1 / t["median_s"]}
            )
        for name, data in sources.items():
            t = _times(
                lambda s, d=data: d.batch(jax.random.fold_in(key, s), args.batch_size),
                args.steps,
            )
            rows.append(
                {
                    "case": f"data alone, {name}",
                    **t,
                    "steps_s": 1 / t["median_s"],
                    "images_s": args.batch_size / t["median_s"],
                }
            )
    print(f"devices {jax.local_devices()}; batch {args.batch_size}, {config.shape}")
    print_table(
        rows,
        [
            ("case", "case", "s"),
            ("first_s", "first [s]", ".2f"),
            ("median_s", "steady [s]", ".3f"),
            ("steps_s", "batches/s", ".2f"),
            ("images_s", "images/s", ".0f"),
        ],
    )
    path = write_json(
        "training",
        {"rows": rows, "batch_size": args.batch_size, "database_seconds": made},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
