"""``jaxsim tag``: turn real cine images into SPAMM-tagged-looking images."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

DESCRIPTION = """\
Apply the physics-driven cine-to-tagged transform (jaxsim.mr.cine_to_tagged) to
cine magnitude images: a power-law contrast change (square root by default, as in
seed 003) times the longitudinal magnetization of Bloch-simulated 1-3-3-1 SPAMM
trains, faded to each frame's time by T1 recovery and the spoiled readout.

Inputs are NIfTI volumes (3D z,y,x or 4D t,z,y,x; the pixel size comes from the
affine, which the output keeps) or HDF5 files with 'image' and 'label' datasets
(the ACDC layout; the file stores no spacing, so --spacing is required). The output
is NIfTI. With one input, OUT is the output file; with several, OUT is a folder
that receives NAME_tagged.nii.gz for each input (and NAME_label.nii.gz with
--labels). Labels are copied unchanged: the transform does not move anatomy."""

EPILOG = """\
examples:
  jaxsim tag cine.nii.gz tagged.nii.gz --angle 45
  jaxsim tag ../shared/data/acdc/patient001_frame01.h5 p001.nii.gz --spacing 10 1.5 1.5
  jaxsim tag data/*.h5 out/ --spacing 1.5 --tag-spacing-px 5 --flip-total 70 --labels"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tag",
        help="turn cine images (NIfTI or ACDC HDF5) into SPAMM-tagged images",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="IN",
        help="input .nii/.nii.gz or .h5 file(s)",
    )
    p.add_argument(
        "out",
        type=Path,
        metavar="OUT",
        help="output .nii/.nii.gz (one input) or folder (several)",
    )
    p.add_argument(
        "--spacing",
        nargs="+",
        metavar="MM",
        help="voxel size in mm for HDF5 inputs: one value (in-plane), two (y x) or "
        "three (z y x); slices default to 10 mm; overrides nothing for NIfTI",
    )
    tags = p.add_mutually_exclusive_group()
    tags.add_argument(
        "--tag-spacing", type=float, metavar="MM", help="tag period in mm (default 7)"
    )
    tags.add_argument(
        "--tag-spacing-px",
        type=float,
        metavar="PX",
        help="tag period in pixels (seed 003: 5)",
    )
    p.add_argument(
        "--flip-total",
        type=float,
        default=70.0,
        metavar="DEG",
        help="total flip of each tagging train, degrees (default 70)",
    )
    p.add_argument(
        "--angle",
        type=float,
        default=0.0,
        metavar="DEG",
        help="in-plane tag angle in degrees (default 0)",
    )
    p.add_argument(
        "--lines", action="store_true", help="line tags (one train) instead of a grid"
    )
    p.add_argument(
        "--frame-time",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds from tagging to the (first) frame (default 0)",
    )
    p.add_argument(
        "--frame-interval",
        type=float,
        default=0.03,
        metavar="S",
        help="seconds between frames of a 4D input (default 0.03)",
    )
    p.add_argument(
        "--t1",
        type=float,
        default=1.0,
        metavar="S",
        help="T1 with which tags fade, seconds (default 1.0)",
    )
    p.add_argument(
        "--readout-flip",
        type=float,
        default=10.0,
        metavar="DEG",
        help="spoiled readout flip in degrees, 0 for none (default 10)",
    )
    p.add_argument(
        "--tr",
        type=float,
        default=4.5,
        metavar="MS",
        help="readout repetition time in ms (default 4.5)",
    )
    p.add_argument(
        "--contrast-exponent",
        type=float,
        default=0.5,
        metavar="G",
        help="power applied to the normalised image (default 0.5)",
    )
    p.add_argument(
        "--labels",
        action="store_true",
        help="also write the HDF5 labels as NAME_label.nii.gz",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run)
    return p


def _hdf5_spacing(spacing):
    from jaxsim._cli_common import spacing_values

    if spacing is None:
        raise ValueError("HDF5 inputs store no voxel size; pass --spacing (mm)")
    spacing = spacing_values(spacing)
    if len(spacing) == 1:
        return (10.0, spacing[0], spacing[0])
    if len(spacing) == 2:
        return (10.0, *spacing)
    if len(spacing) == 3:
        return tuple(spacing)
    raise ValueError(f"--spacing takes 1 to 3 values (mm); got {len(spacing)}")


def _outputs(args) -> list[tuple[Path, Path, Path | None]]:
    """``(input, image output, label output or None)`` per input."""
    many = len(args.inputs) > 1 or (args.out.exists() and args.out.is_dir())
    rows = []
    for path in args.inputs:
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist")
        is_h5 = path.suffix in (".h5", ".hdf5")
        if not is_h5 and not path.name.endswith((".nii", ".nii.gz")):
            raise ValueError(f"input {path} must be .nii, .nii.gz, .h5 or .hdf5")
        stem = path.name.split(".")[0]
        if many:
            image = args.out / f"{stem}_tagged.nii.gz"
            label = args.out / f"{stem}_label.nii.gz"
        else:
            if not args.out.name.endswith((".nii", ".nii.gz")):
                raise ValueError(f"OUT {args.out} must end with .nii or .nii.gz")
            image = args.out
            label = args.out.with_name(stem + "_label.nii.gz")
        rows.append((path, image, label if (args.labels and is_h5) else None))
    targets: dict[Path, Path] = {}
    for path, image, label in rows:
        for target in (image, label):
            if target is None:
                continue
            if target in targets:
                raise ValueError(
                    f"inputs {targets[target]} and {path} would both write {target}; "
                    "give them distinct file names or run them separately"
                )
            targets[target] = path
    if many:
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(
                f"OUT {args.out} is a file; with several inputs OUT must be a folder"
            )
        args.out.mkdir(parents=True, exist_ok=True)
    if not args.force:
        existing = [str(f) for _, i, lab in rows for f in (i, lab) if f and f.exists()]
        if existing:
            raise FileExistsError(
                f"output(s) {', '.join(existing)} exist; pass --force"
            )
    return rows


def _check(args) -> None:
    for name, value, low, high in [
        ("--flip-total", args.flip_total, 0.0, 360.0),
        ("--readout-flip", args.readout_flip, 0.0, 89.999),
    ]:
        if not low <= value <= high:
            raise ValueError(f"{name} must lie in [{low:g}, {high:g}] deg; got {value}")
    for name, value in [
        ("--t1", args.t1),
        ("--tr", args.tr),
        ("--contrast-exponent", args.contrast_exponent),
    ]:
        if not value > 0:
            raise ValueError(f"{name} must be > 0; got {value}")
    if not args.frame_time >= 0 or not args.frame_interval >= 0:
        raise ValueError("--frame-time and --frame-interval must be >= 0 s")
    for name in ("tag_spacing", "tag_spacing_px"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be > 0; got {value}")


def _load(path: Path, args):
    from jaxsim.geometry import ImageGeometry
    from jaxsim.io import load_nifti, read_image_label_h5

    if path.suffix in (".h5", ".hdf5"):
        image, label = read_image_label_h5(path)
        geometry = ImageGeometry.axis_aligned(
            shape=image.shape, spacing=_hdf5_spacing(args.spacing)
        )
        return image, label, geometry
    image, geometry = load_nifti(path)
    return image, None, geometry


def _transform(image, geometry, args):
    from jaxsim.mr import cine_to_tagged

    sy, sx = (float(s) for s in np.asarray(geometry.spacing)[1:])
    spacing = args.tag_spacing
    if args.tag_spacing_px is not None:
        spacing = args.tag_spacing_px * 0.5 * (sy + sx)
    times = args.frame_time
    if image.ndim == 4:
        times = args.frame_time + args.frame_interval * np.arange(image.shape[0])
        times = times[:, None]
    out = cine_to_tagged(
        np.asarray(image, np.float32),
        pixel_spacing=(sy, sx),
        tag_spacing=7.0 if spacing is None else spacing,
        flip_total=math.radians(args.flip_total),
        angle=math.radians(args.angle),
        frame_times=times,
        grid=not args.lines,
        t1=args.t1,
        readout_flip=math.radians(args.readout_flip),
        tr=args.tr * 1e-3,
        contrast_exponent=args.contrast_exponent,
    )
    return np.asarray(out, np.float32)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxsim.io import save_nifti

    _check(args)
    rows = _outputs(args)
    for path, out, label_out in tqdm(
        rows, desc="tag", unit="file", disable=len(rows) < 2
    ):
        image, label, geometry = _load(path, args)
        tagged = _transform(image, geometry, args)
        save_nifti(out, tagged, geometry, overwrite=args.force)
        if label_out is not None:
            save_nifti(label_out, label, geometry, overwrite=args.force)
        tqdm.write(f"wrote {out}" + (f" and {label_out}" if label_out else ""))
    return 0
