"""Inference: sliding windows, test-time flips, connected components, and labels
back on the input's own grid.

A 2D network segments a volume slice by slice: each slice is resampled to the
network's pixel size (the whole field of view, not a crop), normalised as in
training, covered by overlapping windows of the network's input size whose class
probabilities are blended with Gaussian weights (as nnU-Net does: the centre of a
window is trusted more than its rim), optionally averaged with the predictions
of the flipped slice, and the probabilities are resampled back to the input
pixels before the arg-max, so the labels lie on the input grid. A 3D network sees
the resampled volume through windows of ``slices`` consecutive slices as well,
blended with 3D Gaussian weights.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._data import Preprocessing
from ._transforms import normalize, warp_in_plane

__all__ = [
    "gaussian_weights",
    "window_starts",
    "segment_volume",
    "largest_components",
]


def gaussian_weights(shape, sigma_scale: float = 0.125) -> np.ndarray:
    """Gaussian importance of a window's pixels (sigma = ``sigma_scale`` times
    the side, as nnU-Net), normalised to a maximum of 1 and floored above 0."""
    axes = [np.arange(n) - (n - 1) / 2 for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    w = np.exp(
        -0.5
        * sum((g / (sigma_scale * n)) ** 2 for g, n in zip(grids, shape, strict=True))
    )
    w = (w / w.max()).astype(np.float32)
    # floor in float32: a float64 floor can round to 0 in the cast
    return np.maximum(w, w[w > 0].min())


def window_starts(size: int, window: int, overlap: float = 0.5) -> list[int]:
    """Start offsets of windows covering ``size`` pixels with at least the given
    fractional overlap (the last window ends at the border)."""
    if size <= window:
        return [0]
    step = max(1, int(window * (1.0 - overlap)))
    n = math.ceil((size - window) / step) + 1
    return [round(i * (size - window) / (n - 1)) for i in range(n)]


def _probabilities(model, image_hw, preprocessing: Preprocessing, n_classes, tta):
    """Blended class probabilities ``(C, Hr, Wr)`` of one resampled slice."""
    h, w = preprocessing.shape
    hr, wr = image_hw.shape
    ph, pw = max(h, hr), max(w, wr)
    padded = jnp.zeros((ph, pw), image_hw.dtype).at[:hr, :wr].set(image_hw)
    weights = jnp.asarray(gaussian_weights((h, w)))
    windows, origins = [], []
    for y in window_starts(ph, h):
        for x in window_starts(pw, w):
            windows.append(padded[y : y + h, x : x + w])
            origins.append((y, x))
    probs = _window_probabilities(model, jnp.stack(windows)[..., None], tta)
    total = jnp.zeros((ph, pw, n_classes))
    norm = jnp.zeros((ph, pw, 1))
    for (y, x), p in zip(origins, probs, strict=True):
        total = total.at[y : y + h, x : x + w].add(p * weights[..., None])
        norm = norm.at[y : y + h, x : x + w].add(weights[..., None])
    return jnp.moveaxis((total / norm)[:hr, :wr], -1, 0)


def _probabilities_3d(model, volume, preprocessing: Preprocessing, n_classes, tta):
    """Blended class probabilities ``(C, nz, Hr, Wr)`` of a resampled stack by a 3D
    network: windows of ``(slices, H, W)`` with Gaussian weights in 3D."""
    d, (h, w) = preprocessing.slices, preprocessing.shape
    nz, hr, wr = volume.shape
    pz, ph, pw = max(d, nz), max(h, hr), max(w, wr)
    padded = jnp.zeros((pz, ph, pw), volume.dtype).at[:nz, :hr, :wr].set(volume)
    weights = jnp.asarray(gaussian_weights((d, h, w)))[..., None]
    origins = [
        (z, y, x)
        for z in window_starts(pz, d)
        for y in window_starts(ph, h)
        for x in window_starts(pw, w)
    ]
    total = jnp.zeros((pz, ph, pw, n_classes))
    norm = jnp.zeros((pz, ph, pw, 1))
    for start in range(0, len(origins), 4):  # a few windows at a time
        chunk = origins[start : start + 4]
        batch = jnp.stack(
            [padded[z : z + d, y : y + h, x : x + w] for z, y, x in chunk]
        )[..., None]
        probs = _window_probabilities(model, batch, tta)
        for (z, y, x), p in zip(chunk, probs, strict=True):
            total = total.at[z : z + d, y : y + h, x : x + w].add(p * weights)
            norm = norm.at[z : z + d, y : y + h, x : x + w].add(weights)
    return jnp.moveaxis((total / norm)[:nz, :hr, :wr], -1, 0)


def _window_probabilities(model, batch, tta):
    """Softmax of a batch of windows ``(B, *spatial, 1)``, averaged with the
    predictions of the windows flipped along each in-plane axis and both."""
    probs = _softmax(model, batch)
    if not tta:
        return probs
    y, x = batch.ndim - 3, batch.ndim - 2  # the in-plane axes
    for axes in ((y,), (x,), (y, x)):
        flipped = _softmax(model, jnp.flip(batch, axis=axes))
        probs = probs + jnp.flip(flipped, axis=axes)
    return probs / 4.0


def _softmax(model, batch):
    out = model(batch)
    logits = out[0] if isinstance(out, tuple | list) else out
    return jax.nn.softmax(logits, axis=-1)


def segment_volume(
    model,
    image,
    spacing,
    preprocessing: Preprocessing,
    *,
    n_classes: int = 4,
    tta: bool = True,
    postprocess: bool = False,
) -> np.ndarray:
    """Labels of a volume ``(nz, ny, nx)`` on the input grid, by a 2D network
    slice by slice or by a 3D network (``preprocessing.slices``) over windows of
    consecutive slices.

    Args:
        model: the network in evaluation mode (``(B, H, W, 1) -> (B, H, W, C)``,
            or ``(B, D, H, W, 1) -> (B, D, H, W, C)`` in 3D).
        image: ``(nz, ny, nx)`` intensities.
        spacing: ``(sz, sy, sx)`` mm of the input.
        preprocessing: the network's :class:`Preprocessing` (from its run).
        n_classes: classes of the network's output.
        tta: average with the predictions of the flipped slices.
        postprocess: keep only the largest connected component of each class.

    Returns:
        ``(nz, ny, nx)`` uint8 labels.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be (nz, ny, nx); got shape {image.shape}")
    _, ny, nx = image.shape
    sy, sx = (float(s) for s in spacing[1:])
    t = preprocessing.spacing
    hr = max(1, round(ny * sy / t))
    wr = max(1, round(nx * sx / t))
    # grid of the resampled slice: same centre, pixels of t mm
    to_input = jnp.asarray([[t / sy, 0.0], [0.0, t / sx]])
    to_target = jnp.asarray([[(sy / t), 0.0], [0.0, (sx / t)]])
    resampled, _ = warp_in_plane(
        jnp.asarray(image), None, to_input, jnp.zeros(2), (hr, wr)
    )
    resampled = normalize(resampled, percentile=preprocessing.percentile)
    if preprocessing.slices is not None:  # a 3D network: the whole stack
        probs = _probabilities_3d(model, resampled, preprocessing, n_classes, tta)
        back, _ = warp_in_plane(probs, None, to_target, jnp.zeros(2), (ny, nx))
        out = np.asarray(jnp.argmax(back, axis=0), np.uint8)
        return largest_components(out, n_classes) if postprocess else out
    labels = []
    for k in range(image.shape[0]):
        probs = _probabilities(model, resampled[k], preprocessing, n_classes, tta)
        back, _ = warp_in_plane(probs, None, to_target, jnp.zeros(2), (ny, nx))
        labels.append(np.asarray(jnp.argmax(back, axis=0), np.uint8))
    out = np.stack(labels)
    return largest_components(out, n_classes) if postprocess else out


