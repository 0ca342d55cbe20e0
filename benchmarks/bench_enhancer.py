"""Seconds per training step of the SPADE enhancer, and of its forward pass.

Rows, measured in the same run on pairs held in memory (the networks' own cost;
rendering the twins happens once, before training):

* the enhancer's training step (generator then discriminator update, batch 1) at
  the CPU defaults (128 x 128, ngf 16, SPADE hidden 32, ndf 32), and with
  ``--reference`` also at GauGAN's sizes (256 x 256, ngf 64, hidden 128, ndf 64);
* the generator's forward pass alone (``jaxsim.train.enhance``, batch 1);
* the baseline: a CUT translation step at its defaults on the same slice size.

Compilation is timed apart (first call); steady state is the median of the
per-step wall times.

    python benchmarks/bench_enhancer.py [--steps 10] [--reference]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from _timing import block, print_table, write_json

from jaxsim.models import count_params
from jaxsim.train import (
    ENHANCER_REFERENCE_SIZES,
    EnhancerConfig,
    EnhancerPairs,
    EnhancerTrainer,
    TranslationConfig,
    TranslationTrainer,
    build_enhancer,
    enhance,
)


class Held:
    """Random slices held in memory (``batch(key, n)`` as a data source)."""

    def __init__(self, size: int, n: int = 8):
        rng = np.random.default_rng(0)
        self.labels = rng.integers(0, 4, (n, size, size)).astype(np.uint8)
        self.images = rng.random((n, size, size), dtype=np.float32)

    def pairs(self) -> EnhancerPairs:
        names = tuple(str(i) for i in range(len(self.images)))
        return EnhancerPairs(
            self.labels, self.images, self.images[::-1].copy(), self.labels, names
        )

    def batch(self, key, n):
        idx = np.asarray(jax.random.randint(key, (n,), 0, len(self.images)))
        return self.images[idx], self.labels[idx]


def _times(fn, steps: int) -> dict:
    t0 = time.perf_counter()
    block(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return {"first_s": first, "median_s": float(np.median(times)),
            "min_s": float(np.min(times))}  # fmt: skip


def _enhancer_rows(name: str, config: EnhancerConfig, steps: int) -> list[dict]:
    held = Held(config.shape[0])
    g, d = build_enhancer(config)
    params = {"params_g": count_params(g), "params_d": count_params(d)}
    trainer = EnhancerTrainer(config, held.pairs())
    rows = [{"case": f"enhancer step, {name}", **params,
             **_times(trainer.step, steps)}]  # fmt: skip
    generator = trainer.generator()
    fwd = jax.jit(enhance)
    image, labels = held.images[:1], held.labels[:1]
    rows.append({"case": f"enhancer forward, {name}",
                 **_times(lambda: fwd(generator, image, labels), steps)})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument(
        "--reference", action="store_true", help="also GauGAN's sizes (a GPU row)"
    )
    args = parser.parse_args()

    default = EnhancerConfig()
    rows = _enhancer_rows("defaults", default, args.steps)
    if args.reference:
        ref = EnhancerConfig(**ENHANCER_REFERENCE_SIZES)
        rows += _enhancer_rows("reference sizes", ref, args.steps)
    cut = TranslationConfig(method="cut", shape=default.shape)
    held = Held(default.shape[0])
    trainer = TranslationTrainer(cut, held, held)
    baseline = _times(trainer.step, args.steps)
    rows.append({"case": "baseline: CUT step, defaults", **baseline})
    print(f"devices {jax.local_devices()}; batch 1")
    print_table(
        rows,
        [
            ("case", "case", "s"),
            ("params_g", "G params", "d"),
            ("params_d", "D params", "d"),
            ("first_s", "first [s]", ".2f"),
            ("median_s", "steady [s]", ".3f"),
        ],
    )
    path = write_json("enhancer", {"rows": rows, "steps": args.steps})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
