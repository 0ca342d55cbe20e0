"""SPAMM tagging: a real ACDC slice before/after cine_to_tagged, and phantom tagged
frames whose tags deform with the heart (ED, mid-systole, ES).

Writes OUT/tagging_acdc.png and OUT/tagging_phantom.png; without SMOKE also copies
them to docs/images/. The ACDC panel needs ../shared/data/acdc (or
$JAXSIM_SHARED_DATA/acdc) and is skipped without it.

    python examples/06_tagging.py [--out out/tagging]   # SMOKE=1 for a tiny fast run
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxsim.io import read_image_label_h5  # noqa: E402
from jaxsim.mr import (  # noqa: E402
    MRAcquisition,
    TaggingSequence,
    cine_to_tagged,
    simulate_tagged,
)
from jaxsim.phantoms import (  # noqa: E402
    default_subject,
    end_systolic_phase,
    short_axis_geometry,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def _acdc_file() -> Path | None:
    root = os.environ.get("JAXSIM_SHARED_DATA")
    root = Path(root) if root else Path(__file__).resolve().parents[2] / "shared/data"
    files = sorted((root / "acdc").glob("*frame01.h5"))
    return files[0] if files else None


def acdc_figure(out: Path) -> Path | None:
    path = _acdc_file()
    if path is None:
        print("ACDC data absent: skipping the real-image panel")
        return None
    image, label = read_image_label_h5(path)
    k = int(np.argmax((label == 2).sum(axis=(1, 2))))
    kw = dict(pixel_spacing=1.5, tag_spacing=7.5, flip_total=math.radians(70))
    fresh = np.asarray(cine_to_tagged(image[k], angle=math.radians(45), **kw))
    late = np.asarray(
        cine_to_tagged(image[k], angle=math.radians(45), frame_times=0.4, **kw)
    )
    fig, axes = plt.subplots(1, 4, figsize=(14, 4.2), dpi=90)
    panels = [
        (image[k], "ACDC cine (bSSFP)"),
        (fresh, "cine_to_tagged, t = 0"),
        (late, "t = 0.4 s (faded)"),
        (np.ma.masked_equal(label[k], 0), "labels (unchanged)"),
    ]
    for ax, (img, title) in zip(axes, panels, strict=True):
        cmap = "viridis" if title.startswith("labels") else "gray"
        ax.imshow(img, cmap=cmap)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{path.stem}: 1-3-3-1 SPAMM grid, 7.5 mm, 70 deg total, 45 deg")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    target = out / "tagging_acdc.png"
    fig.savefig(target)
    plt.close(fig)
    return target


def phantom_figure(out: Path, smoke: bool) -> Path:
    subject = default_subject("male")
    shape, spacing = (
        ((1, 48, 48), (8.0, 3.0, 3.0)) if smoke else ((1, 192, 192), (8.0, 1.25, 1.25))
    )
    geometry = short_axis_geometry(subject, spacing=spacing, shape=shape)
    es = float(end_systolic_phase(subject))
    phases = (0.0, 0.5 * es, es)
    result = simulate_tagged(
        jax.random.key(6),
        subject,
        geometry,
        cardiac_phases=phases,
        sequence=TaggingSequence(
            tag_spacing=7.0, flip_total=math.pi / 2, angle=math.radians(30)
        ),
        acquisition=MRAcquisition(
            snr=None if smoke else 40.0,
            n_coils=1 if smoke else 4,
            oversample=1 if smoke else 2,
        ),
    )
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=90)
    names = ("end-diastole (tagging)", "mid-systole", "end-systole")
    vmax = float(np.percentile(result.image[:, 0], 99.5))
    for ax, img, name, p in zip(axes, result.image[:, 0], names, phases, strict=True):
        ax.imshow(np.asarray(img), cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(
            f"{name}\nphase {p:.2f}, t = {p * float(subject.rr_interval):.2f} s"
        )
        ax.axis("off")
    fig.suptitle("Phantom SPAMM grid: tags are material and deform with the LV")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    target = out / "tagging_phantom.png"
    fig.savefig(target)
    plt.close(fig)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/tagging"))
    args = parser.parse_args()
    smoke = os.environ.get("SMOKE") == "1"
    args.out.mkdir(parents=True, exist_ok=True)
    written = [acdc_figure(args.out), phantom_figure(args.out, smoke)]
    for path in written:
        if path is None:
            continue
        print(f"wrote {path}")
        if not smoke:
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS / path.name)
            print(f"copied to {DOCS / path.name}")


if __name__ == "__main__":
    main()
