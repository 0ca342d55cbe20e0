"""``jaxsim fit``: fit simulator parameters to a real image's class histograms."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxsim._cli_common import parse_spacing
from jaxsim._cli_sequence import add_bssfp_arguments, bssfp_from_args

OUTPUTS = ("report.json", "histograms.png")
_H5 = (".h5", ".hdf5")
_NII = (".nii", ".nii.gz")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fit",
        help="fit tissue/acquisition parameters to a real image's histograms",
        description=(
            "Render a bSSFP simulation on the real label map and fit per-class "
            "PD/T1/T2, receiver scale, noise sigma, a smooth bias field and the "
            "partial-volume width by gradient (MAP with literature priors, several "
            "restarts) so that each class's simulated intensity distribution "
            "matches the real one. Writes report.json (KS/chi2/KL per class before "
            "and after, fitted parameters with uncertainties) and histograms.png "
            "to OUT."
        ),
        epilog=(
            "example: jaxsim fit patient001_frame01.h5 --labels RV=1,MYO=2,LV=3 "
            "--spacing 10 1.56 1.56 --out fit001"
        ),
    )
    p.add_argument(
        "image",
        type=Path,
        metavar="IMAGE",
        help="NIfTI image, or HDF5 file with 'image' and 'label' datasets",
    )
    p.add_argument(
        "labels",
        type=Path,
        nargs="?",
        metavar="LABELS",
        help="NIfTI label map on IMAGE's grid (required for a NIfTI IMAGE)",
    )
    p.add_argument(
        "--labels",
        dest="label_spec",
        default="RV=1,MYO=2,LV=3",
        metavar="SPEC",
        help="class=value pairs to fit; RV, MYO, LV or tissue names "
        "(default RV=1,MYO=2,LV=3, the ACDC convention)",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder"
    )
    p.add_argument(
        "--spacing",
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel spacing SZ SY SX (or SZ,SY,SX) in mm when the file stores none "
        "(HDF5); default 10 1.5 1.5 for HDF5, the NIfTI header otherwise",
    )
    add_bssfp_arguments(p, field_help="field in tesla for the tissue priors")
    p.add_argument(
        "--fit-flip",
        action="store_true",
        help="also fit the flip angle (10 percent prior)",
    )
    p.add_argument(
        "--restarts", type=int, default=2, help="optimiser restarts (default 2)"
    )
    p.add_argument(
        "--steps", type=int, default=200, help="Adam steps per restart (default 200)"
    )
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run)
    return p


def _read(args):
    from jaxsim.io import load_nifti, read_image_label_h5

    name = args.image.name.lower()
    if name.endswith(_H5):
        if args.labels is not None:
            raise ValueError(
                "LABELS must be omitted for an HDF5 IMAGE (it holds 'label')"
            )
        image, labels = read_image_label_h5(args.image)
        spacing = (10.0, 1.5, 1.5)
    elif name.endswith(_NII):
        if args.labels is None:
            raise ValueError("a NIfTI IMAGE needs a LABELS NIfTI file")
        image, geom = load_nifti(args.image)
        labels, lgeom = load_nifti(args.labels)
        if image.shape != labels.shape:
            raise ValueError(
                f"IMAGE shape {image.shape} and LABELS shape {labels.shape} differ"
            )
        gap = np.max(np.abs(np.asarray(geom.affine) - np.asarray(lgeom.affine)))
        if gap > 1e-3 * max(1.0, float(np.max(np.abs(np.asarray(geom.affine))))):
            raise ValueError(
                "LABELS is not on IMAGE's grid: their NIfTI affines differ by up to "
                f"{gap:.3g} mm"
            )
        spacing = tuple(float(s) for s in geom.spacing)
    else:
        raise ValueError(
            f"IMAGE must end with {', '.join(_H5 + _NII)}; got {args.image.name!r}"
        )
    if image.ndim != 3:
        raise ValueError(f"IMAGE must be a 3D volume; got shape {image.shape}")
    if args.spacing is not None:
        spacing = parse_spacing(args.spacing)
    return image, labels, spacing


def run(args: argparse.Namespace) -> int:
    import jax

    from jaxsim.fit import fit_histograms, parse_label_spec, plot_histograms
    from jaxsim.io import atomic_path
    from jaxsim.mr import BSSFPSequence

    classes = parse_label_spec(args.label_spec)
    tr, te, flip = bssfp_from_args(args, allow_zero_flip=False)
    for name in ("restarts", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1; got {getattr(args, name)}")
    existing = [args.out / f for f in OUTPUTS if (args.out / f).exists()]
    if existing and not args.force:
        raise FileExistsError(
            f"--out {args.out} already holds "
            f"{', '.join(f.name for f in existing)}; pass --force to overwrite"
        )
    image, labels, spacing = _read(args)
    sequence = BSSFPSequence(tr=tr, te=te, flip=flip)
    result = fit_histograms(
        image,
        labels,
        key=jax.random.key(args.seed),
        classes=classes,
        spacing=spacing,
        sequence=sequence,
        field=args.field,
        fit_flip=args.fit_flip,
        restarts=args.restarts,
        steps=args.steps,
        progress=not args.quiet,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "tissues": result.metrics,
        "parameters": result.parameters_dict(),
        "input": {
            "image": str(args.image),
            "labels": None if args.labels is None else str(args.labels),
            "classes": classes,
            "spacing_mm": list(spacing),
            "crop": [list(b) for b in result.data.crop],
        },
        "settings": {
            "field_t": args.field,
            "tr_s": tr,
            "te_s": te,
            "flip_rad": flip,
            "fit_flip": args.fit_flip,
            "restarts": args.restarts,
            "steps": args.steps,
            "seed": args.seed,
        },
        "seconds": result.seconds,
        "warnings": list(result.warnings),
    }
    with atomic_path(args.out / "histograms.png", overwrite=args.force) as tmp:
        plot_histograms(result, tmp)
    with atomic_path(args.out / "report.json", overwrite=args.force) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'class':<16}{'KS before':>10}{'KS after':>10}")
    for name, m in result.metrics.items():
        print(f"{name:<16}{m['ks_before']:>10.3f}{m['ks_after']:>10.3f}")
    for message in result.warnings:
        print(f"jaxsim fit: warning: {message}", file=sys.stderr)
    print(f"wrote {args.out / 'report.json'} and {args.out / 'histograms.png'}")
    return 0
