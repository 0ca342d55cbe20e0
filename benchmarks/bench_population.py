"""Population generation throughput, projected seed2021 wall time and peak memory.

Simulates the first label sets of a preset (the code path of ``jaxsim population``,
without the file writes), reports steady-state volumes/s (the first label set,
which compiles, is timed apart), the projected wall time of the whole preset, and
the process's peak resident memory. Baseline in the same run: the same records
generated one contrast at a time with ``simulate_cine`` (no batching, anatomy
rasterised per record).

    python benchmarks/bench_population.py [--preset seed2021] [--label-sets 4]
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import numpy as np
from _timing import print_table, write_json

from jaxsim.mr import simulate_cine
from jaxsim.population import PRESETS, PopulationDesign, simulate_label_set


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seed2021", choices=sorted(PRESETS))
    parser.add_argument("--label-sets", type=int, default=4)
    parser.add_argument("--baseline-records", type=int, default=3)
    args = parser.parse_args()
    design = PopulationDesign(PRESETS[args.preset], 0)
    subjects = design.subjects()
    n = min(args.label_sets, design.n_label_sets)

    t0 = time.perf_counter()
    simulate_label_set(design, 0, subjects=subjects)
    first = time.perf_counter() - t0
    times = []
    for ls in range(1, n):
        t0 = time.perf_counter()
        simulate_label_set(design, ls, subjects=subjects)
        times.append(time.perf_counter() - t0)
    per_set = float(np.median(times)) if times else first
    vps = design.n_contrasts / per_set
    projected = first + per_set * (design.n_label_sets - 1)

    # Baseline: one record at a time through simulate_cine (same physics).
    subject = jax.tree_util.tree_map(lambda a: a[1], subjects)
    tissue, seq, snr, _ = design.contrasts(1)
    base_times = []
    for c in range(args.baseline_records + 1):
        t0 = time.perf_counter()
        simulate_cine(
            jax.random.key(c),
            subject,
            design.geometry(subject),
            tissue=jax.tree_util.tree_map(lambda a: a[c], tissue),  # noqa: B023
            sequence=jax.tree_util.tree_map(lambda a: a[c], seq),  # noqa: B023
            acquisition=design.acquisition(snr=float(snr[c])),
        ).image.block_until_ready()
        base_times.append(time.perf_counter() - t0)
    base = float(np.median(base_times[1:]))

    rows = [
        {
            "case": f"{args.preset}: label set ({design.n_contrasts} contrasts)",
            "first_s": first,
            "seconds": per_set,
            "volumes_per_s": vps,
        },
        {
            "case": "baseline: one simulate_cine call per record",
            "first_s": base_times[0],
            "seconds": base,
            "volumes_per_s": 1.0 / base,
        },
    ]
    print(
        f"preset {args.preset}: {design.n_records} records, grid "
        f"{design.preset.shape}, {design.preset.n_coils} coils, oversample "
        f"{design.preset.oversample}, devices {jax.local_devices()}"
    )
    print_table(
        rows,
        [
            ("case", "case", "s"),
            ("first_s", "first call [s]", ".2f"),
            ("seconds", "steady [s]", ".2f"),
            ("volumes_per_s", "volumes/s", ".2f"),
        ],
    )
    print(
        f"projected {args.preset} wall time: {projected / 60:.1f} min "
        f"(target 15 min); peak RSS {peak_rss_gb():.2f} GB (target 4 GB); "
        f"batched vs baseline: {vps * base:.1f}x"
    )
    path = write_json(
        "population",
        {
            "preset": args.preset,
            "rows": rows,
            "projected_minutes": projected / 60,
            "peak_rss_gb": peak_rss_gb(),
            "label_sets_timed": n,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
