"""``jaxsim twin``: fit a patient twin (subject, pose, deformation) to label maps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jaxsim._cli_common import parse_spacing

_H5 = (".h5", ".hdf5")
_NII = (".nii", ".nii.gz")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "twin",
        help="fit a patient twin of the phantom to a real label map",
        description=(
            "Fit the phantom to a real cardiac label map by gradient through the "
            "soft rasteriser: the heart's rigid pose relative to the stack "
            "(initialised from the labels' moments), the subject's LV/RV size "
            "parameters and a smooth volume-preserving residual deformation, at "
            "end-diastole and (with --es) end-systole together. Writes "
            "report.json (Dice per structure, fitted parameters, the twin's pose), "
            "twin_ed.nii.gz (and twin_es.nii.gz) on the real grid, and twin.png "
            "(overlay, and a cine frame simulated from the twin) to OUT."
        ),
        epilog=(
            "example: jaxsim twin patient001_frame01.h5 --es patient001_frame02.h5 "
            "--labels RV=1,MYO=2,LV=3 --spacing 10 1.5 1.5 --out twin001"
        ),
    )
    p.add_argument(
        "labels",
        type=Path,
        metavar="LABELS",
        help="ED label map: NIfTI, or HDF5 file with a 'label' dataset",
    )
    p.add_argument(
        "--es",
        type=Path,
        default=None,
        metavar="LABELS",
        help="ES label map on the same grid (fitted jointly)",
    )
    p.add_argument(
        "--labels",
        dest="label_spec",
        default="RV=1,MYO=2,LV=3",
        metavar="SPEC",
        help="file values of RV blood, LV myocardium and LV blood (default "
        "RV=1,MYO=2,LV=3, the ACDC convention); other values are background",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder"
    )
    p.add_argument(
        "--spacing",
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel spacing SZ SY SX (or SZ,SY,SX) in mm for HDF5 files, which "
        "store none (default 10 1.5 1.5); NIfTI files use their header",
    )
    p.add_argument(
        "--steps",
        nargs=2,
        type=int,
        default=(40, 160),
        metavar=("POSE", "ALL"),
        help="Adam steps: pose and sizes first, then with the deformation "
        "(default 40 160)",
    )
    p.add_argument(
        "--grid",
        nargs=3,
        type=int,
        default=(6, 6, 7),
        metavar="N",
        help="deformation control points across, across and along the heart "
        "(default 6 6 7)",
    )
    p.add_argument(
        "--max-displacement",
        type=float,
        default=30.0,
        metavar="MM",
        help="bound on the deformation in mm (default 30)",
    )
    p.add_argument(
        "--no-cine", action="store_true", help="skip the twin's cine in twin.png"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run)
    return p


def _read(path: Path, spacing):
    """``(labels, image or None, ImageGeometry)`` of one label file."""
    from jaxsim.geometry import ImageGeometry
    from jaxsim.io import load_nifti, read_image_label_h5

    name = path.name.lower()
    if name.endswith(_H5):
        image, labels = read_image_label_h5(path)
        spacing = (10.0, 1.5, 1.5) if spacing is None else spacing
        geom = ImageGeometry.axis_aligned(shape=labels.shape, spacing=spacing)
        return labels, image, geom
    if name.endswith(_NII):
        labels, geom = load_nifti(path)
        return np.asarray(labels), None, geom
    raise ValueError(f"LABELS must end with {', '.join(_H5 + _NII)}; got {path.name!r}")


def _to_acdc(labels, classes, flag):
    """File values -> ACDC values (other values: background)."""
    from jaxsim.labels import ACDC

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"{flag} must be a 3D label map; got shape {labels.shape}")
    if not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"{flag} must hold integer labels")
    out = np.zeros(labels.shape, np.uint8)
    acdc = {names[0]: v for v, names in enumerate(ACDC.tissues, start=1)}
    for tissue, value in classes.items():
        if tissue not in acdc:
            raise ValueError(
                f"--labels: {tissue!r} is not an ACDC structure; use RV, MYO and LV"
            )
        out[labels == value] = acdc[tissue]
    return out


def _cine_slice(result, k):
    """ED cine magnitude ``(ny, nx)`` of slice ``k`` simulated from the twin."""
    import jax
    import jax.numpy as jnp

    from jaxsim.geometry import ImageGeometry
    from jaxsim.mr import simulate_cine

    a = result.geometry.affine
    one = ImageGeometry(
        affine=a.at[:3, 3].set(a[:3, 3] + k * a[:3, 2]),
        shape=(1, *result.geometry.shape[1:]),
    )
    cine = simulate_cine(jax.random.key(0), result.subject, one)
    return np.asarray(jnp.abs(cine.image[0, 0]))


def _report(args, result, classes, spacing):
    from jaxsim.phantoms import FIELD_SPECS

    s = result.subject
    d = s.deformation
    fields = {f: np.asarray(getattr(s, f)).tolist() for f in FIELD_SPECS}
    return {
        "dice": result.dice["ED"],
        "dice_by_phase": result.dice,
        "initial_dice_by_phase": result.initial_dice,
        "parameters": {
            "subject": fields,
            "es_phase": result.es_phase,
            "twin_affine": np.asarray(result.geometry.affine).tolist(),
            "grid_shape": list(result.geometry.shape),
            "deformation": {
                "control": np.asarray(d.control).tolist(),
                "lower_mm": list(d.lower),
                "upper_mm": list(d.upper),
                "max_displacement_mm": d.max_displacement,
                "steps": d.steps,
                "resolution": d.resolution,
            },
        },
        "input": {
            "labels": str(args.labels),
            "es": None if args.es is None else str(args.es),
            "classes": classes,
            "spacing_mm": list(spacing),
        },
        "settings": {
            "steps": list(args.steps),
            "grid": list(args.grid),
            "max_displacement_mm": args.max_displacement,
        },
        "seconds": result.seconds,
        "final_loss": float(result.losses[-1]) if result.losses.size else None,
    }


def run(args: argparse.Namespace) -> int:
    from jaxsim.fit import fit_twin, parse_label_spec, plot_twin
    from jaxsim.io import atomic_path, save_nifti

    classes = parse_label_spec(args.label_spec)
    if min(args.steps) < 0:
        raise ValueError(f"--steps must be >= 0; got {list(args.steps)}")
    if not all(1 <= n <= 16 for n in args.grid):
        raise ValueError(f"--grid takes three ints in [1, 16]; got {list(args.grid)}")
    if not (0 < args.max_displacement <= 100):
        raise ValueError(
            f"--max-displacement must lie in (0, 100] mm; got {args.max_displacement}"
        )
    outputs = ["report.json", "twin.png", "twin_ed.nii.gz"]
    outputs += [] if args.es is None else ["twin_es.nii.gz"]
    existing = [f for f in outputs if (args.out / f).exists()]
    if existing and not args.force:
        raise FileExistsError(
            f"--out {args.out} already holds {', '.join(existing)}; pass --force "
            "to overwrite"
        )
    spacing = None if args.spacing is None else parse_spacing(args.spacing)
    raw_ed, image, geom = _read(args.labels, spacing)
    ed = _to_acdc(raw_ed, classes, "LABELS")
    es, image_es = None, None
    if args.es is not None:
        raw_es, image_es, geom_es = _read(args.es, spacing)
        es = _to_acdc(raw_es, classes, "--es")
        if es.shape != ed.shape:
            raise ValueError(
                f"--es labels have shape {es.shape}; LABELS have {ed.shape}"
            )
        gap = np.max(np.abs(np.asarray(geom.affine) - np.asarray(geom_es.affine)))
        if gap > 1e-3:
            raise ValueError(f"--es is not on LABELS' grid (affines differ by {gap})")
    result = fit_twin(
        ed,
        geom,
        labels_es=es,
        steps=tuple(args.steps),
        grid_shape=tuple(args.grid),
        max_displacement=args.max_displacement,
        progress=not args.quiet,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    real = {"ED": ed} if es is None else {"ED": ed, "ES": es}
    z = np.nonzero(np.any(ed == 3, axis=(1, 2)))[0]
    cine, k = None, int(z[len(z) // 2])  # a mid-ventricular slice
    if not args.no_cine:
        cine = _cine_slice(result, k)
    save_nifti(
        args.out / "twin_ed.nii.gz", result.labels["ED"], geom, overwrite=args.force
    )
    if es is not None:
        save_nifti(
            args.out / "twin_es.nii.gz", result.labels["ES"], geom, overwrite=args.force
        )
    with atomic_path(args.out / "twin.png", overwrite=args.force) as tmp:
        images = {"ED": image, "ES": image_es}
        plot_twin(result, real, tmp, images=images, cine=cine, cine_slice=k)
    report = _report(args, result, classes, geom.static_spacing())
    with atomic_path(args.out / "report.json", overwrite=args.force) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'phase':<6}{'LV':>7}{'MYO':>7}{'RV':>7}")
    for phase, d in result.dice.items():
        print(f"{phase:<6}{d['LV']:>7.3f}{d['MYO']:>7.3f}{d['RV']:>7.3f}")
    print(f"fit {result.seconds:.0f} s; wrote {args.out / 'report.json'}")
    return 0
