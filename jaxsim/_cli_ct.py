"""``jaxsim ct``: a cone-beam CT of one virtual subject, with labels and a picture."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

DESCRIPTION = """\
Rasterise one virtual subject of the open phantom on an axial grid around the
heart, scan it with a circular cone-beam CT (polychromatic Beer-Lambert over the
tube spectrum, Poisson photon noise, log transform, water beam-hardening
correction, FDK) and write, in the folder OUT:

  ct_hu.nii.gz       FDK reconstruction in HU (float32, world affine)
  labels.nii.gz      tissue labels on the same grid (uint8; index into TISSUES)
  projections.h5     measured line integrals (n_views, n_v, n_u) and the scan
                     geometry (source/detector distances, pitches, angles)
  ct.png             axial slice (W800/L200), one projection, labels overlaid
  summary.json       subject parameters, options, HU per tissue, timings

The subject is drawn from the population statistics (--seed, --sex), or the
population-mean subject with --mean."""

EPILOG = """\
examples:
  jaxsim ct --out ct_subject0
  jaxsim ct --out ct_f3 --seed 3 --sex female --beam 100kVp --i0 5e4
  jaxsim ct --out ct_es --mean --phase 0.35 --shape 64 192 192 --spacing 2"""

NOISE = ("poisson", "gaussian", "none")
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")
WINDOW = (-200.0, 600.0)  # W800 / L200
OUTPUTS = ("ct_hu.nii.gz", "labels.nii.gz", "projections.h5", "ct.png", "summary.json")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ct",
        help="cone-beam CT of a virtual subject: HU image, labels, projections, PNG",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="folder")
    p.add_argument(
        "--seed", type=int, default=0, help="subject draw and noise (default 0)"
    )
    p.add_argument(
        "--sex",
        choices=("male", "female", "random"),
        default="random",
        help="sex of the drawn subject (default random)",
    )
    p.add_argument(
        "--mean",
        action="store_true",
        help="the population-mean subject of --sex (male if random) instead of a draw",
    )
    p.add_argument(
        "--phase",
        type=float,
        default=0.0,
        help="cardiac phase in [0, 1), 0 = end-diastole (default 0)",
    )
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(48, 160, 160),
        metavar=("NZ", "NY", "NX"),
        help="axial grid (default 48 160 160)",
    )
    p.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        default=[2.5],
        metavar="MM",
        help="voxel size: one value (isotropic) or three (z y x); default 2.5",
    )
    p.add_argument(
        "--views", type=int, default=360, help="views over 360 deg (default 360)"
    )
    p.add_argument(
        "--beam",
        default="120kVp",
        help="tube spectrum (80kVp, 100kVp, 120kVp, 140kVp) or a monochromatic "
        "energy in keV (default 120kVp)",
    )
    p.add_argument(
        "--i0",
        type=float,
        default=1e5,
        help="unattenuated photons per detector pixel and view (default 1e5)",
    )
    p.add_argument("--noise", choices=NOISE, default="poisson", help="detector noise")
    p.add_argument(
        "--filter", choices=FILTERS, default="shepp-logan", help="FDK ramp window"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run)
    return p


def _beam(text: str):
    from jaxsim.ct import spectrum_names

    if text in spectrum_names():
        return text
    try:
        kev = float(text)
    except ValueError:
        kev = None
    if kev is None or not 20.0 <= kev <= 150.0:
        raise ValueError(
            f"--beam must be one of {', '.join(spectrum_names())} or an energy in "
            f"[20, 150] keV; got {text!r}"
        )
    return kev


def _spacing(values) -> tuple[float, float, float]:
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"--spacing takes 1 or 3 values (mm); got {len(values)}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"--spacing must be finite and > 0 mm; got {values}")
    return tuple(float(v) for v in values)


def _check(args) -> None:
    if not 0.0 <= args.phase < 1.0:
        raise ValueError(f"--phase must lie in [0, 1); got {args.phase}")
    if min(args.shape) < 1:
        raise ValueError(f"--shape must be positive; got {args.shape}")
    if args.views < 2:
        raise ValueError(f"--views must be >= 2; got {args.views}")
    if not args.i0 > 0:
        raise ValueError(f"--i0 must be > 0 photons; got {args.i0}")
    parent = args.out.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"folder {parent} of --out {args.out} does not exist")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    existing = [str(args.out / n) for n in OUTPUTS if (args.out / n).exists()]
    if existing and not args.force:
        raise FileExistsError(f"output(s) {', '.join(existing)} exist; pass --force")


def _subject(args):
    import jax

    from jaxsim.phantoms import default_subject, sample_subjects

    if args.mean:
        return default_subject("male" if args.sex == "random" else args.sex)
    sex = None if args.sex == "random" else args.sex
    batch = sample_subjects(jax.random.key(args.seed), 1, sex=sex)
    return jax.tree_util.tree_map(lambda leaf: leaf[0], batch)


def _picture(path: Path, image, labels, projections, n_tissues, overwrite) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = image.shape[0] // 2
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6))
    axes[0].imshow(image[k], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
    axes[0].set_title(f"FDK, HU (W800/L200), slice {k}")
    axes[1].imshow(projections[0], cmap="gray", aspect="auto")
    axes[1].set_title("projection 0: line integrals")
    axes[2].imshow(image[k], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
    overlay = np.ma.masked_where(labels[k] == 0, labels[k])
    axes[2].imshow(overlay, cmap="tab20", alpha=0.45, vmin=0, vmax=n_tissues)
    axes[2].set_title("tissue labels")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    from jaxsim.io._files import atomic_path

    with atomic_path(path, overwrite=overwrite, what="picture") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _write_projections(path: Path, result, beam, args) -> None:
    import h5py

    from jaxsim.io._files import atomic_path

    g = result.geom
    with atomic_path(path, overwrite=args.force, what="projections file") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                "projections", data=np.asarray(result.projections, np.float32)
            )
            f.create_dataset("angles", data=np.asarray(g.angles, np.float64))
            for name in ("dso", "dsd", "du", "dv", "offset_u", "offset_v"):
                f.attrs[name] = float(getattr(g, name))
            f.attrs["units"] = "line integrals (dimensionless); lengths in mm"
            f.attrs["mu_water_per_mm"] = float(result.mu_water)
            f.attrs["beam"] = str(beam)
            f.attrs["i0"] = float(args.i0)


def run(args) -> int:
    _check(args)
    beam = _beam(args.beam)
    spacing = _spacing(args.spacing)
    import jax

    from jaxsim.ct import simulate_ct
    from jaxsim.io import save_nifti
    from jaxsim.phantoms import TISSUES, axial_geometry
    from jaxsim.phantoms._subject import FIELD_SPECS

    subject = _subject(args)
    geometry = axial_geometry(subject, spacing=spacing, shape=tuple(args.shape))
    print(
        f"jaxsim ct: grid {tuple(args.shape)} at {spacing} mm, {args.views} views, "
        f"{beam}, i0 {args.i0:g}, {args.noise} noise: simulating...",
        flush=True,
    )
    start = time.perf_counter()
    result = simulate_ct(
        jax.random.key(args.seed),
        subject,
        geometry=geometry,
        cardiac_phase=args.phase,
        n_angles=args.views,
        beam=beam,
        i0=args.i0,
        noise=args.noise,
        filter=args.filter,
    )
    image = np.asarray(result.image, np.float32)
    labels = np.asarray(result.labels, np.uint8)
    projections = np.asarray(result.projections, np.float32)
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(image)):
        raise ValueError("the reconstruction holds NaN or inf; nothing was written")

    args.out.mkdir(exist_ok=True)  # only once there is something to write
    save_nifti(args.out / "ct_hu.nii.gz", image, geometry, overwrite=args.force)
    save_nifti(args.out / "labels.nii.gz", labels, geometry, overwrite=args.force)
    _write_projections(args.out / "projections.h5", result, beam, args)
    _picture(args.out / "ct.png", image, labels, projections, len(TISSUES), args.force)
    hu = {
        name: {
            "voxels": int(np.sum(labels == i)),
            "mean": float(image[labels == i].mean()),
            "std": float(image[labels == i].std()),
        }
        for i, name in enumerate(TISSUES)
        if np.any(labels == i)
    }
    summary = dict(
        subject={
            name: np.asarray(getattr(subject, name)).tolist() for name in FIELD_SPECS
        },
        options=dict(
            seed=args.seed,
            sex=args.sex,
            mean_subject=args.mean,
            cardiac_phase=args.phase,
            shape=list(args.shape),
            spacing_mm=list(spacing),
            views=args.views,
            beam=beam,
            i0=args.i0,
            noise=args.noise,
            filter=args.filter,
        ),
        hu_by_tissue=hu,
        seconds=seconds,
    )
    from jaxsim.io._files import atomic_path

    with atomic_path(
        args.out / "summary.json", overwrite=args.force, what="summary"
    ) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    print(
        f"wrote {', '.join(OUTPUTS)} to {args.out} ({seconds:.1f} s of simulation)",
        flush=True,
    )
    return 0
