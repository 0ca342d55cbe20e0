"""How much more real a translation is, and whether it keeps its labels.

* Label preservation: a segmentation network trained on *real* images (a
  ``jaxsim train`` run) segments the translated slices; Dice against the
  simulation's own labels says whether the anatomy survived the translation.
* Realism, between real slices and (a) simulated, (b) translated ones:

  - per-tissue Kolmogorov-Smirnov distance of the normalised intensities inside
    each labelled structure (RV blood, myocardium, LV blood);
  - a Fréchet distance "FD-seg" on features of that same segmentation network:
    the spatial means of the outputs of every encoder level and of the bottom of
    its U-Net (16 + 32 + 64 + 128 + 256 = 496 values for ``jaxsim train``'s
    default ``unet2d``). Inception-v3 weights are not available offline, so this
    is *not* FID; it is comparable only between reports made with the same
    feature network.

All slices go through the segmentation run's preprocessing (pixel size,
percentile normalisation), as at training time.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.io import Database, load_cases
from jaxsim.labels import ACDC, LabelScheme, task_labels
from jaxsim.metrics import frechet_distance, ks_distance

from ._data import Preprocessing, slices_from_cases
from ._loop import dice_per_class, predict_batches

__all__ = [
    "database_slices",
    "label_preservation",
    "real_slices",
    "realism",
    "segmentation_features",
    "tissue_ks",
]


def database_slices(
    path: str | os.PathLike,
    preprocessing: Preprocessing,
    *,
    max_records: int | None = None,
    scheme: LabelScheme = ACDC,
) -> tuple[np.ndarray, np.ndarray]:
    """Every slice of a database's complete records at the network's grid.

    Returns:
        ``(images (N, H, W) float32 normalised, labels (N, H, W) uint8)`` in the
        scheme's classes.
    """
    images, labels = [], []
    with Database(path) as db:
        records = np.flatnonzero(np.asarray(db.complete_flags))
        if max_records is not None:
            records = records[: int(max_records)]
        for r in records:
            image, tissue, geometry = db.record(int(r))
            spacing = tuple(float(s) for s in np.asarray(geometry.spacing))[1:]
            lab = task_labels(np.asarray(tissue), scheme)
            img, lab = preprocessing.volume_slices(image, lab, spacing)
            images.append(np.asarray(img, np.float32))
            labels.append(np.asarray(lab, np.uint8))
    if not images:
        raise ValueError(f"{path} holds no complete records")
    return np.concatenate(images), np.concatenate(labels)


def real_slices(
    folder: str | os.PathLike, preprocessing: Preprocessing, *, spacing=None
) -> tuple[np.ndarray, np.ndarray]:
    """Every slice of a folder of real labelled images (as ``jaxsim train``
    reads them); ``spacing`` ``(sz, sy, sx)`` mm for files that store none."""
    cases = load_cases(folder, spacing=spacing, n_classes=ACDC.n_classes)
    images, labels, _ = slices_from_cases(cases, preprocessing)
    return np.asarray(images, np.float32), np.asarray(labels, np.uint8)


def tissue_ks(
    real: tuple[np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray],
    *,
    scheme: LabelScheme = ACDC,
) -> dict[str, float]:
    """Kolmogorov-Smirnov distance of intensities per labelled structure.

    Args:
        real, other: ``(images, labels)`` of normalised slices.
        scheme: names the classes (background excluded).

    Returns:
        ``{class name: distance in [0, 1]}``; NaN where a side lacks the class.
    """
    out = {}
    for c, name in enumerate(scheme.classes):
        if c == 0:
            continue
        a, b = real[0][real[1] == c], other[0][other[1] == c]
        out[name] = ks_distance(a, b) if a.size and b.size else float("nan")
    return out


def segmentation_features(model, images, *, batch: int = 16) -> np.ndarray:
    """FD-seg features of normalised slices ``(N, H, W)``: the spatial mean of
    each encoder level's and the bottom's output of a :class:`~jaxsim.models.UNet`
    (in evaluation mode); ``(N, sum of channels)`` float64.

    Raises:
        ValueError: the network is not a 2D UNet.
    """
    if not (hasattr(model, "down") and hasattr(model, "bottom")):
        raise ValueError(
            f"segmentation_features needs a 2D UNet (jaxsim train --model unet2d); "
            f"got {type(model).__name__}"
        )

    @jax.jit
    def run(x):
        x = x[..., None]
        feats = []
        for layer in model.down:
            x = layer(x)
            feats.append(jnp.mean(x, axis=(1, 2)))
        feats.append(jnp.mean(model.bottom(x), axis=(1, 2)))
        return jnp.concatenate(feats, axis=-1)

    images = np.asarray(images, np.float32)
    parts = [
        np.asarray(run(images[i : i + batch])) for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts).astype(np.float64)


def label_preservation(
    segmenter, images, labels, *, scheme: LabelScheme = ACDC
) -> dict[str, float]:
    """Dice of a (real-trained) segmentation network's prediction on ``images``
    against ``labels`` (the simulation's own), per class over the whole set, and
    their mean (``"mean"``)."""
    predicted = predict_batches(segmenter, np.asarray(images, np.float32))
    dice = dice_per_class(predicted, labels, scheme.n_classes)
    out = {name: float(d) for name, d in zip(scheme.classes[1:], dice, strict=True)}
    out["mean"] = float(np.nanmean(dice))
    return out


def realism(
    segmenter,
    real: tuple[np.ndarray, np.ndarray],
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
) -> dict:
    """Realism and label preservation of image sets against real slices.

    Args:
        segmenter: a UNet trained on real images, in evaluation mode.
        real: ``(images, labels)`` of real normalised slices.
        sets: named ``(images, labels)``, e.g. ``{"simulated": ..., "translated":
            ...}``.

    Returns:
        ``{"real_slices": n, name: {"slices", "ks": {class: d}, "ks_mean",
        "fd_seg", "dice": {class: d, "mean": d}}}``; the Dice of the real slices
        themselves is under ``"real"`` for reference.
    """
    real_feats = segmentation_features(segmenter, real[0])
    report: dict = {
        "real_slices": int(len(real[0])),
        "real": {"dice": label_preservation(segmenter, *real)},
    }
    for name, (images, labels) in sets.items():
        ks = tissue_ks(real, (images, labels))
        feats = segmentation_features(segmenter, images)
        report[name] = {
            "slices": int(len(images)),
            "ks": ks,
            "ks_mean": float(np.nanmean(list(ks.values()))),
            "fd_seg": frechet_distance(real_feats, feats),
            "dice": label_preservation(segmenter, images, labels),
        }
    return report
