"""Phantom rasterisation speed: short-axis fractions (forward, forward+backward) and a
1 mm 3D label volume of the torso.

Compile time (first call) is reported apart from the steady state (median and min of
repeats, ``block_until_ready``); process CPU seconds per call are reported too, since
wall time on a shared 2-core machine depends on the other jobs. The comparison row is
the isotropic 2x2x2 supersampling suggested in the issue, against the default "auto"
(4x1x1 for an 8 x 1.25 x 1.25 mm stack).

    python benchmarks/bench_phantom.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table, time_call, write_json  # noqa: E402

from jaxsim.phantoms import (  # noqa: E402
    ImageGeometry,
    default_subject,
    label_map,
    short_axis_geometry,
    tissue_fractions,
)

COLUMNS = [
    ("case", "case", "<34"),
    ("shape", "shape", "<12"),
    ("first_s", "first call s", ">12.2f"),
    ("median_s", "median s", ">9.3f"),
    ("min_s", "min s", ">8.3f"),
    ("cpu_s", "cpu s/call", ">10.3f"),
    ("mvox_per_s", "Mvox/s", ">8.2f"),
]


def cpu_seconds(fn, *args, repeats: int) -> float:
    """Process CPU seconds per steady-state call (all threads)."""
    jax.block_until_ready(fn(*args))
    start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    end = resource.getrusage(resource.RUSAGE_SELF)
    used = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
    return used / repeats


def row(name, shape, fn, *args, repeats):
    timing = time_call(fn, *args, repeats=repeats)
    timing["cpu_s"] = cpu_seconds(fn, *args, repeats=max(1, repeats // 2))
    voxels = 1
    for n in shape:
        voxels *= n
    timing.update(case=name, shape="x".join(map(str, shape)), voxels=voxels)
    timing["mvox_per_s"] = voxels / timing["median_s"] / 1e6
    print(f"  {name}: median {timing['median_s']:.3f} s", flush=True)
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--skip-grad",
        action="store_true",
        help="skip the forward+backward row (its reverse-mode compile is minutes)",
    )
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    subject = default_subject("male")
    sa = short_axis_geometry(subject)  # (12, 256, 256), 8 x 1.25 x 1.25 mm
    rows = []

    def sa_forward(supersample):
        return jax.jit(
            lambda s: tissue_fractions(
                s, sa, supersample=supersample, cardiac_phase=0.3
            )
        )

    rows.append(
        row(
            "SA fractions, auto (4x1x1)",
            sa.shape,
            sa_forward("auto"),
            subject,
            repeats=repeats,
        )
    )
    rows.append(
        row(
            "SA fractions, 2x2x2 (baseline)",
            sa.shape,
            sa_forward(2),
            subject,
            repeats=repeats,
        )
    )

    save(rows)
    torso = ImageGeometry.axis_aligned(
        shape=(480, 280, 360), spacing=(1.0, 1.0, 1.0), center=(0.0, 0.0, -60.0)
    )
    labels_fn = jax.jit(lambda s: label_map(s, torso))
    rows.append(
        row("torso labels 1 mm (1x1x1)", torso.shape, labels_fn, subject, repeats=2)
    )
    save(rows)

    if not args.skip_grad:
        weights = jax.random.uniform(jax.random.key(0), (17, *sa.shape))

        @jax.jit
        def sa_grad(s):
            def loss(s):
                f = tissue_fractions(s, sa, supersample=(4, 1, 1), cardiac_phase=0.3)
                return jnp.sum(weights * f)

            return jax.value_and_grad(loss)(s)

        rows.append(
            row(
                "SA fractions + grad (all params)",
                sa.shape,
                sa_grad,
                subject,
                repeats=max(2, repeats // 2),
            )
        )
        save(rows)

    print_table(rows, COLUMNS)
    print(f"wrote {save(rows)}")


def save(rows):
    """Write the rows so far (a killed run still leaves its finished rows)."""
    return write_json(
        "phantom",
        {
            "target": "<= 0.5 s per (12, 256, 256) short-axis fractions volume",
            "load_average": list(os.getloadavg()),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
