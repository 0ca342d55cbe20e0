"""Cine -> tagged with CycleGAN (seed 003's recipe), tested on the phantom alone.

Seed 003 turns real cine into tagged-looking images with a physics transform
(:func:`jaxsim.mr.cine_to_tagged`) and then trains a CycleGAN between those and
real tagged images, so the result picks up what the transform misses (tags that
deform with the heart, tagged-sequence contrast, blood washout). No real tagged
images exist here, so the target side is the phantom's own tagged simulation
(:func:`jaxsim.mr.simulate_tagged`: material tags that deform): the example
checks the machinery, not realism. With real tagged data, pass it as the
target (``jaxsim translate train --method cyclegan --target DIR``).

Source: simulated cine slices of subjects 0..n-1 through cine_to_tagged. Target:
tagged simulations of *other* subjects (n..2n-1), so the two sides are unpaired.
Writes OUT/run (a translation run: samples/, metrics.csv, checkpoints).

    python examples/07_cine_to_tagged_cyclegan.py [--out out/cine2tag] [--steps N]
    SMOKE=1 python examples/07_cine_to_tagged_cyclegan.py   # tiny, a minute on CPU
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import jax
import numpy as np

from jaxsim.mr import (
    MRAcquisition,
    TaggingSequence,
    cine_to_tagged,
    simulate_cine,
    simulate_tagged,
)
from jaxsim.phantoms import sample_subjects, short_axis_geometry
from jaxsim.train import SliceData, TranslationConfig, normalize, run_translation

TAGS = dict(tag_spacing=7.0, flip_total=math.radians(70))


def _subject(batch, i):
    return jax.tree.map(lambda x: x[i], batch)


def simulate_sides(n: int, shape, spacing: float, phases, key):
    """``(source, target)`` normalised slices ``(N, H, W)``: cine_to_tagged of
    subjects ``0..n-1`` and tagged simulations of subjects ``n..2n-1``."""
    subjects = sample_subjects(key, 2 * n)
    acq = MRAcquisition(snr=30.0, n_coils=2, oversample=1)
    source, target = [], []
    for i in range(2 * n):
        s = _subject(subjects, i)
        geom = short_axis_geometry(s, spacing=(8.0, spacing, spacing), shape=shape)
        k = jax.random.fold_in(key, 1000 + i)
        if i < n:
            cine = simulate_cine(k, s, geom, cardiac_phases=phases, acquisition=acq)
            rr = float(s.rr_interval)
            times = np.asarray(phases)[:, None] * rr  # (frames, 1) over (nz,)
            image = cine_to_tagged(
                cine.image, pixel_spacing=spacing, frame_times=times, **TAGS
            )
            source.append(np.asarray(image).reshape(-1, *shape[1:]))
        else:
            seq = TaggingSequence(**TAGS)
            tagged = simulate_tagged(
                k, s, geom, cardiac_phases=phases, sequence=seq, acquisition=acq
            )
            target.append(np.asarray(tagged.image).reshape(-1, *shape[1:]))
    return tuple(np.asarray(normalize(np.concatenate(x))) for x in (source, target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/cine2tag"))
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    smoke = os.environ.get("SMOKE") == "1"
    if smoke:
        n, shape, spacing, phases, steps = 1, (1, 32, 32), 4.0, (0.0, 0.2), 3
        nets = dict(ngf=4, n_blocks=1, ndf=4, n_layers_d=2)
    else:
        n, shape, spacing, phases, steps = 8, (4, 96, 96), 2.0, (0.0, 0.15, 0.3), 1500
        nets = {}
    steps = args.steps or steps
    a, b = simulate_sides(n, shape, spacing, phases, jax.random.key(3))
    print(f"source {a.shape} (cine_to_tagged), target {b.shape} (simulate_tagged)")
    zeros = np.zeros(a.shape, np.uint8)
    config = TranslationConfig(
        method="cyclegan",
        source="sim",
        target="phantom tagged simulation",
        steps=steps,
        shape=shape[1:],
        spacing=spacing,
        sample_every=max(1, min(250, steps)),
        **nets,
    )
    result = run_translation(
        config,
        args.out / "run",
        overwrite=True,
        source=SliceData(a, zeros),
        target=SliceData(b, np.zeros(b.shape, np.uint8)),
        progress=not smoke,
    )
    last = result.losses[-1]
    print(
        f"{result.step} steps in {result.seconds:.0f} s; cycle {last['cycle']:.3f}, "
        f"G {last['loss_g']:.3f}, D {last['loss_d']:.3f}; run in {args.out / 'run'}"
    )


if __name__ == "__main__":
    main()
