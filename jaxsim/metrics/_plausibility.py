"""Plausibility of a cardiac shape from its ED and ES short-axis label maps.

Measures (ACDC labels: 1 RV blood, 2 LV myocardium, 3 LV blood):

* ``lv_edv``, ``lv_esv`` (mL) and ``lv_ef`` (%) from voxel counts
  (:func:`label_volumes`);
* ``myo_ed``, ``myo_es`` (mL) and ``myo_change = |myo_es - myo_ed| / myo_ed``:
  myocardium is incompressible, so its volume is conserved over the cycle;
* ``wall_thickness`` (mm, ED): in each mid-ventricular slice, the in-plane
  distance from every epicardial boundary voxel (a myocardial voxel with a
  4-neighbour that is neither myocardium nor LV blood) to the nearest LV blood
  voxel centre (exact distance transform), averaged over those voxels. For an
  annulus of radii ``r1 < r2`` it is ``r2 - r1`` up to a pixel;
* topology, ED and ES: LV blood, LV myocardium and RV blood each one connected
  component (6-connectivity; components under :data:`MIN_COMPONENT` of the
  structure's voxels are counted apart as specks), and LV blood enclosed by
  myocardium in every mid-ventricular slice (no LV blood voxel 4-adjacent
  in-plane to a voxel that is neither LV blood nor myocardium).

Mid-ventricular slices: the middle third (at least one) of the slices holding
LV blood at ED.

:data:`PLAUSIBLE_RANGES` are broad adult ranges that hold for normal hearts and
the ACDC disease groups (dilated and hypertrophic cardiomyopathy, infarction,
abnormal RV): LV EDV 40-450 mL (normal CMR men 106-214 mL, dilated hearts above
300 mL), EF 10-85 % (normal 57-77 %, dilated cardiomyopathy down to ~10 %),
myocardial volume 40-350 mL (LV mass 42-370 g at 1.05 g/mL, normal men
~85-180 g), wall thickness 3-25 mm (normal 6-11 mm, hypertrophy above 15 mm),
myocardial volume change within 15 % (discretisation of a conserved volume on
thick slices) — normal CMR values from Kawel-Boehm et al., JCMR 17:29 (2015).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from jaxsim.labels import ACDC

from ._checks import label_array, spacing_tuple
from ._clinical import label_volumes
from ._edt import squared_edt

__all__ = [
    "PLAUSIBLE_RANGES",
    "connected_components",
    "component_sizes",
    "MIN_COMPONENT",
    "mid_ventricular_slices",
    "wall_thickness",
    "lv_enclosed",
    "shape_measures",
    "plausibility_checks",
    "shape_plausibility",
]

RV, MYO, LV = 1, 2, 3

#: ``measure: (low, high)`` plausible ranges (see the module docstring).
PLAUSIBLE_RANGES = {
    "lv_edv": (40.0, 450.0),
    "lv_ef": (10.0, 85.0),
    "myo_ed": (40.0, 350.0),
    "myo_change": (0.0, 0.15),
    "wall_thickness": (3.0, 25.0),
}
#: Components smaller than this fraction of a structure's voxels are specks of
#: rasterisation (single voxels at thin edges), counted apart (``*_specks_*``),
#: not as separate components.
MIN_COMPONENT = 0.005
#: Topology measures that must hold (each must equal True / 1).
TOPOLOGY = (
    "lv_components_ed",
    "lv_components_es",
    "myo_components_ed",
    "myo_components_es",
    "rv_components_ed",
    "rv_components_es",
    "lv_enclosed_ed",
    "lv_enclosed_es",
)


def connected_components(mask, *, min_fraction: float = 0.0) -> int:
    """Number of face-connected components (4 in 2D, 6 in 3D) of a boolean mask.

    Args:
        mask: boolean ``(ny, nx)`` or ``(nz, ny, nx)`` array.
        min_fraction: count only components holding at least this fraction of
            the mask's voxels (0 counts all, as ``scipy.ndimage.label`` does with
            its default structure).

    Returns:
        The count (0 for an empty mask).
    """
    sizes = component_sizes(mask)
    total = sum(sizes)
    return sum(1 for n in sizes if n >= min_fraction * total)


def component_sizes(mask) -> list[int]:
    """Voxel counts of the face-connected components of a boolean mask."""
    mask = np.asarray(mask, bool)
    seen = np.zeros(mask.shape, bool)
    offsets = []
    for axis in range(mask.ndim):
        for step in (-1, 1):
            o = [0] * mask.ndim
            o[axis] = step
            offsets.append(tuple(o))
    sizes = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        sizes.append(0)
        seen[start] = True
        queue = deque([start])
        while queue:
            p = queue.popleft()
            sizes[-1] += 1
            for o in offsets:
                q = tuple(a + b for a, b in zip(p, o, strict=True))
                if all(0 <= q[i] < mask.shape[i] for i in range(mask.ndim)) and (
                    mask[q] and not seen[q]
                ):
                    seen[q] = True
                    queue.append(q)
    return sizes


def mid_ventricular_slices(labels) -> list[int]:
    """Indices of the middle third (at least one) of the slices with LV blood."""
    labels = label_array("labels", labels, ndims=(3,))
    z = np.nonzero(np.any(labels == LV, axis=(1, 2)))[0]
    if z.size == 0:
        return []
    n = len(z)
    lo, hi = n // 3, n - n // 3
    return [int(k) for k in z[lo : max(hi, lo + 1)]]


def _shifted(mask, dy, dx):
    """``mask`` shifted in-plane, False where it comes from outside."""
    out = np.zeros_like(mask)
    ny, nx = mask.shape[-2:]
    ys, yd = (
        (slice(0, ny - dy), slice(dy, ny))
        if dy >= 0
        else (slice(-dy, ny), slice(0, ny + dy))
    )
    xs, xd = (
        (slice(0, nx - dx), slice(dx, nx))
        if dx >= 0
        else (slice(-dx, nx), slice(0, nx + dx))
    )
    out[..., yd, xd] = mask[..., ys, xs]
    return out


def _touches(mask, other):
    """Voxels of ``mask`` with a 4-neighbour in-plane in ``other`` (outside the
    image counts as ``other``)."""
    pad = np.pad(
        other, [(0, 0)] * (other.ndim - 2) + [(1, 1), (1, 1)], constant_values=True
    )
    out = np.zeros_like(mask)
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        n = pad[..., 1 + dy : pad.shape[-2] - 1 + dy, 1 + dx : pad.shape[-1] - 1 + dx]
        out |= n
    return mask & out


def wall_thickness(labels, *, spacing, slices=None) -> float:
    """Mean LV wall thickness (mm) of ACDC labels (see the module docstring).

    Args:
        labels: ``(nz, ny, nx)`` ACDC labels.
        spacing: ``(sz, sy, sx)`` mm.
        slices: slice indices to measure (default the mid-ventricular ones).

    Returns:
        The mean in mm; ``nan`` when no slice holds both LV blood and an
        epicardial boundary.
    """
    labels = label_array("labels", labels, ndims=(3,))
    _, sy, sx = spacing_tuple(spacing, 3)
    slices = mid_ventricular_slices(labels) if slices is None else slices
    values = []
    for k in slices:
        blood, myo = labels[k] == LV, labels[k] == MYO
        if not blood.any() or not myo.any():
            continue
        outside = ~(myo | blood)
        epi = _touches(myo, outside)
        d = np.sqrt(squared_edt(blood, (sy, sx)))
        values.extend(d[epi].tolist())
    return float(np.mean(values)) if values else float("nan")


def lv_enclosed(labels, slices=None) -> bool:
    """Whether LV blood is enclosed by myocardium in every given slice (default
    the mid-ventricular ones): no LV blood voxel is 4-adjacent in-plane to a voxel
    that is neither LV blood nor myocardium (or to the image edge)."""
    labels = label_array("labels", labels, ndims=(3,))
    slices = mid_ventricular_slices(labels) if slices is None else slices
    if not slices:
        return False
    sub = labels[list(slices)]
    blood = sub == LV
    other = ~((sub == LV) | (sub == MYO))
    return not bool(np.any(_touches(blood, other)))


def shape_measures(ed_labels, es_labels, *, spacing) -> dict:
    """Volumes, EF, myocardial conservation, wall thickness and topology.

    Args:
        ed_labels, es_labels: ``(nz, ny, nx)`` ACDC label maps (uint8) at
            end-diastole and end-systole on the same grid.
        spacing: ``(sz, sy, sx)`` mm.

    Returns:
        ``dict`` of floats (mL, %, mm) and ints/bools: ``lv_edv``, ``lv_esv``,
        ``lv_ef``, ``myo_ed``, ``myo_es``, ``myo_change``, ``wall_thickness`` and
        the :data:`TOPOLOGY` entries (component counts and enclosure).
    """
    ed = label_array("ed_labels", ed_labels, ndims=(3,))
    es = label_array("es_labels", es_labels, ndims=(3,))
    if ed.shape != es.shape:
        raise ValueError(
            f"ed_labels and es_labels must share a grid; got {ed.shape}, {es.shape}"
        )
    spacing = spacing_tuple(spacing, 3)
    v_ed = label_volumes(ed, spacing=spacing, scheme=ACDC)
    v_es = label_volumes(es, spacing=spacing, scheme=ACDC)
    edv, esv = v_ed["LV"], v_es["LV"]
    myo_ed, myo_es = v_ed["MYO"], v_es["MYO"]
    out = {
        "lv_edv": edv,
        "lv_esv": esv,
        "lv_ef": 100.0 * (edv - esv) / edv if edv > 0 else float("nan"),
        "myo_ed": myo_ed,
        "myo_es": myo_es,
        "myo_change": abs(myo_es - myo_ed) / myo_ed if myo_ed > 0 else float("nan"),
        "wall_thickness": wall_thickness(ed, spacing=spacing),
    }
    mid_es = [
        k for k in mid_ventricular_slices(ed) if np.any(es[k] == LV)
    ] or mid_ventricular_slices(es)
    for phase, labels, mid in (
        ("ed", ed, mid_ventricular_slices(ed)),
        ("es", es, mid_es),
    ):
        for name, value in (("lv", LV), ("myo", MYO), ("rv", RV)):
            sizes = component_sizes(labels == value)
            big = [n for n in sizes if n >= MIN_COMPONENT * sum(sizes)]
            out[f"{name}_components_{phase}"] = len(big)
            out[f"{name}_specks_{phase}"] = len(sizes) - len(big)
        out[f"lv_enclosed_{phase}"] = lv_enclosed(labels, mid)
    return out


def plausibility_checks(measures: dict, ranges=None) -> dict:
    """Pass/fail of each measure: ``{name: bool}`` plus ``"plausible"`` (all).

    Ranges are inclusive; a ``nan`` measure fails; component counts pass when 1.
    """
    ranges = PLAUSIBLE_RANGES if ranges is None else ranges
    checks = {}
    for name, (lo, hi) in ranges.items():
        v = float(measures[name])
        checks[name] = bool(np.isfinite(v) and lo <= v <= hi)
    for name in TOPOLOGY:
        v = measures[name]
        checks[name] = bool(v) if isinstance(v, (bool, np.bool_)) else int(v) == 1
    checks["plausible"] = all(checks.values())
    return checks


def shape_plausibility(
    subjects, *, spacing=(5.0, 1.5, 1.5), shape=(28, 128, 128), ranges=None
) -> list[dict]:
    """Measure and check subjects on their own short-axis stacks (ED and ES).

    Each subject is rasterised (:func:`jaxsim.phantoms.label_map`, residual
    deformation included) at end-diastole and at its end-systolic phase on
    :func:`jaxsim.phantoms.short_axis_geometry` with ``spacing`` and ``shape``,
    mapped to ACDC labels and measured by :func:`shape_measures`.

    Args:
        subjects: a ``Subject``, one or batched ``(B,)``.
        spacing: ``(sz, sy, sx)`` mm of the stack.
        shape: ``(nz, ny, nx)``; the default covers 140 x 192 x 192 mm, enough
            for dilated hearts.
        ranges: ``{measure: (low, high)}`` (default :data:`PLAUSIBLE_RANGES`).

    Returns:
        One dict per subject: the measures, ``checks`` (``{name: bool}``) and
        ``plausible`` (bool).
    """
    import jax

    from jaxsim.labels import task_labels
    from jaxsim.phantoms import end_systolic_phase, label_map, short_axis_geometry

    spacing = spacing_tuple(spacing, 3)
    batch = np.shape(subjects.edv)
    items = (
        [subjects]
        if batch == ()
        else [jax.tree.map(lambda a, i=i: a[i], subjects) for i in range(batch[0])]
    )
    rows = []
    for s in items:
        geom = short_axis_geometry(s, spacing=spacing, shape=tuple(shape))
        es_phase = float(end_systolic_phase(s))
        ed = np.asarray(task_labels(np.asarray(label_map(s, geom)), ACDC))
        es = np.asarray(
            task_labels(np.asarray(label_map(s, geom, cardiac_phase=es_phase)), ACDC)
        )
        m = shape_measures(ed, es, spacing=spacing)
        checks = plausibility_checks(m, ranges)
        rows.append({**m, "checks": checks, "plausible": checks["plausible"]})
    return rows
