"""Seconds per federated round and peak memory for 3 sites, in process and on
Flower's simulation engine, with the same settings in the same run.

Sites: the ACDC folder split by pathology group (``jaxsim split-sites``; by
symlinks in a temporary folder). Each engine runs ``--rounds`` rounds of the
``direct`` task (FedAvg, default local steps) in a process of its own; rows:

* round 1 (compilation and reading the sites included) and the median of the
  later rounds before the last (training + Dice evaluation at every site);
* the last round (adds fine-tuning and HD95/ASSD at every site);
* per-site training seconds of a steady round (the local update alone);
* peak resident memory: the whole in-process run; for Flower, the server process
  and the largest ClientApp actor (each actor holds its own JAX);
* for Flower, the engine's own overhead: process wall time minus the rounds
  (Ray start-up, actor start, shutdown).

    python benchmarks/bench_federated.py [--acdc ../shared/data/acdc] [--rounds 3]
        [--reference | --smoke]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import print_table, write_json

RUN = """
import json, sys
from jaxsim.federated import FederatedConfig, run_federated
import resource
config = FederatedConfig.loads(sys.argv[1])
result = run_federated(config, json.loads(sys.argv[2]), sys.argv[3],
                       engine=sys.argv[4], progress=False, log=None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak}))
"""


def _run(engine: str, config, sites, out: Path) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUN, config.dumps(), json.dumps(sites), str(out),
         engine],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
    record = json.loads((out / "federated.json").read_text())
    rounds = record["round_seconds"]
    steady = rounds[1:-1] or rounds[-1:]
    last = max(r["round"] for r in record["rounds"])
    train = {
        r["site"]: r.get("train-seconds")
        for r in record["rounds"]
        if r["round"] == min(2, last)
    }
    actor_peak = max(r.get("train-peak-rss-mb", 0.0) for r in record["rounds"])
    return {
        "engine": engine,
        "round1_s": rounds[0],
        "steady_round_s": statistics.median(steady),
        "last_round_s": rounds[-1],
        "train_s_per_site": train,
        "peak_mb": peak,
        "actor_peak_mb": actor_peak if engine == "flower" else "",
        "overhead_s": wall - sum(rounds),
        "wall_s": wall,
    }


def main() -> None:
    from jaxsim.federated import FederatedConfig, flower_available, split_acdc_sites
    from jaxsim.train import DEFAULT_MODEL_OPTIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acdc", type=Path, default=Path("../shared/data/acdc"))
    parser.add_argument("--rounds", type=int, default=3)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--reference", action="store_true", help="GPU-sized U-Net")
    size.add_argument("--smoke", action="store_true", help="tiny: checks the script")
    args = parser.parse_args()
    options = {}
    if args.reference:
        options = {"model_options": DEFAULT_MODEL_OPTIONS["unet2d"], "batch_size": 16}
    elif args.smoke:
        options = {"shape": (32, 32), "spacing": 8.0, "batch_size": 2, "local_steps": 2,
                   "finetune_steps": 1, "tta": False,
                   "model_options": {"channels": [4, 4], "strides": [2],
                                     "num_res_units": 0}}  # fmt: skip
    config = FederatedConfig(
        rounds=args.rounds, data_spacing=(10.0, 1.5, 1.5), **options
    )
    engines = ["inprocess"] + (["flower"] if flower_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = split_acdc_sites(args.acdc, tmp / "sites")
        sites = [str(tmp / "sites" / n) for n in sorted(names)]
        for engine in engines:
            rows.append(_run(engine, config, sites, tmp / engine))
    print(f"{len(sites)} sites, {config.local_steps} local steps x batch "
          f"{config.batch_size}, {config.shape} px, {args.rounds} rounds")  # fmt: skip
    print_table(
        rows,
        [("engine", "engine", ""), ("round1_s", "round 1 s", ".1f"),
         ("steady_round_s", "steady round s", ".1f"),
         ("last_round_s", "last round s", ".1f"), ("overhead_s", "overhead s", ".1f"),
         ("peak_mb", "peak MiB", ".0f"), ("actor_peak_mb", "actor MiB", ".0f")],
    )  # fmt: skip
    path = write_json(
        "federated", {"config": config.to_json(), "sites": sites, "rows": rows}
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
