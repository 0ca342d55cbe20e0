"""Patient twins: the phantom fitted to a real label map by gradient.

A twin is a :class:`~jaxsim.phantoms.Subject` (with a residual deformation) and
the real stack's grid placed in the phantom's world (an
:class:`~jaxsim.geometry.ImageGeometry`): rasterising the subject on that grid
gives the twin's label map on the real voxels, and every simulator takes the same
pair — ``simulate_cine(key, twin.subject, twin.geometry)`` is a cine of the
patient's heart on the patient's grid, ``simulate_tagged`` a tagged one,
``jaxsim.ct`` a CT.

The fit minimises the soft Dice loss between the phantom's ACDC-class fractions
(:func:`jaxsim.labels.task_fractions` of :func:`jaxsim.phantoms.tissue_fractions`)
and the real labels, at end-diastole and (when given) end-systole together, over
a rigid pose of the heart relative to the stack (initialised by matching the
labels' moments), the subject's LV/RV size parameters (through the
:mod:`jaxsim.parameters` bijection, so the subject stays valid) and the
deformation's control values, with small quadratic penalties on the latter two.
Stages: pose and sizes first, then pose, sizes and deformation, on the real grid
cropped to the labelled region.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsim.geometry import ImageGeometry
from jaxsim.labels import ACDC, task_fractions, task_labels
from jaxsim.losses import soft_dice_loss
from jaxsim.metrics import dice_score
from jaxsim.parameters import field_slices, from_unconstrained, to_unconstrained
from jaxsim.phantoms import (
    ResidualDeformation,
    Subject,
    default_subject,
    end_systolic_phase,
    heart_pose,
    label_map,
    residual_deformation,
    tissue_fractions,
)

from ._twin_init import initial_pose, initial_subject, label_moments

__all__ = [
    "TwinResult",
    "fit_twin",
    "twin_labels",
    "twin_from_parameters",
    "STRUCTURES",
    "FITTED_FIELDS",
    "rotation_matrix",
    "posed_affine",
]

#: Report names of the ACDC structures and their label values.
STRUCTURES = {"LV": 3, "MYO": 2, "RV": 1}
#: Subject fields the twin fits (the others keep the template's values; the
#: heart's placement is the rigid pose).
FITTED_FIELDS = (
    "edv",
    "esv",
    "wall_thickness",
    "lv_aspect",
    "longitudinal_shortening",
    "rv_lv_ratio",
)
# Parameter scales: one Adam step size moves every group by a sensible amount.
_SCALE = {"rotation": 0.3, "translation": 20.0, "subject": 1.0, "control": 2.0}


@dataclasses.dataclass(frozen=True)
class TwinResult:
    """A fitted patient twin.

    Attributes:
        subject: the fitted ``Subject`` with its ``deformation`` set.
        geometry: the real stack's grid ``(nz, ny, nx)`` placed in the phantom's
            world (feed both to any simulator).
        es_phase: the cardiac phase rendered against the ES labels (``None``
            without them).
        labels: ``{"ED": array, "ES": array}`` (ES only when fitted), the twin's
            ``(nz, ny, nx)`` uint8 ACDC label maps on the real grid.
        dice: ``{"ED": {"LV": .., "MYO": .., "RV": ..}, "ES": ...}`` between the
            twin's and the real labels.
        initial_dice: the same for the moment-matched initial guess.
        losses: ``(steps,)`` float64 objective per step.
        seconds: wall time of the fit (compilation included).
    """

    subject: Subject
    geometry: ImageGeometry
    es_phase: float | None
    labels: dict
    dice: dict
    initial_dice: dict
    losses: np.ndarray
    seconds: float


def _check_labels(name, labels, shape=None):
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(
            f"{name} must be a 3D (nz, ny, nx) label map; got {labels.shape}"
        )
    if shape is not None and labels.shape != tuple(shape):
        raise ValueError(
            f"{name} must have the grid's shape {tuple(shape)}; got {labels.shape}"
        )
    values = set(np.unique(labels).tolist())
    if not values <= {0, 1, 2, 3}:
        raise ValueError(
            f"{name} must hold ACDC values 0 (background), 1 (RV), 2 (MYO), 3 (LV); "
            f"got values {sorted(values)}"
        )
    return labels.astype(np.uint8)


def _crop_box(masks, geometry, margin):
    """Row and column ranges ``((j0, j1), (i0, i1))`` of the labelled voxels plus
    ``margin`` mm, clipped to the grid."""
    union = np.any(np.stack(masks), axis=(0, 1))
    spacing = np.asarray(geometry.static_spacing())  # (sz, sy, sx)
    out = []
    for axis, n, step in (
        (0, union.shape[0], spacing[1]),
        (1, union.shape[1], spacing[2]),
    ):
        idx = np.nonzero(np.any(union, axis=1 - axis))[0]
        pad = int(np.ceil(margin / step))
        out.append((max(0, idx.min() - pad), min(n, idx.max() + 1 + pad)))
    return out


def _crop_affine(affine, rows, cols):
    """Affine and shape of the in-plane crop ``rows``, ``cols`` of a grid."""
    (j0, j1), (i0, i1) = rows, cols
    a = np.asarray(affine, np.float64).copy()
    a[:3, 3] = a[:3, 3] + i0 * a[:3, 0] + j0 * a[:3, 1]
    return a, (int(j1 - j0), int(i1 - i0))


def _onehot(labels, rows, cols):
    """One-hot ``(4, nz, ny', nx')`` float32 ACDC targets in the crop."""
    (j0, j1), (i0, i1) = rows, cols
    crop = labels[:, j0:j1, i0:i1]
    return (crop[None] == np.arange(4)[:, None, None, None]).astype(np.float32)


def rotation_matrix(omega) -> jax.Array:
    """The rotation ``expm([omega]_x)`` ``(3, 3)`` of an axis-angle vector
    ``omega`` ``(3,)`` (rad; its direction is the axis, its length the angle)."""
    k = jnp.asarray(
        [
            [0.0, -omega[2], omega[1]],
            [omega[2], 0.0, -omega[0]],
            [-omega[1], omega[0], 0.0],
        ]
    )
    return jax.scipy.linalg.expm(k)


def posed_affine(rotation, centre_image, centre_phantom, image_affine) -> jax.Array:
    """A real stack's affine placed in the phantom's world by a rigid map.

    The map is ``x_ph = rotation (x - centre_image) + centre_phantom`` (the
    twin's pose: :func:`jaxsim.fit.initial_pose` gives its initial value).

    Args:
        rotation: ``(3, 3)`` rotation matrix.
        centre_image: ``(3,)`` mm, a point of the image world.
        centre_phantom: ``(3,)`` mm, where that point goes in the phantom world.
        image_affine: ``(4, 4)`` voxel index ``(i, j, k)`` -> image world mm.

    Returns:
        ``(4, 4)`` float32 affine: voxel index -> phantom world mm.
    """
    a = jnp.asarray(image_affine, jnp.float32)
    rot = jnp.asarray(rotation, jnp.float32)
    top = jnp.concatenate(
        [rot @ a[:3, :3], (rot @ (a[:3, 3] - centre_image) + centre_phantom)[:, None]],
        axis=1,
    )
    return jnp.concatenate([top, jnp.asarray([[0.0, 0.0, 0.0, 1.0]])], axis=0)


class _Model:
    """The differentiable map from fit parameters to a subject and a geometry."""

    def __init__(self, template, pose0, box, deformation_options):
        self.template = template
        self.u0 = to_unconstrained(template)
        mask = np.zeros(self.u0.shape[-1], np.float32)
        for name, sl in field_slices(template).items():
            if name in FITTED_FIELDS:
                mask[sl] = 1.0
        self.mask = jnp.asarray(mask)
        self.rotation0, self.centre_img, self.centre_ph = (
            jnp.asarray(x, jnp.float32) for x in pose0
        )
        self.box = box
        self.options = deformation_options

    def subject(self, params):
        delta = _SCALE["subject"] * params["subject"]
        subject = from_unconstrained(self.u0 + self.mask * delta, self.template)
        deformation = ResidualDeformation(
            control=_SCALE["control"] * params["control"],
            lower=self.box[0],
            upper=self.box[1],
            **self.options,
        )
        return subject.replace(deformation=deformation)

    def affine(self, params, image_affine):
        rot = self.rotation0 @ rotation_matrix(_SCALE["rotation"] * params["rotation"])
        shift = self.centre_ph + _SCALE["translation"] * params["translation"]
        return posed_affine(rot, self.centre_img, shift, image_affine)


def _dice_loss(fractions, target):
    probs = task_fractions(fractions, ACDC)
    per_class = soft_dice_loss(
        probs[None],
        target[None],
        activation=None,
        include_background=False,
        channel_axis=1,
        reduction="none",
    )
    return jnp.mean(per_class)


def _objective(params, affine, targets, weights, model, shape, supersample, es):
    subject = model.subject(params)
    geom = ImageGeometry(affine=model.affine(params, affine), shape=shape)
    f = tissue_fractions(subject, geom, cardiac_phase=0.0, supersample=supersample)
    loss = _dice_loss(f, targets[0])
    if es:
        phase = end_systolic_phase(subject)
        f = tissue_fractions(
            subject, geom, cardiac_phase=phase, supersample=supersample
        )
        loss = loss + _dice_loss(f, targets[1])
    reg = weights[0] * jnp.mean(params["control"] ** 2) + weights[1] * jnp.sum(
        params["subject"] ** 2
    )
    return loss + reg


_value_and_grad = jax.jit(
    jax.value_and_grad(_objective),
    static_argnames=("model", "shape", "supersample", "es"),
)


def twin_labels(subject, geometry, *, cardiac_phase=0.0, supersample=(2, 1, 1)):
    """The twin's ACDC label map ``(nz, ny, nx)`` uint8 (NumPy) on ``geometry``."""
    tissue = label_map(
        subject, geometry, cardiac_phase=cardiac_phase, supersample=supersample
    )
    return np.asarray(task_labels(np.asarray(tissue), ACDC))


def _dice(pred, real):
    scores = dice_score(pred, real, labels=list(STRUCTURES.values()))
    return {name: float(scores[v]) for name, v in STRUCTURES.items()}


def fit_twin(
    labels_ed,
    geometry: ImageGeometry,
    *,
    labels_es=None,
    steps=(40, 160),
    grid_shape=(6, 6, 7),
    max_displacement=30.0,
    supersample=(2, 1, 1),
    margin=12.0,
    learning_rate=0.05,
    regularisation=(1e-3, 1e-3),
    template: Subject | None = None,
    progress: bool = False,
) -> TwinResult:
    """Fit a patient twin to real ACDC label maps.

    Args:
        labels_ed: ``(nz, ny, nx)`` integer ACDC labels at end-diastole (0
            background, 1 RV blood, 2 LV myocardium, 3 LV blood).
        geometry: the stack's grid (shape ``(nz, ny, nx)``; its affine places the
            voxels in mm; an axis-aligned grid with the right spacing will do).
        labels_es: optional ES labels on the same grid, fitted jointly (same pose
            and deformation; the ES frame is rendered at the subject's
            end-systolic phase).
        steps: ``(first, second)`` Adam steps: pose and sizes, then pose, sizes
            and deformation (one compiled objective serves both).
        grid_shape: deformation control points along ``e_rv, e_3, e_long``.
        max_displacement: bound (mm) on the deformation.
        supersample: rasteriser sub-samples per voxel ``(sz, sy, sx)``.
        margin: mm of background kept around the labelled region.
        learning_rate: Adam step size (parameters are scaled per group).
        regularisation: weights of ``mean(control^2)`` and of the squared change
            of the subject's unconstrained sizes.
        template: subject supplying the unfitted fields (default: the mean male).
        progress: show a progress bar.

    Returns:
        :class:`TwinResult`.

    Raises:
        ValueError: labels not 3D, not on the grid, with values outside 0..3, or
            missing a structure; steps negative.
    """
    start = time.perf_counter()
    if not isinstance(geometry, ImageGeometry):
        raise TypeError(
            f"geometry must be an ImageGeometry; got {type(geometry).__name__}"
        )
    labels_ed = _check_labels("labels_ed", labels_ed, geometry.shape)
    if labels_es is not None:
        labels_es = _check_labels("labels_es", labels_es, geometry.shape)
    steps = tuple(int(s) for s in steps)
    if len(steps) != 2 or min(steps) < 0:
        raise ValueError(f"steps must be two ints >= 0; got {steps}")
    for name, value in (("margin", margin), ("learning_rate", learning_rate)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0; got {value!r}")
    if len(regularisation) != 2 or min(regularisation) < 0:
        raise ValueError(
            f"regularisation must be two weights >= 0; got {regularisation!r}"
        )
    template = default_subject("male") if template is None else template
    ed = label_moments(labels_ed, geometry)
    es = None if labels_es is None else label_moments(labels_es, geometry)
    subject0 = initial_subject(template, ed, es)
    pose0 = initial_pose(subject0, ed, heart_pose(subject0))
    box = residual_deformation(subject0, grid_shape=grid_shape, margin=20.0)
    model = _Model(
        subject0,
        pose0,
        (box.lower, box.upper),
        dict(max_displacement=float(max_displacement)),
    )
    params = {
        "rotation": jnp.zeros(3),
        "translation": jnp.zeros(3),
        "subject": jnp.zeros(model.u0.shape[-1]),
        "control": jnp.zeros((*grid_shape, 3)),
    }
    real = [labels_ed] + ([] if labels_es is None else [labels_es])
    initial = _twin_outputs(model, params, geometry, real, supersample)
    losses = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(steps), desc="twin", unit="step")
    weights = jnp.asarray(regularisation, jnp.float32)
    rows, cols = _crop_box([r > 0 for r in real], geometry, margin)
    affine, plane = _crop_affine(geometry.affine, rows, cols)
    shape = (geometry.shape[0], *plane)
    targets = jnp.asarray(np.stack([_onehot(r, rows, cols) for r in real]))
    for stage, n in enumerate(steps):
        if n == 0:
            continue
        frozen = {"control": 0.0 if stage == 0 else 1.0}
        schedule = optax.cosine_decay_schedule(learning_rate, n, alpha=0.2)
        opt = optax.adam(schedule)
        state = opt.init(params)
        for _ in range(n):
            value, grads = _value_and_grad(
                params,
                jnp.asarray(affine, jnp.float32),
                targets,
                weights,
                model,
                shape,
                tuple(supersample),
                len(real) > 1,
            )
            grads = {k: g * frozen.get(k, 1.0) for k, g in grads.items()}
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            losses.append(float(value))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(value):.3f}")
    if bar is not None:
        bar.close()
    subject, twin_geom, phase, labels, dice = _twin_outputs(
        model, params, geometry, real, supersample
    )
    return TwinResult(
        subject=subject,
        geometry=twin_geom,
        es_phase=phase,
        labels=labels,
        dice=dice,
        initial_dice=initial[4],
        losses=np.asarray(losses, np.float64),
        seconds=time.perf_counter() - start,
    )


