"""Clinical indices of the ventricles from end-diastolic and end-systolic labels.

Volumes are voxel counts times the voxel volume (``prod(spacing)`` mm³, / 1000 for
mL), the usual summation of a short-axis stack's segmented areas times the slice
spacing. The classes come from a :class:`jaxsim.labels.LabelScheme`: the class
collecting ``lv_blood`` is the LV cavity, ``rv_blood`` the RV cavity and
``lv_myocardium`` the LV myocardium (ACDC: 3, 1 and 2).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxsim.labels import ACDC, LabelScheme

from ._checks import label_array, spacing_tuple

__all__ = ["MYOCARDIAL_DENSITY", "CardiacIndices", "label_volumes", "cardiac_indices"]

#: Density of myocardium (g/mL) used for LV mass, as in the ACDC challenge.
MYOCARDIAL_DENSITY = 1.05


def _scheme(scheme) -> LabelScheme:
    if not isinstance(scheme, LabelScheme):
        raise TypeError(f"scheme must be a LabelScheme; got {type(scheme).__name__}")
    return scheme


def _checked_labels(name: str, labels, scheme: LabelScheme) -> np.ndarray:
    arr = label_array(name, labels, ndims=(3,))
    if arr.size and arr.max() >= scheme.n_classes:
        raise ValueError(
            f"{name} holds label {arr.max()}, outside the {scheme.name!r} scheme "
            f"(values 0..{scheme.n_classes - 1}: {', '.join(scheme.classes)})"
        )
    return arr


def label_volumes(labels, *, spacing, scheme: LabelScheme = ACDC) -> dict:
    """Volume in mL of every non-background class of a label scheme.

    Args:
        labels: integer label map ``(nz, ny, nx)`` with values of ``scheme``.
        spacing: voxel size ``(sz, sy, sx)`` in mm.
        scheme: the label scheme (default ACDC).

    Returns:
        ``{class name: volume in mL}`` (absent classes have volume 0).

    Example:
        >>> labels = np.zeros((2, 10, 10), np.uint8); labels[:, :5, :5] = 3
        >>> label_volumes(labels, spacing=(10.0, 1.0, 1.0))["LV"]
        0.5
    """
    scheme = _scheme(scheme)
    arr = _checked_labels("labels", labels, scheme)
    voxel_ml = float(np.prod(spacing_tuple(spacing, 3))) / 1000.0
    counts = np.bincount(arr.ravel(), minlength=scheme.n_classes)
    return {c: float(counts[i]) * voxel_ml for i, c in enumerate(scheme.classes) if i}


@dataclasses.dataclass(frozen=True)
class CardiacIndices:
    """Ventricular volumes (mL), ejection fractions (%) and LV mass (g).

    An ejection fraction is ``None`` when its end-diastolic volume is 0 (the
    structure is not labelled); a ventricle or myocardium the scheme has no class
    for gives ``None`` everywhere.
    """

    lv_edv: float | None
    lv_esv: float | None
    lv_ef: float | None
    rv_edv: float | None
    rv_esv: float | None
    rv_ef: float | None
    lv_mass: float | None


def _class_of(scheme: LabelScheme, tissue: str) -> str | None:
    for name, tissues in zip(scheme.classes[1:], scheme.tissues, strict=True):
        if tissue in tissues:
            return name
    return None


def _ef(edv, esv):
    if edv is None or edv == 0.0:
        return None
    return 100.0 * (edv - esv) / edv


def cardiac_indices(
    ed_labels,
    es_labels,
    *,
    spacing,
    scheme: LabelScheme = ACDC,
    myocardial_density: float = MYOCARDIAL_DENSITY,
) -> CardiacIndices:
    """LV and RV EDV, ESV, EF and the LV mass from ED and ES label maps.

    ``EF = 100 (EDV - ESV) / EDV``; LV mass = end-diastolic myocardial volume ×
    ``myocardial_density``.

    Args:
        ed_labels, es_labels: integer label maps ``(nz, ny, nx)`` at end-diastole
            and end-systole (shapes may differ; the voxel size is shared).
        spacing: voxel size ``(sz, sy, sx)`` in mm.
        scheme: the label scheme (default ACDC).
        myocardial_density: g/mL, > 0.

    Returns:
        A :class:`CardiacIndices`.
    """
    scheme = _scheme(scheme)
    if not myocardial_density > 0:
        raise ValueError(
            f"myocardial_density must be > 0 g/mL; got {myocardial_density}"
        )
    ed = label_volumes(
        _checked_labels("ed_labels", ed_labels, scheme), spacing=spacing, scheme=scheme
    )
    es = label_volumes(
        _checked_labels("es_labels", es_labels, scheme), spacing=spacing, scheme=scheme
    )
    lv, rv = _class_of(scheme, "lv_blood"), _class_of(scheme, "rv_blood")
    myo = _class_of(scheme, "lv_myocardium")
    lv_edv, lv_esv = (ed[lv], es[lv]) if lv else (None, None)
    rv_edv, rv_esv = (ed[rv], es[rv]) if rv else (None, None)
    return CardiacIndices(
        lv_edv=lv_edv,
        lv_esv=lv_esv,
        lv_ef=_ef(lv_edv, lv_esv),
        rv_edv=rv_edv,
        rv_esv=rv_esv,
        rv_ef=_ef(rv_edv, rv_esv),
        lv_mass=ed[myo] * myocardial_density if myo else None,
    )
