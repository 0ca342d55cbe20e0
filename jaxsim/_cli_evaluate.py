"""``jaxsim evaluate``: Dice, HD95 and ASSD of predicted label maps per case."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Compare predicted label maps with ground truth, per structure and case: Dice,
the 95th-percentile Hausdorff distance and the average symmetric surface distance
(mm, from the voxel spacing of the ground truth), with the mean and standard
deviation over cases. PRED and GT are label files (NIfTI; HDF5 with a 'label'
dataset) or folders. In folders, a prediction NAME.nii.gz or NAME_seg.nii.gz is
matched with the ground truth case NAME (ACDC folders, NIfTI pairs, HDF5 files)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="Dice, HD95 and ASSD of predictions against ground truth",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pred", type=Path, metavar="PRED")
    p.add_argument("gt", type=Path, metavar="GT")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.csv")
    p.add_argument(
        "--labels",
        default="RV=1,MYO=2,LV=3",
        metavar="SPEC",
        help="structure=value pairs scored (default RV=1,MYO=2,LV=3)",
    )
    p.add_argument(
        "--spacing",
        nargs="+",
        default=None,
        metavar="MM",
        help="voxel size SZ SY SX of ground truth files that store none (HDF5)",
    )
    p.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="picture: per case (up to 8) a mid-ventricular slice, its prediction "
        "and the ground truth (needs the images beside the ground truth)",
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE.csv (and png)")
    p.set_defaults(func=run)
    return p


def _structures(spec: str) -> dict[str, int]:
    out = {}
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        try:
            v = int(value)
        except ValueError:
            v = -1
        if not sep or not name.strip() or not 1 <= v <= 255:
            raise ValueError(
                f"--labels must look like RV=1,MYO=2,LV=3 with values in [1, 255]; "
                f"got {item!r}"
            )
        out[name.strip()] = v
    return out


def _label_file(path: Path, spacing):
    import numpy as np

    from jaxsim.geometry import ImageGeometry
    from jaxsim.io import load_nifti, read_image_label_h5

    name = path.name
    if name.endswith((".h5", ".hdf5")):
        _, labels = read_image_label_h5(path)
        if spacing is None:
            raise ValueError(f"{path} stores no voxel size; pass --spacing SZ SY SX")
        return labels, ImageGeometry.axis_aligned(shape=labels.shape, spacing=spacing)
    if name.endswith((".nii", ".nii.gz")):
        labels, geometry = load_nifti(path)
        if not np.all(labels == np.round(labels)):
            raise ValueError(f"{path} holds non-integer values: not a label map")
        return labels.astype(np.int32), geometry
    raise ValueError(f"{path} must be a .nii, .nii.gz, .h5 or .hdf5 label file")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".h5", ".hdf5"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _pairs(pred: Path, gt: Path):
    """``[(name, pred file, gt file or CaseFiles)]``."""
    from jaxsim.io import find_cases

    for p, flag in ((pred, "PRED"), (gt, "GT")):
        if not p.exists():
            raise FileNotFoundError(f"{flag} {p} does not exist")
    if pred.is_file():
        if not gt.is_file():
            raise ValueError("PRED is a file: GT must be a file too")
        return [(_stem(gt), pred, gt)]
    preds = {
        _stem(f): f
        for f in sorted(pred.iterdir())
        if f.name.endswith((".nii", ".nii.gz"))
    }
    if not preds:
        raise ValueError(f"PRED folder {pred} holds no NIfTI label files")
    if gt.is_file():
        raise ValueError("PRED is a folder: GT must be a folder too")
    cases = {c.name: c for c in find_cases(gt)}
    out = []
    for name, case in cases.items():
        match = next(
            (preds[s] for s in (name, f"{name}_seg", f"{name}_pred") if s in preds),
            None,
        )
        if match is not None:
            out.append((name, match, case))
    if not out:
        raise ValueError(
            f"no prediction in {pred} matches a ground-truth case in {gt} "
            f"(e.g. {sorted(cases)[:3]} as NAME.nii.gz or NAME_seg.nii.gz)"
        )
    return out


def run(args) -> int:
    import csv

    import numpy as np

    from jaxsim._cli_common import parse_spacing
    from jaxsim.io import CaseFiles, atomic_path, load_case
    from jaxsim.metrics import SCORE_FIELDS, mean_sd, score_structures

    structures = _structures(args.labels)
    spacing = None if args.spacing is None else parse_spacing(args.spacing)
    if args.out.exists() and not args.force:
        raise FileExistsError(f"--out {args.out} exists; pass --force")
    if args.png is not None and args.png.exists() and not args.force:
        raise FileExistsError(f"--png {args.png} exists; pass --force")
    rows, shown = [], []
    for name, pred_path, truth in _pairs(args.pred, args.gt):
        image = None
        if isinstance(truth, CaseFiles):
            case = load_case(truth, spacing=spacing)
            gt, geometry = case.labels.astype(np.int32), case.geometry
            image = case.image
        else:
            gt, geometry = _label_file(truth, spacing)
        pred, pgeom = _label_file(pred_path, spacing)
        if pred.shape != gt.shape:
            raise ValueError(
                f"{name}: prediction shape {pred.shape} differs from ground truth "
                f"{gt.shape}"
            )
        vox = tuple(float(s) for s in np.asarray(geometry.spacing))
        pvox = tuple(float(s) for s in np.asarray(pgeom.spacing))
        if not np.allclose(pvox, vox, rtol=1e-3, atol=1e-4):
            raise ValueError(
                f"{name}: prediction voxel size {pvox} mm differs from the ground "
                f"truth's {vox} mm (resample the prediction to the truth's grid)"
            )
        truth_file = (
            truth.labels or truth.image if isinstance(truth, CaseFiles) else truth
        )
        stores_affine = str(truth_file).endswith((".nii", ".nii.gz"))
        # HDF5 truth stores no affine: its voxel size is all there is to compare
        if stores_affine and not np.allclose(
            np.asarray(pgeom.affine), np.asarray(geometry.affine), atol=1e-2
        ):
            raise ValueError(
                f"{name}: prediction and ground truth lie on different grids "
                "(their affines differ)"
            )
        if image is not None and len(shown) < 8:
            shown.append((name, image, pred, gt))
        scores = score_structures(pred, gt, spacing=vox, structures=structures)
        for structure, score in scores.items():
            rows.append({"case": name, "structure": structure, **score})
    summary = []
    for structure in structures:
        sel = [r for r in rows if r["structure"] == structure]
        stats = {k: mean_sd(r[k] for r in sel) for k in SCORE_FIELDS}
        for i, stat in enumerate(("mean", "sd")):
            summary.append(
                {
                    "case": stat,
                    "structure": structure,
                    **{k: stats[k][i] for k in SCORE_FIELDS},
                }
            )
    with atomic_path(args.out, overwrite=args.force, what="evaluation table") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=["case", "structure", "dice", "hd95_mm", "assd_mm"]
            )
            writer.writeheader()
            writer.writerows(rows + summary)
    print(f"{'structure':<10}{'Dice':>14}{'HD95 mm':>16}{'ASSD mm':>16}")
    for structure in structures:
        m = {r["case"]: r for r in summary if r["structure"] == structure}
        print(
            f"{structure:<10}"
            + "".join(
                f"{m['mean'][k]:>8.3f} ± {m['sd'][k]:<5.3f}"
                for k in ("dice", "hd95_mm", "assd_mm")
            )
        )
    missed = {
        st: sum(1 for r in rows if r["structure"] == st and r["hd95_mm"] == np.inf)
        for st in structures
    }
    if any(missed.values()):
        print(
            "HD95 and ASSD average the cases where both maps hold the structure; "
            "held by one only: "
            + ", ".join(f"{st} {n}" for st, n in missed.items() if n)
        )
    print(f"wrote {args.out} ({len(rows) // len(structures)} cases)")
    if args.png is not None:
        if not shown:
            raise ValueError("--png: the ground truth holds no images to show")
        _picture(args.png, shown, structures, rows, force=args.force)
        print(f"wrote {args.png}")
    return 0


def _picture(path, shown, structures, rows, *, force: bool) -> None:
    """Rows of (image, prediction outlines, ground-truth outlines) at the slice
    with the most labelled voxels of each case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxsim.io import atomic_path

    colors = ["tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple"]
    per_row = 1 if len(shown) == 1 else 2  # cases side by side
    n_rows = -(-len(shown) // per_row)
    fig, axes = plt.subplots(
        n_rows, 3 * per_row, figsize=(7.5 * per_row, 2.6 * n_rows), squeeze=False
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    cells = [axes[i // per_row, 3 * (i % per_row) :] for i in range(len(shown))]
    for row, (name, image, pred, gt) in zip(cells, shown, strict=True):
        k = int(np.argmax((gt > 0).sum(axis=(1, 2))))
        dice = {r["structure"]: r["dice"] for r in rows if r["case"] == name}
        for ax, labels, title in (
            (row[0], None, name),
            (row[1], pred, "prediction"),
            (row[2], gt, "ground truth"),
        ):
            ax.imshow(image[k], cmap="gray")
            ax.set_axis_off()
            if labels is not None:
                for value, color in zip(structures.values(), colors, strict=False):
                    if np.any(labels[k] == value):
                        ax.contour(
                            labels[k] == value, levels=[0.5], colors=color,
                            linewidths=0.8,
                        )  # fmt: skip
            if labels is pred:
                title = "prediction: Dice " + " ".join(
                    f"{s} {dice[s]:.2f}" for s in structures if s in dice
                )
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    with atomic_path(path, overwrite=force, what="evaluation picture") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
