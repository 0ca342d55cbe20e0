"""Validation of the segmentation metrics' inputs (label maps, spacing, labels)."""

from __future__ import annotations

import numbers

import numpy as np


def label_array(name: str, values, *, ndims=(2, 3)) -> np.ndarray:
    """An integer (or boolean) label map of 2 or 3 axes, as a NumPy array."""
    arr = np.asarray(values)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} must be an integer label array (or boolean mask); got dtype "
            f"{arr.dtype}"
        )
    if arr.ndim not in ndims:
        allowed = " or ".join(str(n) for n in ndims)
        raise ValueError(
            f"{name} must have {allowed} axes ((ny, nx) or (nz, ny, nx)); got shape "
            f"{arr.shape}"
        )
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} labels must be >= 0; got minimum {arr.min()}")
    return arr


def label_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred = label_array("pred", pred)
    target = label_array("target", target)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape; got {pred.shape} and "
            f"{target.shape}"
        )
    return pred, target


def spacing_tuple(spacing, ndim: int) -> tuple[float, ...]:
    """``spacing`` as ``ndim`` finite floats > 0 (mm)."""
    if isinstance(spacing, numbers.Number) or spacing is None:
        raise TypeError(
            f"spacing must be a sequence of {ndim} voxel sizes in mm (array axis "
            f"order); got {spacing!r}"
        )
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim:
        raise ValueError(
            f"spacing must have one value per array axis ({ndim}); got {len(values)}: "
            f"{tuple(spacing)}"
        )
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing values must be finite and > 0 mm; got {values}")
    return values


def label_values(labels, pred: np.ndarray, target: np.ndarray) -> list[int]:
    """The labels to report: given ones (>= 1) or every non-zero value present."""
    if labels is None:
        present = np.union1d(np.unique(pred), np.unique(target))
        return [int(v) for v in present if v != 0]
    if isinstance(labels, numbers.Integral):
        labels = [labels]
    out = []
    for v in labels:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"labels must be integers; got {v!r}")
        if v < 1:
            raise ValueError(
                f"labels must be >= 1 (0 is the background, which is excluded); got {v}"
            )
        out.append(int(v))
    return out


def percentile_value(percentile) -> float:
    p = float(percentile)
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100]; got {percentile}")
    return p