def _twin_outputs(model, params, geometry, real, supersample):
    subject = jax.tree.map(lambda x: x, model.subject(params))  # concrete arrays
    twin_geom = ImageGeometry(
        affine=model.affine(params, geometry.affine), shape=geometry.shape
    )
    labels = {"ED": twin_labels(subject, twin_geom, supersample=supersample)}
    phase = None
    if len(real) > 1:
        phase = float(end_systolic_phase(subject))
        labels["ES"] = twin_labels(
            subject, twin_geom, cardiac_phase=phase, supersample=supersample
        )
    dice = {k: _dice(labels[k], r) for k, r in zip(labels, real, strict=True)}
    return subject, twin_geom, phase, labels, dice


def twin_from_parameters(parameters: dict, *, dtype=jnp.float32):
    """Rebuild a twin from the ``parameters`` of a ``jaxsim twin`` report.

    Args:
        parameters: ``report["parameters"]``: ``subject`` (every field of
            :data:`jaxsim.phantoms.FIELD_SPECS`), ``deformation`` (``control``,
            ``lower_mm``, ``upper_mm``, ``max_displacement_mm``, ``steps``,
            ``resolution``), ``twin_affine`` (4x4) and ``grid_shape``.
        dtype: float dtype of the leaves.

    Returns:
        ``(subject, geometry)``: the twin's ``Subject`` (deformation set) and the
        real grid placed in the phantom's world; pass both to any simulator.

    Raises:
        ValueError: a missing entry, or an invalid subject.
    """
    from jaxsim.phantoms import FIELD_SPECS, check_subject

    try:
        fields = parameters["subject"]
        d = parameters["deformation"]
        values = {f: jnp.asarray(fields[f], dtype) for f in FIELD_SPECS}
        deformation = ResidualDeformation(
            control=jnp.asarray(d["control"], dtype),
            lower=tuple(d["lower_mm"]),
            upper=tuple(d["upper_mm"]),
            max_displacement=d["max_displacement_mm"],
            steps=d["steps"],
            resolution=d["resolution"],
        )
        geometry = ImageGeometry(
            affine=jnp.asarray(parameters["twin_affine"], dtype),
            shape=tuple(parameters["grid_shape"]),
        )
    except KeyError as err:
        raise ValueError(f"parameters lack the entry {err.args[0]!r}") from None
    subject = Subject(**values, deformation=deformation)
    check_subject(subject)
    return subject, geometry
