"""The open 4D cardiac-torso phantom: planned views and a sampled population.

Writes OUT/phantom_views.png (mid short-axis at end-diastole and end-systole, an
axial slice and a four-chamber view, with label colours) and
OUT/phantom_population.png (mid short-axis slices of 8 sampled subjects).

    python examples/02_phantom.py [--out out/phantom]   # SMOKE=1 for a tiny fast run
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
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from jaxsim.phantoms import (  # noqa: E402
    TISSUES,
    axial_geometry,
    default_subject,
    end_systolic_phase,
    four_chamber_geometry,
    label_map,
    sample_subjects,
    short_axis_geometry,
)

COLOURS = {
    "air": "#000000",
    "lv_blood": "#e31a1c",
    "rv_blood": "#1f78b4",
    "lv_myocardium": "#b15928",
    "rv_myocardium": "#6a3d9a",
    "la_blood": "#fb9a99",
    "ra_blood": "#a6cee3",
    "aorta": "#ff7f00",
    "pulmonary_artery": "#33a02c",
    "lung": "#d9d9f3",
    "liver": "#8c510a",
    "stomach": "#f6e8c3",
    "spleen": "#c51b7d",
    "bone": "#ffffff",
    "fat": "#fee08b",
    "muscle": "#bf5b17",
    "body": "#bababa",
}
CMAP = ListedColormap([COLOURS[name] for name in TISSUES])


def show(ax, labels, title):
    ax.imshow(labels, cmap=CMAP, vmin=-0.5, vmax=len(TISSUES) - 0.5)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/phantom"))
    args = parser.parse_args()
    smoke = os.environ.get("SMOKE") == "1"
    args.out.mkdir(parents=True, exist_ok=True)
    n_sa, pixel = (64, 5.0) if smoke else (256, 1.25)
    n_ax, ax_pixel = (64, 6.0) if smoke else (320, 1.2)
    sa = dict(shape=(3, n_sa, n_sa), spacing=(8.0, pixel, pixel))

    subject = default_subject("male")
    es = float(end_systolic_phase(subject))
    geom = short_axis_geometry(subject, **sa)
    views = [
        (label_map(subject, geom)[1], "short axis, end-diastole"),
        (label_map(subject, geom, cardiac_phase=es)[1], f"short axis, ES ({es:.2f})"),
        (
            label_map(
                subject,
                axial_geometry(
                    subject, shape=(1, n_ax, n_ax), spacing=(4.0, ax_pixel, ax_pixel)
                ),
            )[0],
            "axial",
        ),
        (
            label_map(
                subject,
                four_chamber_geometry(
                    subject, shape=(1, n_sa, n_sa), spacing=(6.0, pixel, pixel)
                ),
            )[0],
            "four-chamber",
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    for ax, (labels, title) in zip(axes, views, strict=True):
        show(ax, np.asarray(labels), title)
    handles = [Patch(color=COLOURS[n], label=n) for n in TISSUES]
    fig.legend(handles=handles, loc="lower center", ncol=9, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(args.out / "phantom_views.png", dpi=80 if smoke else 110)
    plt.close(fig)

    subjects = sample_subjects(jax.random.key(0), 8)
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
    for i, ax in enumerate(axes.ravel()):
        one = jax.tree.map(lambda leaf, i=i: leaf[i], subjects)
        labels = label_map(one, short_axis_geometry(one, **sa))[1]
        sex = "F" if float(one.sex) else "M"
        show(
            ax,
            np.asarray(labels),
            f"#{i} {sex}, EDV {float(one.edv):.0f} mL, ESV {float(one.esv):.0f} mL",
        )
    fig.tight_layout()
    fig.savefig(args.out / "phantom_population.png", dpi=80 if smoke else 100)
    plt.close(fig)
    print(f"wrote {args.out}/phantom_views.png and phantom_population.png")


if __name__ == "__main__":
    main()
