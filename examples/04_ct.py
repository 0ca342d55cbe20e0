"""Contrast-enhanced cone-beam CT of a virtual subject, beside a real chest CT.

Simulates a 120 kVp circular cone-beam scan of the open phantom (polychromatic
Beer-Lambert, Poisson noise, water beam-hardening correction, FDK) and writes
OUT/ct_example.png: an axial slice in a cardiac window, one projection, the labels
overlaid, the real contrast CT from ../shared/data/ct (when present) and the heart's
HU distribution in both. Also prints the heart HU percentiles.

    python examples/04_ct.py [--out out/ct]      # SMOKE=1 for a tiny fast run
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

from jaxsim.ct import CTAcquisition, hu_statistics, simulate_ct  # noqa: E402
from jaxsim.phantoms import TISSUES, axial_geometry, default_subject  # noqa: E402

HEART = (
    "lv_blood",
    "rv_blood",
    "lv_myocardium",
    "rv_myocardium",
    "la_blood",
    "ra_blood",
)
WINDOW = (-200.0, 600.0)  # cardiac window: level 200, width 800


def real_ct(data_dir: Path):
    """Axial slice through the heart (HU) and the heart's HU values, or None."""
    folder = data_dir / "ct"
    if not folder.is_dir():
        return None
    import nibabel as nib

    image = np.asarray(nib.load(folder / "ct_cropped.nii.gz").dataobj, np.float32)
    heart = np.asarray(nib.load(folder / "heart.nii.gz").dataobj) > 0
    k = int(np.round(np.mean(np.nonzero(heart)[2])))
    return np.rot90(image[:, :, k]), image[heart]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/ct")
    parser.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"),
    )
    args = parser.parse_args()
    smoke = os.environ.get("SMOKE") == "1"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    subject = default_subject("male")
    if smoke:
        shape, spacing, n_views = (6, 48, 48), (8.0, 8.0, 8.0), 40
    else:
        shape, spacing, n_views = (24, 160, 160), (2.5, 2.5, 2.5), 240
    geometry = axial_geometry(subject, spacing=spacing, shape=shape)
    acquisition = CTAcquisition(n_views=n_views, i0=2e5)  # 120 kVp, Poisson noise
    result = simulate_ct(
        jax.random.key(0), subject, geometry=geometry, acquisition=acquisition
    )
    image = np.asarray(result.image)
    labels = np.asarray(result.labels)
    heart_ids = [TISSUES.index(t) for t in HEART]
    sim_heart = image[np.isin(labels, heart_ids)]
    for tissue, stats in hu_statistics(image, labels).items():
        if tissue in ("lv_blood", "lv_myocardium", "lung", "fat"):
            print(f"{tissue:14s} {stats['median']:7.0f} HU (median)")
    k = shape[0] // 2
    real = real_ct(Path(args.data))

    fig, axes = plt.subplots(1, 5, figsize=(22, 4.6))
    axes[0].imshow(image[k], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
    axes[0].set_title("simulated CT, HU (W800/L200)")
    proj = np.asarray(result.projections[0])
    axes[1].imshow(proj, cmap="gray", aspect="auto")
    axes[1].set_title("projection 0: line integrals")
    axes[2].imshow(image[k], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
    overlay = np.ma.masked_where(labels[k] == 0, labels[k])
    axes[2].imshow(overlay, cmap="tab20", alpha=0.45, vmin=0, vmax=len(TISSUES))
    axes[2].set_title("labels on the reconstruction grid")
    bins = np.linspace(-300, 900, 61)
    axes[4].hist(sim_heart, bins=bins, density=True, alpha=0.6, label="simulated")
    if real is not None:
        axes[3].imshow(real[0], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
        axes[3].set_title("real contrast CT (TotalSegmentator ref.)")
        axes[4].hist(real[1], bins=bins, density=True, alpha=0.6, label="real")
    else:
        axes[3].set_title("real CT: ../shared/data/ct absent")
    axes[4].set_title("heart HU")
    axes[4].legend()
    for ax in axes[:4]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "ct_example.png", dpi=90)

    pct = (5, 50, 95)
    print("simulated heart HU p5/p50/p95:", np.round(np.percentile(sim_heart, pct)))
    if real is not None:
        print("real heart HU      p5/p50/p95:", np.round(np.percentile(real[1], pct)))
    print(f"wrote {out / 'ct_example.png'}")


if __name__ == "__main__":
    main()
