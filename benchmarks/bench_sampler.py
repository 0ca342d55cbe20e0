"""On-device training data: labelled images per second from ``sample_batch``.

Rows: 2D short-axis slices at 128 x 128 and 192 x 192 (batch 32) and 3D stacks
(8 x 128 x 128, batch 4), compiled steady state (compile timed apart), with the
default ranges; and 128 x 128 slices without the default PD texture, for its
cost. Baseline in the same run: reading the same number of labelled records
(image + label map) from an HDF5 database that ``jaxsim population --preset
quick`` wrote (the library call behind it), with the reader of ``jaxsim.io``,
which is what a training loop over a disk database does per batch.

    python benchmarks/bench_sampler.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from _timing import print_table, time_call, write_json

from jaxsim.io import Database, generate_database
from jaxsim.population import PRESETS, PopulationDesign, SamplerSpec, sample_batch


def sampler_rows(repeats: int) -> list[dict]:
    rows = []
    cases = (
        ((128, 128), 32, {}),
        ((128, 128), 32, {"texture": (0.0, 0.0)}),
        ((192, 192), 32, {}),
        ((8, 128, 128), 4, {}),
    )
    for shape, n, changes in cases:
        spec = SamplerSpec(shape=shape).replace(**changes)
        keys = iter(jax.random.split(jax.random.key(0), repeats + 2))
        t = time_call(
            lambda keys=keys, n=n, spec=spec: sample_batch(next(keys), n, spec),
            repeats=repeats,
        )
        unit = "stacks/s" if len(shape) == 3 else "slices/s"
        rows.append(
            {
                "case": f"sample_batch {shape} x {n}"
                + (" no texture" if changes else ""),
                **t,
                "per_s": n / t["median_s"],
                "unit": unit,
            }
        )
    return rows


def database_rows(repeats: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "quick.h5"
        design = PopulationDesign(PRESETS["quick"], 0)
        t0 = time.perf_counter()
        generate_database(design, path)
        made = time.perf_counter() - t0
        with Database(path) as db:
            n_records = db.n_records
            order = np.random.default_rng(0).permutation(n_records)

            def read(n):
                out = [db.record(int(order[i % n_records]))[:2] for i in range(n)]
                return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

            t = time_call(lambda: read(32), repeats=repeats)
        shape = design.preset.shape
        return [
            {
                "case": f"HDF5 database read, 32 records {shape}",
                **t,
                "per_s": 32 / t["median_s"],
                "unit": "volumes/s",
                "database_seconds": made,
            },
            {
                "case": f"  same, as slices ({shape[0]} per record)",
                **t,
                "per_s": 32 * shape[0] / t["median_s"],
                "unit": "slices/s",
            },
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = sampler_rows(args.repeats) + database_rows(args.repeats)
    print(f"devices {jax.local_devices()}")
    print_table(
        rows,
        [
            ("case", "case", "s"),
            ("first_s", "first call [s]", ".2f"),
            ("median_s", "steady [s]", ".3f"),
            ("per_s", "per second", ".1f"),
            ("unit", "unit", "s"),
        ],
    )
    path = write_json("sampler", {"rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
