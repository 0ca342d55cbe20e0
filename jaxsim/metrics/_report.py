"""Per-structure scores of a label map, and their mean and spread over cases."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ._segmentation import average_surface_distance, dice_score, hausdorff_distance

#: The fields :func:`score_structures` reports per structure.
SCORE_FIELDS = ("dice", "hd95_mm", "assd_mm")


def score_structures(
    pred, target, *, spacing, structures: Mapping[str, int]
) -> dict[str, dict[str, float]]:
    """Dice, HD95 and ASSD (mm, DeepMind's surface convention) per structure.

    Args:
        pred, target: integer label maps of one shape.
        spacing: voxel size per axis, mm.
        structures: ``{name: label value}``.

    Returns:
        ``{name: {"dice", "hd95_mm", "assd_mm"}}``; distances are ``inf`` when the
        structure is missing from one map only, Dice is 1 and distances 0 when it
        is missing from both.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must share a shape; got {pred.shape} and {target.shape}"
        )
    values = list(structures.values())
    dice = dice_score(pred, target, labels=values)
    hd = hausdorff_distance(pred, target, spacing=spacing, percentile=95.0)
    asd = average_surface_distance(pred, target, spacing=spacing)
    return {
        name: {
            "dice": float(dice.get(v, np.nan)),
            "hd95_mm": float(hd.get(v, np.nan)),
            "assd_mm": float(asd.get(v, np.nan)),
        }
        for name, v in structures.items()
    }


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of the finite values; NaN for
    none."""
    v = np.asarray(list(values), float)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())
