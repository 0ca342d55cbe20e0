"""Segmentation metrics on label maps: overlap (Dice, IoU) and surface distances.

All take integer label arrays ``pred`` and ``target`` of one shape, ``(ny, nx)``
or ``(nz, ny, nx)``, and report per label: a dict keyed by label value, the
background (0) excluded. By default the labels are every non-zero value present in
either array; pass ``labels`` to fix them (a label absent from both arrays is then
reported with the empty-mask values below). Surface distances are in mm, from
``spacing`` given in the arrays' axis order.

Empty masks. Dice and IoU: both empty -> ``empty_score`` (1.0 by default: nothing
to find and nothing found); one empty -> 0. Hausdorff and average surface
distance: both empty -> 0.0; one empty -> ``inf`` (there is no surface to reach).
No metric returns NaN.

Surfaces and percentiles: see :func:`surface_distances` and
:func:`hausdorff_distance`, and ``docs/metrics.md`` for the comparison with MONAI
and DeepMind's surface-distance.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._checks import label_pair, label_values, percentile_value, spacing_tuple
from ._edt import squared_edt
from ._surfaces import boundary_voxels, corner_surfels

__all__ = [
    "SurfaceDistances",
    "dice_score",
    "iou",
    "surface_distances",
    "hausdorff_distance",
    "average_surface_distance",
]

CONVENTIONS = ("deepmind", "monai")


def _overlap(pred, target, labels, empty_score, kind):
    pred, target = label_pair(pred, target)
    out = {}
    for v in label_values(labels, pred, target):
        a, b = pred == v, target == v
        inter = int(np.count_nonzero(a & b))
        na, nb = int(np.count_nonzero(a)), int(np.count_nonzero(b))
        if na + nb == 0:
            out[v] = float(empty_score)
        elif kind == "dice":
            out[v] = 2.0 * inter / (na + nb)
        else:
            out[v] = inter / (na + nb - inter)
    return out


def dice_score(pred, target, *, labels=None, empty_score: float = 1.0) -> dict:
    """Dice coefficient ``2 |P ∩ T| / (|P| + |T|)`` per label.

    Args:
        pred, target: integer label arrays of one shape, ``(ny, nx)`` or
            ``(nz, ny, nx)`` (booleans count as labels 0/1).
        labels: label values to report (ints >= 1); default every non-zero value
            present in either array.
        empty_score: the value when a label is absent from both arrays.

    Returns:
        ``{label: dice}`` with values in [0, 1].

    Example:
        >>> dice_score(np.array([[1, 1, 0, 2]]), np.array([[1, 0, 0, 2]]))
        {1: 0.6666666666666666, 2: 1.0}
    """
    return _overlap(pred, target, labels, empty_score, "dice")


def iou(pred, target, *, labels=None, empty_score: float = 1.0) -> dict:
    """Intersection over union (Jaccard) ``|P ∩ T| / |P ∪ T|`` per label.

    Arguments and empty-mask rule as :func:`dice_score`; ``iou = d / (2 - d)``
    for the Dice ``d`` of the same masks.
    """
    return _overlap(pred, target, labels, empty_score, "iou")


@dataclasses.dataclass(frozen=True)
class SurfaceDistances:
    """Distances from each surface element of one mask to the other's surface.

    Attributes:
        pred_to_target: ``(n_pred,)`` distances in mm from the prediction's
            surface elements to the target's surface (``inf`` if the target is
            empty).
        pred_weights: ``(n_pred,)`` weight of each element: surfel area in mm² (3D)
            or length in mm (2D) for ``"deepmind"``, 1 for ``"monai"``.
        target_to_pred, target_weights: the same from the target's surface.
        convention: ``"deepmind"`` or ``"monai"``.
    """

    pred_to_target: np.ndarray
    pred_weights: np.ndarray
    target_to_pred: np.ndarray
    target_weights: np.ndarray
    convention: str


def _surface(mask, spacing, convention):
    if convention == "deepmind":
        return corner_surfels(mask, spacing)
    surface = boundary_voxels(mask)
    return surface, surface.astype(np.float64)


def _binary_distances(a, b, spacing, convention) -> SurfaceDistances:
    union = a | b
    if not union.any():
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty, convention)
    # Crop to the union's bounding box plus one background voxel on every side:
    # every surface element of both masks lies inside, so distances are exact.
    box = tuple(
        slice(idx.min(), idx.max() + 1)
        for idx in (
            np.flatnonzero(union.any(axis=tuple(set(range(a.ndim)) - {k})))
            for k in range(a.ndim)
        )
    )
    a, b = np.pad(a[box], 1), np.pad(b[box], 1)
    sa, wa = _surface(a, spacing, convention)
    sb, wb = _surface(b, spacing, convention)
    d_ab = (
        np.sqrt(squared_edt(sb, spacing)[sa]) if sb.any() else np.full(sa.sum(), np.inf)
    )
    d_ba = (
        np.sqrt(squared_edt(sa, spacing)[sb]) if sa.any() else np.full(sb.sum(), np.inf)
    )
    return SurfaceDistances(d_ab, wa[sa], d_ba, wb[sb], convention)


def _check_convention(convention) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")


def surface_distances(
    pred, target, *, spacing, labels=None, convention: str = "deepmind"
) -> dict:
    """Surface-to-surface distances per label, both directions, with weights.

    Two definitions of the surface (``docs/metrics.md`` compares them):

    * ``"deepmind"`` (default; google-deepmind/surface-distance): surface elements
      sit on the grid of voxel corners, where the ``2**ndim`` voxels around a corner
      are mixed; each is weighted by the area (mm², 3D) or length (mm, 2D) of the
      marching-cubes/squares surface in its cell. Distances run between corner
      points.
    * ``"monai"`` (MONAI's ``compute_hausdorff_distance``): surface elements are
      the mask voxels with a face neighbour outside, each weighted 1; distances run
      between voxel centres.

    Either way a distance is the Euclidean distance (mm) to the nearest surface
    element of the other mask, exact (distance transform with ``spacing``).

    Args:
        pred, target: integer label arrays of one shape, 2D or 3D.
        spacing: voxel size in mm per array axis (``(sz, sy, sx)`` in 3D).
        labels: as :func:`dice_score`.
        convention: ``"deepmind"`` or ``"monai"``.

    Returns:
        ``{label: SurfaceDistances}``.
    """
    _check_convention(convention)
    pred, target = label_pair(pred, target)
    spacing = spacing_tuple(spacing, pred.ndim)
    return {
        v: _binary_distances(pred == v, target == v, spacing, convention)
        for v in label_values(labels, pred, target)
    }


def _weighted_percentile(d: np.ndarray, w: np.ndarray, p: float) -> float:
    """Smallest distance whose cumulative weight fraction reaches ``p`` percent."""
    # Sorted by (distance, weight) and normalised by the sum of the sorted weights,
    # like surface-distance, so that a percentile falling exactly on a cumulative
    # boundary rounds the same way.
    order = np.lexsort((w, d))
    w = w[order]
    idx = int(np.searchsorted(np.cumsum(w) / np.sum(w), p / 100.0))
    return float(d[order][min(idx, d.size - 1)])


def _directed(d, w, p, convention) -> float:
    if convention == "deepmind":
        return _weighted_percentile(d, w, p)
    return float(np.percentile(d, p))


def hausdorff_distance(
    pred,
    target,
    *,
    spacing,
    percentile: float = 95.0,
    labels=None,
    convention: str = "deepmind",
) -> dict:
    """Percentile Hausdorff distance (HD95 by default) per label, in mm.

    The larger of the two directed distances, each the ``percentile``-th
    percentile of the distances from one surface to the other
    (:func:`surface_distances`). The percentile differs between the conventions:

    * ``"deepmind"``: weighted by surfel area; the smallest distance at which the
      cumulative area reaches ``percentile`` percent of the surface (no
      interpolation), as surface-distance's ``compute_robust_hausdorff``;
    * ``"monai"``: every boundary voxel counts once, linear interpolation between
      order statistics (``numpy.percentile``, ``torch.quantile``), as MONAI.

    ``percentile=100`` gives the Hausdorff distance (both conventions then differ
    only by their surfaces). Empty masks: both empty -> 0.0, one empty -> inf
    (DeepMind: inf in both cases; MONAI: NaN).

    Args:
        pred, target, spacing, labels, convention: as :func:`surface_distances`.
        percentile: in [0, 100].

    Returns:
        ``{label: distance in mm}``.

    Example:
        >>> a = np.zeros((5, 5), np.uint8); a[1:4, 1:4] = 1
        >>> b = np.roll(a, 1, axis=1)
        >>> hausdorff_distance(a, b, spacing=(1.0, 2.0))
        {1: 2.0}
    """
    p = percentile_value(percentile)
    out = {}
    for v, s in surface_distances(
        pred, target, spacing=spacing, labels=labels, convention=convention
    ).items():
        if s.pred_to_target.size == 0 and s.target_to_pred.size == 0:
            out[v] = 0.0
        elif s.pred_to_target.size == 0 or s.target_to_pred.size == 0:
            out[v] = float("inf")
        else:
            out[v] = max(
                _directed(s.pred_to_target, s.pred_weights, p, convention),
                _directed(s.target_to_pred, s.target_weights, p, convention),
            )
    return out


def average_surface_distance(
    pred, target, *, spacing, labels=None, convention: str = "deepmind"
) -> dict:
    """Average symmetric surface distance (ASSD) per label, in mm.

    The weighted mean of the distances of both directions pooled::

        (sum_P w d(P->T) + sum_T w d(T->P)) / (sum_P w + sum_T w)

    with surfel areas as weights (``"deepmind"``) or unit weights (``"monai"``,
    which equals MONAI's ``compute_average_surface_distance(symmetric=True)``).
    surface-distance's ``compute_average_surface_distance`` returns the two
    directed means instead; :func:`surface_distances` gives them. Empty masks:
    both empty -> 0.0, one empty -> inf.

    Args:
        pred, target, spacing, labels, convention: as :func:`surface_distances`.

    Returns:
        ``{label: distance in mm}``.
    """
    out = {}
    for v, s in surface_distances(
        pred, target, spacing=spacing, labels=labels, convention=convention
    ).items():
        if s.pred_to_target.size == 0 and s.target_to_pred.size == 0:
            out[v] = 0.0
        elif s.pred_to_target.size == 0 or s.target_to_pred.size == 0:
            out[v] = float("inf")
        else:
            total = np.sum(s.pred_to_target * s.pred_weights) + np.sum(
                s.target_to_pred * s.target_weights
            )
            out[v] = float(total / (s.pred_weights.sum() + s.target_weights.sum()))
    return out
