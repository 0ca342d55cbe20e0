"""Training cases of the GLO shape generator: real label maps on a common crop.

Every case is cropped around its labelled region (plus a margin) to one common
grid shape, so a single compiled rasteriser serves every case; voxels of the
common crop that lie outside a case's image (or beyond its slices) get weight 0
in the loss. Each case keeps its crop's affine and the initial rigid pose of the
phantom's heart relative to its stack (matched to the labels' moments as a patient
twin does, or taken from a fitted twin).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxsim.fit import initial_pose, initial_subject, label_moments
from jaxsim.geometry import ImageGeometry
from jaxsim.parameters import to_unconstrained
from jaxsim.phantoms import heart_pose

__all__ = ["GLOCase", "CaseStack", "stack_cases"]


@dataclasses.dataclass(frozen=True)
class GLOCase:
    """One real training case.

    Attributes:
        name: identifier (e.g. ``patient001``).
        labels_ed: ``(nz, ny, nx)`` uint8 ACDC labels (0 bg, 1 RV, 2 MYO, 3 LV)
            at end-diastole.
        geometry: the stack's grid (its affine places voxels in mm).
        labels_es: optional ES labels on the same grid.
        twin: optional ``parameters`` of a ``jaxsim twin`` report of this case
            (its subject, deformation and ``twin_affine``): initial pose and
            warm-start targets.
    """

    name: str
    labels_ed: np.ndarray
    geometry: ImageGeometry
    labels_es: np.ndarray | None = None
    twin: dict | None = None

    def __post_init__(self):
        if not isinstance(self.geometry, ImageGeometry):
            raise TypeError(
                f"case {self.name!r}: geometry must be an ImageGeometry; got "
                f"{type(self.geometry).__name__}"
            )
        for label, value in (
            ("labels_ed", self.labels_ed),
            ("labels_es", self.labels_es),
        ):
            if value is None:
                continue
            arr = np.asarray(value)
            if arr.shape != tuple(self.geometry.shape):
                raise ValueError(
                    f"case {self.name!r}: {label} must have the grid's shape "
                    f"{tuple(self.geometry.shape)}; got {arr.shape}"
                )
            bad = set(np.unique(arr).tolist()) - {0, 1, 2, 3}
            if bad:
                raise ValueError(
                    f"case {self.name!r}: {label} must hold ACDC values 0..3; got "
                    f"{sorted(bad)}"
                )
            for v, s in ((1, "RV"), (2, "MYO"), (3, "LV")):
                if not np.any(arr == v):
                    raise ValueError(f"case {self.name!r}: {label} hold no {s} voxels")
            object.__setattr__(self, label, arr.astype(np.uint8))


@dataclasses.dataclass(frozen=True)
class CaseStack:
    """All cases on the common crop (NumPy; leading axis: case).

    Attributes:
        names: case names.
        shape: ``(nz, ny, nx)`` common crop shape.
        targets: ``(N, 2, 4, nz, ny, nx)`` float32 one-hot ED and ES labels.
        masks: ``(N, nz, ny, nx)`` float32, 1 inside the case's image.
        es_weight: ``(N,)`` float32, 1 when the case has ES labels.
        affines: ``(N, 4, 4)`` voxel index of the crop -> image world mm.
        rotation0, centre_image, centre_phantom: ``(N, 3, 3)``, ``(N, 3)``,
            ``(N, 3)``: initial pose ``x_ph = R (x - c_img) + c_ph``.
        init_delta: ``(N, n_fields)`` unconstrained size changes from the
            template (moments, or a twin's fitted sizes).
        init_control: ``(N, *grid, 3)`` deformation targets (a twin's, else 0).
        has_twin: ``(N,)`` bool.
    """

    names: tuple[str, ...]
    shape: tuple[int, int, int]
    targets: np.ndarray
    masks: np.ndarray
    es_weight: np.ndarray
    affines: np.ndarray
    rotation0: np.ndarray
    centre_image: np.ndarray
    centre_phantom: np.ndarray
    init_delta: np.ndarray
    init_control: np.ndarray
    has_twin: np.ndarray


def _box(case: GLOCase, margin: float):
    """Labelled in-plane box ``(j0, j1, i0, i1)`` plus ``margin`` mm."""
    real = [case.labels_ed] + ([] if case.labels_es is None else [case.labels_es])
    union = np.any(np.stack(real) > 0, axis=(0, 1))
    _, sy, sx = case.geometry.static_spacing()
    rows = np.nonzero(union.any(axis=1))[0]
    cols = np.nonzero(union.any(axis=0))[0]
    py, px = int(np.ceil(margin / sy)), int(np.ceil(margin / sx))
    return rows.min() - py, rows.max() + 1 + py, cols.min() - px, cols.max() + 1 + px


def _onehot_crop(labels, shape, j0, i0):
    """``(4, nz', ny', nx')`` one-hot crop and its in-image mask (zero outside)."""
    nz, ny, nx = labels.shape
    cz, cy, cx = shape
    out = np.zeros((4, cz, cy, cx), np.float32)
    mask = np.zeros((cz, cy, cx), np.float32)
    ys, xs = slice(max(j0, 0), min(j0 + cy, ny)), slice(max(i0, 0), min(i0 + cx, nx))
    yd = slice(ys.start - j0, ys.stop - j0)
    xd = slice(xs.start - i0, xs.stop - i0)
    crop = labels[:cz, ys, xs]
    out[:, : crop.shape[0], yd, xd] = crop[None] == np.arange(4)[:, None, None, None]
    mask[: crop.shape[0], yd, xd] = 1.0
    return out, mask


def _twin_pose(case: GLOCase, centroid):
    """Pose of a fitted twin: its affine is ``M A`` for a rigid ``M``."""
    t = np.asarray(case.twin["twin_affine"], np.float64)
    a = np.asarray(case.geometry.affine, np.float64)
    if tuple(case.twin["grid_shape"]) != tuple(case.geometry.shape):
        raise ValueError(
            f"case {case.name!r}: its twin was fitted on a grid of "
            f"{tuple(case.twin['grid_shape'])}, not the case's "
            f"{tuple(case.geometry.shape)}"
        )
    m = t @ np.linalg.inv(a)
    gap = np.max(np.abs(m[:3, :3].T @ m[:3, :3] - np.eye(3)))
    if gap > 1e-3:
        raise ValueError(
            f"case {case.name!r}: its twin's grid is not the case's grid moved "
            "rigidly (was the twin fitted with another voxel spacing?)"
        )
    return m[:3, :3], centroid, m[:3, :3] @ centroid + m[:3, 3]


def stack_cases(cases, template, indices, grid_shape, *, margin=12.0) -> CaseStack:
    """Crop every case to a common shape and initialise its pose and targets.

    Args:
        cases: sequence of :class:`GLOCase` (at least one).
        template: the generator's template ``Subject``.
        indices: positions of the generator's fields in the unconstrained vector.
        grid_shape: the generator's deformation grid.
        margin: mm of background kept around the labelled region.

    Returns:
        :class:`CaseStack`.
    """
    from jaxsim.fit import twin_from_parameters

    if not cases:
        raise ValueError("cases must hold at least one GLOCase")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"case names must be unique; got {names}")
    boxes = [_box(c, margin) for c in cases]
    nz = max(c.geometry.shape[0] for c in cases)
    shape = (
        nz,
        max(b[1] - b[0] for b in boxes),
        max(b[3] - b[2] for b in boxes),
    )
    u0 = np.asarray(to_unconstrained(template), np.float64)[list(indices)]
    out = {k: [] for k in ("targets", "masks", "es", "aff", "r0", "ci", "cp", "d", "c")}
    for case, (j0, j1, i0, i1) in zip(cases, boxes, strict=True):
        # centre the labelled box in the common crop
        j0 -= (shape[1] - (j1 - j0)) // 2
        i0 -= (shape[2] - (i1 - i0)) // 2
        ed, mask = _onehot_crop(case.labels_ed, shape, j0, i0)
        es = (
            np.zeros_like(ed)
            if case.labels_es is None
            else (_onehot_crop(case.labels_es, shape, j0, i0)[0])
        )
        a = np.asarray(case.geometry.affine, np.float64).copy()
        a[:3, 3] = a[:3, 3] + i0 * a[:3, 0] + j0 * a[:3, 1]
        m_ed = label_moments(case.labels_ed, case.geometry)
        m_es = (
            None
            if case.labels_es is None
            else label_moments(case.labels_es, case.geometry)
        )
        control = np.zeros((*grid_shape, 3), np.float32)
        if case.twin is None:
            subject0 = initial_subject(template, m_ed, m_es)
            pose = initial_pose(subject0, m_ed, heart_pose(subject0))
        else:
            subject0, _ = twin_from_parameters(case.twin)
            pose = _twin_pose(case, m_ed.lv_centroid)
            twin_control = np.asarray(case.twin["deformation"]["control"], np.float32)
            if twin_control.shape == control.shape:
                control = twin_control
        u = np.asarray(to_unconstrained(subject0.replace(deformation=None)), np.float64)
        out["targets"].append(np.stack([ed, es]))
        out["masks"].append(mask)
        out["es"].append(0.0 if case.labels_es is None else 1.0)
        out["aff"].append(a)
        out["r0"].append(np.asarray(pose[0], np.float64))
        out["ci"].append(np.asarray(pose[1], np.float64))
        out["cp"].append(np.asarray(pose[2], np.float64))
        out["d"].append(u[list(indices)] - u0)
        out["c"].append(control)
    f32 = lambda k: np.asarray(out[k], np.float32)  # noqa: E731
    return CaseStack(
        names=tuple(names),
        shape=shape,
        targets=f32("targets"),
        masks=f32("masks"),
        es_weight=f32("es"),
        affines=np.asarray(out["aff"], np.float64),
        rotation0=f32("r0"),
        centre_image=f32("ci"),
        centre_phantom=f32("cp"),
        init_delta=f32("d"),
        init_control=f32("c"),
        has_twin=np.asarray([c.twin is not None for c in cases]),
    )
