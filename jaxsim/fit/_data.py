"""A real image and its label map, checked and prepared for histogram fitting."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.labels import ACDC, resolve_class

__all__ = [
    "FitData",
    "parse_label_spec",
    "prepare_data",
]

_MIN_VOXELS = 20


def acdc_classes() -> dict[str, int]:
    """The ACDC scheme as ``{tissue: label value}`` (RV blood 1, LV myocardium 2,
    LV blood 3)."""
    return {names[0]: v for v, names in enumerate(ACDC.tissues, start=1)}


def parse_label_spec(spec: str) -> dict[str, int]:
    """Parse ``"RV=1,MYO=2,LV=3"`` into ``{"rv_blood": 1, ...}``.

    Names are the aliases of :data:`jaxsim.labels.ALIASES` (any case) or tissue
    names of :data:`jaxsim.labels.TISSUES`; values are label values in [1, 255].

    Raises:
        ValueError: for malformed entries, unknown names, repeated names or values.
    """
    out: dict[str, int] = {}
    for item in (s.strip() for s in spec.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(
                f"labels must look like 'RV=1,MYO=2,LV=3'; got entry {item!r}"
            )
        try:
            tissue = resolve_class(name)
        except ValueError as err:
            raise ValueError(f"labels: {err}") from None
        try:
            val = int(value)
        except ValueError:
            raise ValueError(
                f"labels: value of {name.strip()!r} must be an integer; got {value!r}"
            ) from None
        if not 1 <= val <= 255:
            raise ValueError(
                f"labels: value of {name.strip()!r} must lie in [1, 255]; got {val}"
            )
        if tissue in out or val in out.values():
            raise ValueError(f"labels: class or value repeated in {spec!r}")
        out[tissue] = val
    return out


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitData:
    """A real image cropped around its labelled classes, ready for the fit.

    Attributes:
        image: ``(nz, ny, nx)`` float real intensities in the crop.
        onehot: ``(n_classes + 1, nz, ny, nx)`` float one-hot class maps; the last
            channel is the background/other class.
        coords: ``(3, nz, ny, nx)`` normalised ``(z, y, x)`` coordinates in [-1, 1]
            over the crop (for the bias field).
        class_map: ``(nz, ny, nx)`` int class index per voxel (``n_classes`` for
            the background).
        indices: per class, ``(n_k,)`` int flat indices of the voxels the loss
            uses: all of the class's voxels, or an evenly strided subset of at
            most ``max_samples`` (raster order).
        real_sorted: per class, ``(n_k,)`` sorted real intensities at ``indices``.
        real_scale: ``(n_classes,)`` robust spread of each class's real intensities
            (1.4826 MAD, floored at 1 percent of the median), the unit of the loss.
        spacing: ``(sz, sy, sx)`` voxel spacing in mm (static).
        classes: static tuple of tissue names, one per fitted class.
        label_values: static tuple of their label values.
        crop: static ``((z0, z1), (y0, y1), (x0, x1))`` of the crop in the input.
    """

    image: jax.Array
    onehot: jax.Array
    coords: jax.Array
    class_map: jax.Array
    indices: tuple[jax.Array, ...]
    real_sorted: tuple[jax.Array, ...]
    real_scale: jax.Array
    spacing: tuple[float, float, float] = dataclasses.field(metadata=dict(static=True))
    classes: tuple[str, ...] = dataclasses.field(metadata=dict(static=True))
    label_values: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    crop: tuple[tuple[int, int], ...] = dataclasses.field(metadata=dict(static=True))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_values(self, image) -> list[jax.Array]:
        """Per class, the values of a crop-shaped ``image`` at that class's voxels."""
        flat = jnp.ravel(image)
        return [flat[idx] for idx in self.indices]


