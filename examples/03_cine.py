"""Cine bSSFP of one virtual subject: the 27 seed-2021 contrasts and a cardiac cycle.

Writes OUT/cine_contrasts.png (mid short-axis slice, 3 SNR x 3 sequences x 3 tissue
draws) and OUT/cine_cycle.png (the same slice across the cardiac cycle).

    python examples/03_cine.py [--out out/cine]      # SMOKE=1 for a tiny fast run
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxsim.mr import (  # noqa: E402
    SEED2021_SEQUENCES,
    SEED2021_SNR,
    MRAcquisition,
    seed2021_contrasts,
    simulate_cine,
    simulate_cine_contrasts,
)
from jaxsim.phantoms import default_subject, short_axis_geometry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/cine"))
    args = parser.parse_args()
    smoke = os.environ.get("SMOKE") == "1"
    args.out.mkdir(parents=True, exist_ok=True)
    shape, spacing = (
        ((3, 64, 64), (10.0, 4.0, 4.0)) if smoke else ((5, 192, 192), (8.0, 1.5, 1.5))
    )
    subject = default_subject("male")
    geometry = short_axis_geometry(subject, spacing=spacing, shape=shape)
    key = jax.random.key(2021)
    mid = shape[0] // 2

    tissue, sequence, snr, idx = seed2021_contrasts(jax.random.fold_in(key, 0))
    result = simulate_cine_contrasts(
        jax.random.fold_in(key, 1),
        subject,
        geometry,
        tissue=tissue,
        sequence=sequence,
        acquisition=MRAcquisition(snr=snr, n_coils=1 if smoke else 8),
    )
    images = np.asarray(result.image[:, 0, mid])
    fig, axes = plt.subplots(3, 9, figsize=(18, 6.6), dpi=80)
    for c, ax in enumerate(axes.flat):
        a, b, t = (int(v) for v in idx[c])
        ax.imshow(images[c], cmap="gray", vmin=0, vmax=np.percentile(images[c], 99.5))
        tr, te, flip = SEED2021_SEQUENCES[b]
        ax.set_title(
            f"SNR {SEED2021_SNR[a]:g} | {np.degrees(flip):.0f}° "
            f"TR {tr * 1e3:.1f}\ntissue draw {t + 1}",
            fontsize=7,
        )
        ax.axis("off")
    fig.suptitle("27 contrasts of one subject (mid short-axis, end-diastole)")
    fig.tight_layout()
    fig.savefig(args.out / "cine_contrasts.png")
    plt.close(fig)

    phases = np.linspace(0.0, 1.0, 4 if smoke else 8, endpoint=False)
    cycle = simulate_cine(
        jax.random.fold_in(key, 2),
        subject,
        geometry,
        cardiac_phases=tuple(phases),
        acquisition=MRAcquisition(snr=30.0),
    )
    fig, axes = plt.subplots(1, len(phases), figsize=(2.4 * len(phases), 2.8), dpi=80)
    vmax = np.percentile(np.asarray(cycle.image[:, mid]), 99.5)
    for p, ax in zip(phases, axes, strict=True):
        i = list(phases).index(p)
        ax.imshow(np.asarray(cycle.image[i, mid]), cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"phase {p:.3f}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out / "cine_cycle.png")
    plt.close(fig)
    print(f"wrote {args.out / 'cine_contrasts.png'} and {args.out / 'cine_cycle.png'}")


if __name__ == "__main__":
    main()