def largest_components(labels, n_classes: int) -> np.ndarray:
    """Keep, for each class ``1..n_classes-1``, its largest 6-connected component
    (other voxels of the class become background)."""
    labels = np.asarray(labels)
    out = labels.copy()
    for c in range(1, n_classes):
        mask = labels == c
        if not mask.any():
            continue
        comp = np.asarray(_components(jnp.asarray(mask)))
        ids, counts = np.unique(comp[mask], return_counts=True)
        keep = ids[np.argmax(counts)]
        out[mask & (comp != keep)] = 0
    return out


@jax.jit
def _components(mask):
    """6-connected (4 in 2D) component ids of a boolean volume: every voxel takes
    the smallest flat index of its component (min-label propagation)."""
    size = mask.size
    ids = jnp.where(mask, jnp.arange(size).reshape(mask.shape), size)

    def neighbours_min(x):
        out = x
        for axis in range(x.ndim):
            fill = jnp.full_like(jnp.take(x, jnp.arange(1), axis=axis), size)
            lo = jnp.concatenate(
                [fill, jax.lax.slice_in_dim(x, 0, x.shape[axis] - 1, axis=axis)], axis
            )
            hi = jnp.concatenate(
                [jax.lax.slice_in_dim(x, 1, x.shape[axis], axis=axis), fill], axis
            )
            out = jnp.minimum(out, jnp.minimum(lo, hi))
        return jnp.where(mask, out, size)

    def cond(state):
        return state[1]

    def body(state):
        x, _ = state
        y = neighbours_min(x)
        return y, jnp.any(y != x)

    ids, _ = jax.lax.while_loop(cond, body, (ids, jnp.asarray(True)))
    return ids