def _check_arrays(image, labels):
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim == 2:
        image = image[None]
    if labels.ndim == 2:
        labels = labels[None]
    if image.ndim != 3:
        raise ValueError(f"image must be 2D or 3D (z, y, x); got shape {image.shape}")
    if image.shape != labels.shape:
        raise ValueError(
            f"image shape {image.shape} and labels shape {labels.shape} must match"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(labels == np.round(labels)):
            raise ValueError("labels must hold integer label values")
        labels = labels.astype(np.int64)
    image = image.astype(np.float64)
    if not np.all(np.isfinite(image)):
        raise ValueError("image must be finite; got NaN or inf")
    if np.iscomplexobj(image) or np.min(image) < 0:
        raise ValueError(
            f"image must be a real magnitude image (>= 0); got minimum "
            f"{float(np.min(np.real(image))):.6g}"
        )
    return image, labels


def _crop_box(mask: np.ndarray, margin: int):
    box = []
    for axis, n in enumerate(mask.shape):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        pad = 0 if axis == 0 else margin
        box.append((max(int(hit[0]) - pad, 0), min(int(hit[-1]) + 1 + pad, n)))
    return tuple(box)


def prepare_data(
    image,
    labels,
    *,
    classes: dict[str, int] | None = None,
    spacing=(10.0, 1.5, 1.5),
    margin: int = 8,
    max_samples: int = 4000,
    dtype=None,
) -> FitData:
    """Check a real image and label map and crop them around the labelled classes.

    Args:
        image: ``(nz, ny, nx)`` (or ``(ny, nx)``) real magnitude intensities, any
            linear scale, >= 0.
        labels: integer label map of the same shape.
        classes: tissue name -> label value of every class to fit (default the ACDC
            scheme :data:`jaxsim.labels.ACDC`); every other value is background/other.
        spacing: ``(sz, sy, sx)`` voxel spacing in mm, each > 0.
        margin: in-plane voxels kept around the labelled bounding box, >= 0.
        max_samples: most voxels per class the loss sorts, >= 100 (the cost of
            a step grows with it; 4000 resolve a distribution to ~0.02 in KS).
        dtype: float dtype (default JAX's default float).

    Returns:
        :class:`FitData`.

    Raises:
        ValueError: shape mismatch, non-finite or negative or constant image, a
            class value absent from ``labels`` or with fewer than 20 voxels, bad
            spacing or margin.
    """
    classes = dict(acdc_classes() if classes is None else classes)
    if not classes:
        raise ValueError("classes must name at least one labelled class")
    image, labels = _check_arrays(image, labels)
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing), (3,)))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three values > 0 mm; got {spacing}")
    if int(margin) != margin or margin < 0:
        raise ValueError(f"margin must be an integer >= 0; got {margin}")
    if int(max_samples) != max_samples or max_samples < 100:
        raise ValueError(f"max_samples must be an integer >= 100; got {max_samples}")
    present = np.unique(labels)
    for name, value in classes.items():
        count = int(np.sum(labels == value))
        if count == 0:
            raise ValueError(
                f"label value {value} ({name}) does not occur in labels; values "
                f"present: {present.tolist()}"
            )
        if count < _MIN_VOXELS:
            raise ValueError(
                f"class {name} (label {value}) has {count} voxels; need at least "
                f"{_MIN_VOXELS} for a histogram"
            )
    names = tuple(classes)
    values = tuple(int(classes[n]) for n in names)
    mask = np.isin(labels, values)
    inside = image[mask]
    if np.ptp(inside) <= 1e-12 * max(np.max(np.abs(inside)), 1e-30):
        raise ValueError(
            f"image is constant ({float(inside[0]):.6g}) over the labelled classes; "
            "there is no histogram to fit"
        )
    box = _crop_box(mask, int(margin))
    sl = tuple(slice(a, b) for a, b in box)
    img, lab = image[sl], labels[sl]
    onehot = np.stack([lab == v for v in values] + [~np.isin(lab, values)])
    axes = [np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1) for n in img.shape]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"))
    dtype = jnp.result_type(float) if dtype is None else dtype
    flat = img.ravel()
    indices, real_sorted, scales = [], [], []
    class_map = np.full(lab.shape, len(values), np.int32)
    for k, v in enumerate(values):
        class_map[lab == v] = k
        idx = np.flatnonzero(lab.ravel() == v)
        idx = idx[:: -(-idx.size // int(max_samples))]
        vals = np.sort(flat[idx])
        med = np.median(vals)
        mad = 1.4826 * np.median(np.abs(vals - med))
        scales.append(max(mad, 0.01 * abs(med), 1e-6 * np.ptp(inside)))
        indices.append(jnp.asarray(idx, jnp.int32))
        real_sorted.append(jnp.asarray(vals, dtype))
    return FitData(
        image=jnp.asarray(img, dtype),
        onehot=jnp.asarray(onehot, dtype),
        coords=jnp.asarray(coords, dtype),
        class_map=jnp.asarray(class_map),
        indices=tuple(indices),
        real_sorted=tuple(real_sorted),
        real_scale=jnp.asarray(scales, dtype),
        spacing=spacing,
        classes=names,
        label_values=values,
        crop=box,
    )
