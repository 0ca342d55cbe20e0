"""``jaxsim ct``: a cone-beam CT of one virtual subject, with labels and a picture."""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from jaxsim._cli_common import parse_spacing
from jaxsim.ct import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING,
    FILTERS,
    MAX_VIEWS,
    NOISE_MODELS,
    CTAcquisition,
    spectrum_names,
)

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
  summary.json       subject parameters, options, HU per tissue, memory, timings

The subject is drawn from the population statistics (--seed, --sex), or the
population-mean subject with --mean. The peak memory is estimated before the
scan starts, views and slices are processed in chunks that fit, and a scan that
cannot fit (in --max-memory, default what the machine has available) is refused."""

EPILOG = """\
examples:
  jaxsim ct --out ct_subject0
  jaxsim ct --out ct_f3 --seed 3 --sex female --beam 100kVp --i0 5e4
  jaxsim ct --out ct_es --mean --phase 0.35 --shape 64 192 192 --spacing 2
  jaxsim ct --out ct_big --shape 256 256 256 --spacing 1.5 --max-memory 4"""

WINDOW = (-200.0, 600.0)  # W800 / L200
OUTPUTS = ("ct_hu.nii.gz", "labels.nii.gz", "projections.h5", "ct.png", "summary.json")
_ACQ = CTAcquisition()  # the library defaults, shown and used as the CLI defaults
GiB = 1 << 30


def _fmt(values) -> str:
    return " ".join(f"{v:g}" for v in values)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ct",
        help="cone-beam CT of a virtual subject: HU image, labels, projections, PNG",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--out", type=Path, required=True, metavar="OUT", help="folder")
    add("--seed", type=int, default=0, help="subject draw and noise (default 0)")
    add(
        "--sex",
        choices=("male", "female", "random"),
        default="random",
        help="sex of the drawn subject (default random)",
    )
    add(
        "--mean",
        action="store_true",
        help="the population-mean subject of --sex (male if random) instead of a draw",
    )
    add(
        "--phase",
        type=float,
        default=0.0,
        help="cardiac phase in [0, 1), 0 = end-diastole (default 0)",
    )
    add(
        "--shape",
        type=int,
        nargs=3,
        default=DEFAULT_SHAPE,
        metavar=("NZ", "NY", "NX"),
        help=f"axial grid (default {_fmt(DEFAULT_SHAPE)})",
    )
    add(
        "--spacing",
        nargs="+",
        default=[",".join(f"{s:g}" for s in DEFAULT_SPACING)],
        metavar="MM",
        help="voxel size in mm: one value (isotropic) or three, as SZ SY SX or "
        f"SZ,SY,SX (default {_fmt(DEFAULT_SPACING)})",
    )
    add(
        "--views",
        type=int,
        default=_ACQ.n_views,
        help=f"views over 360 deg, 2 to {MAX_VIEWS} (default {_ACQ.n_views})",
    )
    add(
        "--beam",
        default=_ACQ.beam,
        help=f"tube spectrum ({', '.join(spectrum_names())}) or a monochromatic "
        f"energy in keV (default {_ACQ.beam})",
    )
    add(
        "--i0",
        type=float,
        default=_ACQ.i0,
        help=f"unattenuated photons per detector pixel and view (default {_ACQ.i0:g})",
    )
    add(
        "--noise",
        choices=NOISE_MODELS,
        default=_ACQ.noise,
        help=f"detector noise (default {_ACQ.noise})",
    )
    add(
        "--filter",
        choices=FILTERS,
        default=_ACQ.filter,
        help=f"FDK ramp window (default {_ACQ.filter})",
    )
    add(
        "--max-memory",
        type=float,
        default=None,
        metavar="GIB",
        help="peak memory the scan may use, GiB (default: what the machine has "
        "available when it starts)",
    )
    add("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run)
    return p


def _beam(text: str):
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


def _check(args) -> None:
    if not 0.0 <= args.phase < 1.0:
        raise ValueError(f"--phase must lie in [0, 1); got {args.phase}")
    if min(args.shape) < 1:
        raise ValueError(f"--shape must be positive; got {args.shape}")
    if not 2 <= args.views <= MAX_VIEWS:
        raise ValueError(f"--views must lie in [2, {MAX_VIEWS}]; got {args.views}")
    if not args.i0 > 0:
        raise ValueError(f"--i0 must be > 0 photons; got {args.i0}")
    if args.max_memory is not None and not args.max_memory > 0:
        raise ValueError(f"--max-memory must be > 0 GiB; got {args.max_memory}")
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


def _plan(args, acq, shape, spacing):
    """Scan geometry and memory plan; errors name the flags."""
    from jaxsim.ct import format_bytes, plan_ct
    from jaxsim.kernels import VolumeGeometry

    vol_geom = VolumeGeometry(shape, spacing)
    if not vol_geom.radius < float(acq.dso):
        raise ValueError(
            f"--shape {_fmt(shape)} and --spacing {_fmt(spacing)} give a grid of "
            f"radius {vol_geom.radius:.0f} mm, which must fit inside the source "
            f"circle ({float(acq.dso):g} mm)"
        )
    max_memory = None if args.max_memory is None else int(args.max_memory * GiB)
    geom, plan = plan_ct(vol_geom, acq, max_memory=max_memory, check=False)
    if not plan.fits:
        limit = "--max-memory" if max_memory is not None else "available now"
        raise ValueError(
            f"not enough memory: --shape {_fmt(shape)}, --spacing {_fmt(spacing)} "
            f"and --views {args.views} (detector {geom.n_v} x {geom.n_u}) need an "
            f"estimated {format_bytes(plan.peak_bytes)} at the peak, more than the "
            f"{format_bytes(plan.limit_bytes)} {limit}; reduce --shape or --views, "
            "coarsen --spacing, or raise --max-memory"
        )
    return geom, plan, max_memory


def _picture(path: Path, image, labels, projections, n_tissues, overwrite) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxsim.io import atomic_path

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
    with atomic_path(path, overwrite=overwrite, what="picture") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def run(args) -> int:
    _check(args)
    beam = _beam(args.beam)
    spacing = parse_spacing(args.spacing)
    shape = tuple(args.shape)
    acq = CTAcquisition(
        i0=args.i0, n_views=args.views, beam=beam, noise=args.noise, filter=args.filter
    )
    geom, plan, max_memory = _plan(args, acq, shape, spacing)
    import jax

    from jaxsim.ct import format_bytes, hu_statistics, simulate_ct
    from jaxsim.io import atomic_path, save_nifti, save_projections
    from jaxsim.phantoms import TISSUES, axial_geometry

    subject = _subject(args)
    geometry = axial_geometry(subject, spacing=spacing, shape=shape)
    limit = "unknown" if plan.limit_bytes is None else format_bytes(plan.limit_bytes)
    print(
        f"jaxsim ct: grid {shape} at {spacing} mm, {args.views} views on a "
        f"{geom.n_v} x {geom.n_u} detector, {beam}, i0 {args.i0:g}, {args.noise} "
        f"noise; estimated peak memory {format_bytes(plan.peak_bytes)} of {limit} "
        f"({plan.views_per_chunk} views and {plan.slices_per_slab} slices at a "
        "time): simulating...",
        flush=True,
    )
    start = time.perf_counter()
    result = simulate_ct(
        jax.random.key(args.seed),
        subject,
        geometry=geometry,
        cardiac_phase=args.phase,
        acquisition=acq,
        max_memory=max_memory,
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
    save_projections(
        args.out / "projections.h5",
        projections,
        result.geom,
        attrs=dict(
            mu_water_per_mm=float(result.mu_water), beam=str(beam), i0=float(args.i0)
        ),
        overwrite=args.force,
    )
    _picture(args.out / "ct.png", image, labels, projections, len(TISSUES), args.force)
    summary = dict(
        subject={
            f.name: np.asarray(getattr(subject, f.name)).tolist()
            for f in dataclasses.fields(subject)
        },
        options=dict(
            seed=args.seed,
            sex=args.sex,
            mean_subject=args.mean,
            cardiac_phase=args.phase,
            shape=list(shape),
            spacing_mm=list(spacing),
            views=args.views,
            beam=beam,
            i0=args.i0,
            noise=args.noise,
            filter=args.filter,
        ),
        hu_by_tissue=hu_statistics(image, labels),
        memory=dict(
            estimated_peak_bytes=plan.peak_bytes,
            limit_bytes=plan.limit_bytes,
            views_per_chunk=plan.views_per_chunk,
            slices_per_slab=plan.slices_per_slab,
            measured_peak_rss_bytes=_peak_rss(),
        ),
        seconds=seconds,
    )
    with atomic_path(
        args.out / "summary.json", overwrite=args.force, what="summary"
    ) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    print(
        f"wrote {', '.join(OUTPUTS)} to {args.out} ({seconds:.1f} s of simulation, "
        f"peak memory {format_bytes(_peak_rss())})",
        flush=True,
    )
    return 0
