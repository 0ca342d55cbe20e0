"""Inference: Gaussian window weights against their formula, window placement
invariants, connected components against SciPy, and whole volumes segmented by
"oracle" networks whose answer is known (a threshold of the intensity, or a fixed
map of the window position blended by a float64 reference)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxsim.train import Preprocessing, largest_components, segment_volume
from jaxsim.train._infer import gaussian_weights, window_starts

SPACING = (8.0, 1.5, 1.5)  # (sz, sy, sx) mm of the test volumes
# one intensity per class, after normalisation; the oracle thresholds between them
TABLE = np.array([0.1, 0.375, 0.625, 1.0])
THRESHOLDS = (0.25, 0.5, 0.75)


# --------------------------------------------------------------------------- reference
def _gaussian(shape, sigma_scale=0.125):
    """float64 Gaussian of sigma = sigma_scale x side per axis, peak 1 (nnU-Net)."""
    w = np.ones(shape)
    for axis, n in enumerate(shape):
        r = np.arange(n) - (n - 1) / 2
        g = np.exp(-0.5 * (r / (sigma_scale * n)) ** 2)
        w = w * g.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return w / w.max()


def _largest(labels, n_classes, rank):
    """Largest component of each class by ``scipy.ndimage.label`` with face
    connectivity; ties go to the component met first in raster order."""
    structure = ndimage.generate_binary_structure(rank, 1)
    out = labels.copy()
    for c in range(1, n_classes):
        comp, n = ndimage.label(labels == c, structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        out[(comp > 0) & (comp != np.argmax(sizes))] = 0
    return out


def _blend(probs, size, shape, weights):
    """float64 blend of one window's prediction ``probs (H, W, C)`` (the same in
    every window) over the windows that cover ``size``, weighted per pixel."""
    (h, w), (hr, wr) = shape, size
    ph, pw = max(h, hr), max(w, wr)
    total = np.zeros((ph, pw, probs.shape[-1]))
    norm = np.zeros((ph, pw, 1))
    for y in window_starts(ph, h):
        for x in window_starts(pw, w):
            total[y : y + h, x : x + w] += probs * weights[..., None]
            norm[y : y + h, x : x + w] += weights[..., None]
    return (total / norm)[:hr, :wr]


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def oracle(batch):
    """A perfect network for the phantom: the class is a threshold of intensity."""
    x = batch[..., 0]
    classes = sum((x > t).astype(jnp.int32) for t in THRESHOLDS)
    return 30.0 * jax.nn.one_hot(classes, 4)


def _phantom():
    """Two 60 x 70 slices of rectangles, edges at odd and even pixels, and the
    class of each pixel; the brightest class fills far more than 0.5 % of each
    slice, so normalisation maps it to 1 and the others to ``TABLE``."""
    labels = np.zeros((2, 60, 70), np.uint8)
    labels[0, 5:30, 5:41] = 1
    labels[0, 30:55, 10:35] = 2
    labels[0, 15:50, 43:65] = 3
    labels[1, 8:27, 30:66] = 3
    labels[1, 33:57, 4:37] = 1
    labels[1, 40:52, 45:60] = 2
    return (250.0 * TABLE[labels]).astype(np.float32), labels


def _interior(labels, margin):
    """Pixels whose in-plane neighbourhood of ``margin`` pixels has one class."""
    size = (1, 2 * margin + 1, 2 * margin + 1)
    return ndimage.maximum_filter(labels, size) == ndimage.minimum_filter(labels, size)


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize("shape", [(32, 32), (48, 40), (7, 12), (9, 9, 16)])
def test_gaussian_weights_match_the_formula(shape):
    w = gaussian_weights(shape)
    assert w.shape == shape and w.dtype == np.float32
    np.testing.assert_allclose(w, _gaussian(shape), rtol=1e-6, atol=1e-12)
    assert w.max() == 1.0 and np.all(w > 0)
    for axis in range(len(shape)):
        np.testing.assert_array_equal(w, np.flip(w, axis=axis))


def test_gaussian_weights_sigma_scale():
    np.testing.assert_allclose(
        gaussian_weights((40, 24), sigma_scale=0.25),
        _gaussian((40, 24), sigma_scale=0.25),
        rtol=1e-6,
    )


def test_gaussian_weights_stay_positive_for_narrow_gaussians():
    assert np.all(gaussian_weights((64, 64), sigma_scale=0.01) > 0)


# --------------------------------------------------------------------------- windows
@pytest.mark.parametrize(
    "size,window,overlap",
    [
        (100, 32, 0.5),
        (33, 32, 0.5),
        (64, 32, 0.5),
        (65, 32, 0.5),
        (200, 48, 0.25),
        (97, 16, 0.75),
        (70, 32, 0.0),
        (40, 8, 0.875),
        (50, 10, 0.9),
    ],
)
def test_windows_cover_the_axis_with_the_requested_overlap(size, window, overlap):
    starts = window_starts(size, window, overlap)
    assert starts[0] == 0 and starts[-1] + window == size
    assert all(isinstance(s, int) for s in starts)
    steps = np.diff(starts)
    assert np.all(steps >= 1)
    assert np.all(window - steps >= overlap * window - 1e-9)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()


@pytest.mark.parametrize("size,window,overlap", [(40, 8, 0.9), (50, 10, 0.99)])
def test_overlap_beyond_one_pixel_steps_gives_every_start(size, window, overlap):
    # no two distinct windows overlap by more than window - 1 pixels
    assert window_starts(size, window, overlap) == list(range(size - window + 1))


@pytest.mark.parametrize("size,window", [(32, 32), (10, 32), (1, 8)])
def test_one_window_when_it_fits(size, window):
    assert window_starts(size, window) == [0]


# --------------------------------------------------------------------------- components
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(4, 10, 12), (16, 20)])
def test_largest_components_match_scipy(seed, shape):
    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=shape, p=[0.5, 0.2, 0.2, 0.1]).astype(np.uint8)
    out = largest_components(labels, 4)
    assert out.dtype == np.uint8 and out.shape == shape
    expected = _largest(labels, 4, len(shape))
    # many components per class, so the test can tell the largest from the rest
    assert np.sum(expected != labels) > 5
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(largest_components(out, 4), out)


def test_components_touching_only_diagonally_are_separate():
    labels = np.zeros((3, 5, 5), np.uint8)
    labels[0, 0, 0:2] = 1  # two voxels sharing a face: the largest
    labels[1, 1, 2] = 1  # an edge away from (0, 0, 1): a separate component
    labels[2, 2, 3] = 1  # a corner away from (1, 1, 2): a separate component
    labels[2, 4, 4] = 2
    out = largest_components(labels, 4)
    expected = np.zeros_like(labels)
    expected[0, 0, 0:2] = 1
    expected[2, 4, 4] = 2
    np.testing.assert_array_equal(out, expected)


def test_largest_components_leave_classes_outside_the_count():
    labels = np.zeros((6, 6), np.uint8)
    labels[0, 0] = labels[5, 5] = 3
    labels[2:4, 2:4] = 1
    # class 3 is not among 1..n_classes - 1 = 1..2
    np.testing.assert_array_equal(largest_components(labels, 3), labels)


# --------------------------------------------------------------------------- volumes
def test_phantom_intensities_threshold_to_their_classes():
    assert np.array_equal(np.digitize(TABLE, THRESHOLDS), [0, 1, 2, 3])
    image, labels = _phantom()
    for k in range(2):
        assert np.mean(labels[k] == 3) > 0.05


@pytest.mark.parametrize("tta", [False, True])
def test_segment_volume_at_the_network_pixel_size_is_exact(tta):
    # 60 x 70 pixels in 32 x 32 windows: 3 x 4 windows blend; nothing is resampled
    image, labels = _phantom()
    out = segment_volume(
        oracle, image, SPACING, Preprocessing(shape=(32, 32), spacing=1.5), tta=tta
    )
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("spacing,tta", [(3.0, True), (2.5, False)])
def test_segment_volume_resampled_is_exact_off_the_edges(spacing, tta):
    # at 3 mm the slice fits one padded window; at 2.5 mm (36 x 42) four blend
    image, labels = _phantom()
    prep = Preprocessing(shape=(32, 32), spacing=spacing)
    out = segment_volume(oracle, image, SPACING, prep, tta=tta)
    assert out.shape == image.shape and out.dtype == np.uint8
    # the resampling blur only reaches the pixels next to an edge
    inside = _interior(labels, 1)
    assert np.mean(inside) > 0.85
    np.testing.assert_array_equal(out[inside], labels[inside])
    assert np.any(out != labels)  # (so the test does see the resampling)


def test_segment_volume_with_anisotropic_pixels():
    # 1.5 x 3 mm pixels (every second column of the phantom) seen at 1.5 mm
    image, labels = _phantom()
    image, labels = image[:, :, ::2], labels[:, :, ::2]
    prep = Preprocessing(shape=(32, 32), spacing=1.5)
    out = segment_volume(oracle, image, (8.0, 1.5, 3.0), prep, tta=False)
    assert out.shape == (2, 60, 35)
    inside = _interior(labels, 1)
    np.testing.assert_array_equal(out[inside], labels[inside])


def test_segment_volume_accepts_deep_supervision_outputs():
    image, labels = _phantom()
    prep = Preprocessing(shape=(32, 32), spacing=1.5)

    def model(batch):
        return oracle(batch), [jnp.zeros_like(oracle(batch))]

    np.testing.assert_array_equal(
        segment_volume(model, image, SPACING, prep, tta=False), labels
    )


def test_segment_volume_postprocess_keeps_largest_components():
    image, labels = _phantom()
    labels[0, 53:57, 58:62] = 3  # an island apart from the class-3 block
    image = (250.0 * TABLE[labels]).astype(np.float32)
    prep = Preprocessing(shape=(32, 32), spacing=1.5)
    raw = segment_volume(oracle, image, SPACING, prep, tta=False)
    np.testing.assert_array_equal(raw, labels)
    kept = segment_volume(oracle, image, SPACING, prep, tta=False, postprocess=True)
    expected = _largest(labels, 4, 3)
    assert np.all(expected[0, 53:57, 58:62] == 0)
    np.testing.assert_array_equal(kept, expected)


@pytest.mark.parametrize("tta", [False, True])
def test_windows_blend_with_gaussian_weights(tta):
    # a network whose output depends only on the position in its window: the
    # labels are the arg-max of the weighted blend of the windows covering a pixel
    logits = np.random.default_rng(0).normal(0.0, 2.0, (32, 32, 4))

    def model(batch):
        return jnp.broadcast_to(
            jnp.asarray(logits, jnp.float32), (*batch.shape[:-1], 4)
        )

    image = np.random.default_rng(1).uniform(1.0, 2.0, (1, 60, 70))
    prep = Preprocessing(shape=(32, 32), spacing=1.5)
    out = segment_volume(model, image, SPACING, prep, tta=tta)[0]
    probs = _softmax(logits)
    if tta:
        # flipping the input leaves this output unchanged; flipping back does not
        probs = (probs + probs[::-1] + probs[:, ::-1] + probs[::-1, ::-1]) / 4.0
    blend = _blend(probs, (60, 70), (32, 32), _gaussian((32, 32)))
    top = np.sort(blend, axis=-1)
    clear = top[..., -1] - top[..., -2] > 1e-4
    np.testing.assert_array_equal(out[clear], np.argmax(blend, axis=-1)[clear])
    assert np.mean(clear) > 0.99
    # the weights matter: a plain average of the windows labels differently
    flat = _blend(probs, (60, 70), (32, 32), np.ones((32, 32)))
    assert np.sum(np.argmax(flat, axis=-1) != np.argmax(blend, axis=-1)) > 20


def test_segment_volume_requires_a_volume():
    prep = Preprocessing(shape=(32, 32), spacing=1.5)
    with pytest.raises(ValueError, match=r"image must be \(nz, ny, nx\)"):
        segment_volume(oracle, np.zeros((60, 70)), SPACING, prep)
