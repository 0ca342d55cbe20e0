"""Image transforms on device: normalisation against NumPy's percentile, in-plane
warps against SciPy's float64 interpolation, the pixel-centre and matrix
conventions on analytic cases, and augmentation invariants (deterministic in its
key, identity when neutral, each intensity transform against a NumPy reference)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import ndimage

from jaxsim.train import (
    Augmentation,
    augment,
    normalize,
    resample_in_plane,
    warp_in_plane,
)

X64 = bool(jax.config.read("jax_enable_x64"))
# float32 images (the warp computes in the image's dtype) against float64
# references, intensities of order 1
ATOL = 2e-5

# every strength neutral and every intensity transform switched on: the identity
NEUTRAL = Augmentation(
    rotation=(0.0, 0.0),
    scale=(1.0, 1.0),
    flip=0.0,
    elastic=(0.0, 0.0),
    gamma=(1.0, 1.0),
    contrast=(1.0, 1.0),
    noise=(0.0, 0.0),
    bias=(0.0, 0.0),
    blur=(0.0, 0.0),
    low_resolution=(1.0, 1.0),
    probability=1.0,
)

# the augmentation's ranges are traced leaves: one compilation per batch shape,
# and every 2D augmentation test uses this one
_augment = jax.jit(augment)
BATCH = (4, 24, 24)


# --------------------------------------------------------------------------- reference
def _coords(matrix, offset, in_shape, out_shape, displacement=None):
    """float64 input coordinates ``(2, H, W)`` read by each output pixel: the
    documented map ``matrix @ (p - c_out) + c_in + offset (+ displacement)``
    with pixel centres at integer indices and ``c = (n - 1) / 2``."""
    h, w = out_shape
    p = np.stack(
        np.meshgrid(
            np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij"
        )
    )
    c_in = np.array([(in_shape[0] - 1) / 2, (in_shape[1] - 1) / 2])
    coords = np.einsum("ij,jhw->ihw", np.asarray(matrix, np.float64), p)
    coords += (c_in + np.asarray(offset, np.float64))[:, None, None]
    if displacement is not None:
        coords = coords + np.asarray(displacement, np.float64)
    return coords


def _sample(plane, coords, order):
    """SciPy interpolation with zeros outside the grid (also between the last
    pixel centre and the border, as the kernel does)."""
    return ndimage.map_coordinates(
        np.asarray(plane, np.float64), coords, order=order, mode="grid-constant"
    )


def _shift(array, dy, dx):
    """``out[r, c] = array[r + dy, c + dx]`` with zeros outside."""
    ny, nx = array.shape[-2:]
    pad = max(abs(dy), abs(dx))
    padded = np.pad(array, [(0, 0)] * (array.ndim - 2) + [(pad, pad)] * 2)
    return padded[..., pad + dy : pad + dy + ny, pad + dx : pad + dx + nx]


def _random(shape, seed, n_labels=4):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    labels = rng.integers(0, n_labels, shape).astype(np.uint8)
    return image, labels


def _disc(shape, radius, centre=None):
    ny, nx = shape
    cy, cx = ((ny - 1) / 2, (nx - 1) / 2) if centre is None else centre
    y, x = np.mgrid[:ny, :nx]
    return np.hypot(y - cy, x - cx) <= radius


def _blocks(n=4, size=24, seed=0):
    """Images of large rectangles, ``label / 3 + 0.1``, and their labels (1..3)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for c in (1, 2, 3):
            y0, x0 = rng.integers(2, size - 10, 2)
            labels[i, y0 : y0 + 8, x0 : x0 + 8] = c
    return labels.astype(np.float32) / 3.0 + 0.1, labels


# --------------------------------------------------------------------------- normalize
@pytest.mark.parametrize("percentile", [99.5, 98.0, 75.0, 100.0])
@pytest.mark.parametrize("spatial", [(37, 41), (3, 13, 17)])
def test_normalize_divides_by_the_percentile(percentile, spatial):
    # p N / 100 is never an integer here, so the percentile is one order statistic
    # (NumPy's inverted-CDF percentile) without any interpolation ambiguity
    rng = np.random.default_rng(1)
    scales = np.array([1.0, 7.0, 0.01]).reshape((3,) + (1,) * len(spatial))
    images = (rng.uniform(0.0, 100.0, (3, *spatial)) * scales).astype(np.float32)
    out = np.asarray(normalize(jnp.asarray(images), percentile=percentile))
    assert out.shape == images.shape and out.dtype == np.float32
    for image, result in zip(images, out, strict=True):
        scale = np.percentile(
            image.astype(np.float64), percentile, method="inverted_cdf"
        )
        np.testing.assert_allclose(result, image / scale, rtol=1e-6)


@pytest.mark.parametrize("percentile", [99.5, 90.0])
def test_normalize_maps_the_percentile_to_one(percentile):
    rng = np.random.default_rng(2)
    images = rng.gamma(2.0, 30.0, (4, 40, 50)).astype(np.float32)
    out = np.asarray(normalize(jnp.asarray(images), percentile=percentile))
    tail = 1.0 - percentile / 100.0
    n = images[0].size
    # (x / scale may round to just below 1 at x == scale)
    for result in out:
        assert np.sum(result > 1.0 + 1e-6) <= tail * n
        assert np.sum(result >= 1.0 - 1e-6) >= tail * n
    # a per-image scale is undone: only contrast, not scanner scale, remains
    scaled = images * np.array([0.5, 3.0, 1e3, 1e-3], np.float32)[:, None, None]
    np.testing.assert_allclose(
        np.asarray(normalize(jnp.asarray(scaled), percentile=percentile)),
        out,
        rtol=1e-5,
    )


def test_normalize_keeps_an_all_zero_image_zero():
    images = np.zeros((2, 9, 11), np.float32)
    images[1] = np.arange(99, dtype=np.float32).reshape(9, 11)
    out = np.asarray(normalize(jnp.asarray(images), percentile=100.0))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1], images[1] / 98.0, rtol=1e-6)


# --------------------------------------------------------------------------- warp
@pytest.mark.parametrize("shape", [(6, 6), (7, 10), (2, 3, 9, 8)])
def test_identity_warp_returns_the_input(shape):
    image, labels = _random(shape, 3)
    out, out_labels = warp_in_plane(
        jnp.asarray(image), jnp.asarray(labels), jnp.eye(2), jnp.zeros(2), shape[-2:]
    )
    assert out.dtype == jnp.float32 and out_labels.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(out), image)
    np.testing.assert_array_equal(np.asarray(out_labels), labels)


@pytest.mark.parametrize("offset", [(2, -3), (-1, 4), (0, 1), (9, 0)])
def test_whole_pixel_offset_shifts_exactly(offset):
    image, labels = _random((2, 8, 9), 4)
    out, out_labels = warp_in_plane(
        jnp.asarray(image),
        jnp.asarray(labels),
        jnp.eye(2),
        jnp.asarray(offset, jnp.float32),
        (8, 9),
    )
    np.testing.assert_array_equal(np.asarray(out), _shift(image, *offset))
    np.testing.assert_array_equal(np.asarray(out_labels), _shift(labels, *offset))


def test_output_grid_is_centred_on_pixel_centres():
    image, labels = _random((9, 10), 5)
    # c_in = (4, 4.5), c_out = (2, 2.5): the centred crop
    out, out_labels = warp_in_plane(
        jnp.asarray(image), jnp.asarray(labels), jnp.eye(2), jnp.zeros(2), (5, 6)
    )
    np.testing.assert_array_equal(np.asarray(out), image[2:7, 2:8])
    np.testing.assert_array_equal(np.asarray(out_labels), labels[2:7, 2:8])
    # 4 x 4 -> 3 x 3: centres 1.5 and 1, so every output pixel lies half-way
    # between four input pixel centres (a corner convention would give a shift)
    small = image[:4, :4]
    out, _ = warp_in_plane(jnp.asarray(small), None, jnp.eye(2), jnp.zeros(2), (3, 3))
    mean4 = (small[:-1, :-1] + small[1:, :-1] + small[:-1, 1:] + small[1:, 1:]) / 4
    np.testing.assert_allclose(np.asarray(out), mean4, rtol=1e-6)


def test_matrix_maps_output_rows_and_columns_to_input():
    image, labels = _random((7, 7), 6)
    im, lab = jnp.asarray(image), jnp.asarray(labels)
    # rows reversed: output row r reads input row n - 1 - r
    out, out_labels = warp_in_plane(
        im, lab, jnp.asarray([[-1.0, 0.0], [0.0, 1.0]]), jnp.zeros(2), (7, 7)
    )
    np.testing.assert_array_equal(np.asarray(out), image[::-1, :])
    np.testing.assert_array_equal(np.asarray(out_labels), labels[::-1, :])
    # [[0, -1], [1, 0]]: output (r, c) reads input (n - 1 - c, r), a clockwise turn
    out, out_labels = warp_in_plane(
        im, lab, jnp.asarray([[0.0, -1.0], [1.0, 0.0]]), jnp.zeros(2), (7, 7)
    )
    np.testing.assert_array_equal(np.asarray(out), np.rot90(image, -1))
    np.testing.assert_array_equal(np.asarray(out_labels), np.rot90(labels, -1))
    # the offset is in input pixels, (row, column)
    matrix = jnp.asarray([[2.0, 0.0], [0.0, 1.0]])
    out, _ = warp_in_plane(im, None, matrix, jnp.asarray([0.0, 1.0]), (3, 5))
    np.testing.assert_array_equal(np.asarray(out), image[1:6:2, 2:7])


def test_affine_warp_matches_scipy():
    image, labels = _random((2, 15, 12), 7)
    rng = np.random.default_rng(8)
    angle = 0.7
    rotation = np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    matrix = rotation @ np.array([[0.8, 0.3], [0.0, 1.3]])
    offset = np.array([0.37, -1.21])
    out_shape = (13, 17)
    displacement = rng.uniform(-1.5, 1.5, (2, *out_shape))
    out, out_labels = warp_in_plane(
        jnp.asarray(image),
        jnp.asarray(labels),
        jnp.asarray(matrix, jnp.float32),
        jnp.asarray(offset, jnp.float32),
        out_shape,
        jnp.asarray(displacement, jnp.float32),
    )
    coords = _coords(matrix, offset, image.shape[-2:], out_shape, displacement)
    assert out.shape == (2, *out_shape) and out_labels.shape == (2, *out_shape)
    # nearest neighbour is ambiguous only at half-integers (float32 coordinates)
    frac = np.abs(coords - np.floor(coords) - 0.5)
    clear = np.all(frac > 1e-4, axis=0)
    for k in range(2):
        np.testing.assert_allclose(
            np.asarray(out[k]), _sample(image[k], coords, 1), atol=ATOL
        )
        expected = _sample(labels[k], coords, 0)
        np.testing.assert_array_equal(np.asarray(out_labels[k])[clear], expected[clear])
    # the warp reaches outside the input: those pixels are 0 / background
    assert np.any(np.asarray(out_labels) == 0) and np.sum(~clear) < 5


def test_constant_image_stays_constant_inside_the_input():
    image = np.full((3, 16, 16), 5.0, np.float32)
    angle = 1.1
    c, s = math.cos(angle), math.sin(angle)
    # a zoom by 2: every output pixel reads within the input, so no edge effects
    matrix = 0.5 * jnp.asarray([[c, -s], [s, c]])
    out, _ = warp_in_plane(jnp.asarray(image), None, matrix, jnp.zeros(2), (16, 16))
    np.testing.assert_allclose(np.asarray(out), 5.0, rtol=1e-6)
    # far outside the input (no input pixel within one pixel) the image is 0
    far, _ = warp_in_plane(
        jnp.asarray(image), None, jnp.eye(2), jnp.asarray([0.0, 20.0]), (16, 16)
    )
    np.testing.assert_array_equal(np.asarray(far), 0.0)


def test_uniform_displacement_equals_an_offset():
    image, labels = _random((10, 12), 9)
    d = np.array([0.6, -2.3], np.float32)
    matrix = jnp.asarray([[0.9, 0.2], [-0.1, 1.1]])
    a = warp_in_plane(
        jnp.asarray(image), jnp.asarray(labels), matrix, jnp.asarray(d), (11, 9)
    )
    field = jnp.broadcast_to(jnp.asarray(d)[:, None, None], (2, 11, 9))
    b = warp_in_plane(
        jnp.asarray(image), jnp.asarray(labels), matrix, jnp.zeros(2), (11, 9), field
    )
    np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b[0]), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))


def test_warp_without_labels_returns_none():
    image, _ = _random((6, 6), 10)
    _, labels = warp_in_plane(
        jnp.asarray(image), None, jnp.eye(2), jnp.zeros(2), (4, 4)
    )
    assert labels is None


@pytest.mark.skipif(not X64, reason="check_grads needs float64")
def test_warp_gradients():
    image, _ = _random((9, 8), 11)
    matrix = jnp.asarray([[0.9, 0.2], [-0.3, 1.1]])

    def f(image, offset):
        return warp_in_plane(image, None, matrix, offset, (7, 6))[0]

    # away from whole-pixel coordinates, where bilinear interpolation has kinks
    offset = jnp.asarray([0.31, -0.27])
    check_grads(f, (jnp.asarray(image, jnp.float64), offset), order=1)


# --------------------------------------------------------------------------- resample
def test_resampling_to_the_same_grid_is_the_identity():
    image, labels = _random((3, 10, 11), 12)
    spacing = (1.25, 1.25)
    out, out_labels = resample_in_plane(
        image, labels, spacing, target_spacing=spacing[0], out_shape=(10, 11)
    )
    np.testing.assert_array_equal(np.asarray(out), image)
    np.testing.assert_array_equal(np.asarray(out_labels), labels)


def test_downsampling_by_two_averages_pixel_pairs():
    image, _ = _random((8, 10), 13)
    # labels constant on the 2 x 2 blocks that merge: nearest neighbour is exact
    coarse = np.random.default_rng(14).integers(0, 4, (4, 5)).astype(np.uint8)
    labels = np.kron(coarse, np.ones((2, 2), np.uint8))
    out, out_labels = resample_in_plane(
        image, labels, (1.0, 1.0), target_spacing=2.0, out_shape=(4, 5)
    )
    blocks = image.astype(np.float64).reshape(4, 2, 5, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(np.asarray(out), blocks, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out_labels), coarse)


def test_anisotropic_pixels_match_scipy():
    image, labels = _random((2, 6, 5), 15)
    out, out_labels = resample_in_plane(
        image, labels, (1.0, 2.0), target_spacing=1.0, out_shape=(8, 12)
    )
    matrix = np.diag([1.0, 0.5])
    coords = _coords(matrix, (0.0, 0.0), (6, 5), (8, 12))
    for k in range(2):
        np.testing.assert_allclose(
            np.asarray(out[k]), _sample(image[k], coords, 1), atol=ATOL
        )
    assert set(np.unique(np.asarray(out_labels))) <= set(np.unique(labels))


def test_field_of_view_is_padded_around_the_centre():
    image, labels = _random((4, 4), 16)
    labels = labels + 1  # no background inside, so the padding is visible
    out, out_labels = resample_in_plane(
        image, labels, (1.5, 1.5), target_spacing=1.5, out_shape=(8, 8)
    )
    expected = np.zeros((8, 8), np.float32)
    expected[2:6, 2:6] = image
    expected_labels = np.zeros((8, 8), np.uint8)
    expected_labels[2:6, 2:6] = labels
    np.testing.assert_array_equal(np.asarray(out), expected)
    np.testing.assert_array_equal(np.asarray(out_labels), expected_labels)


@pytest.mark.parametrize("spacing,target", [(1.25, 2.0), (2.0, 1.25), (0.9, 1.6)])
def test_resampling_preserves_physical_area(spacing, target):
    # a disc of radius 22 mm keeps its area (mm^2) at any pixel size
    n = round(80 / spacing)
    labels = _disc((n, n), 22.0 / spacing).astype(np.uint8) * 3
    m = round(80 / target)
    _, out = resample_in_plane(
        labels.astype(np.float32),
        labels,
        (spacing, spacing),
        target_spacing=target,
        out_shape=(m, m),
    )
    area = np.sum(np.asarray(out) == 3) * target**2
    # rim error: about one pixel's width along the circumference
    assert area == pytest.approx(math.pi * 22.0**2, abs=2 * math.pi * 22.0 * target)
    assert set(np.unique(np.asarray(out))) == {0, 3}


def test_resample_casts_images_to_float32_and_keeps_label_dtype():
    image = np.arange(36, dtype=np.int64).reshape(6, 6)
    labels = (image % 4).astype(np.int32)
    out, out_labels = resample_in_plane(
        image, labels, (1.0, 1.0), target_spacing=1.0, out_shape=(6, 6)
    )
    assert out.dtype == jnp.float32 and out_labels.dtype == jnp.int32
    out, none = resample_in_plane(
        image, None, (1.0, 1.0), target_spacing=1.0, out_shape=(6, 6)
    )
    assert none is None
    np.testing.assert_array_equal(np.asarray(out), image)


# --------------------------------------------------------------------------- augment
def test_neutral_augmentation_is_the_identity():
    images, labels = _blocks(seed=1)
    key = jax.random.key(0)
    # geometry neutral and no intensity transform applied
    off = dataclasses.replace(NEUTRAL, gamma=(0.7, 1.5), noise=(0.1, 0.2))
    off = dataclasses.replace(off, probability=0.0)
    out, out_labels = _augment(key, jnp.asarray(images), jnp.asarray(labels), off)
    np.testing.assert_array_equal(np.asarray(out), images)
    np.testing.assert_array_equal(np.asarray(out_labels), labels)
    # every transform applied with a neutral strength
    out, out_labels = _augment(key, jnp.asarray(images), jnp.asarray(labels), NEUTRAL)
    np.testing.assert_allclose(np.asarray(out), images, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out_labels), labels)


def test_default_augmentation_invariants():
    images, labels = _blocks(seed=2)
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    aug = Augmentation()
    a, la = _augment(jax.random.key(1), images, labels, aug)
    b, lb = _augment(jax.random.key(1), images, labels, aug)
    c, _ = _augment(jax.random.key(2), images, labels, aug)
    assert a.shape == images.shape and la.shape == labels.shape
    assert la.dtype == labels.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert np.all(np.isfinite(np.asarray(a)))
    assert set(np.unique(np.asarray(la))) <= {0, 1, 2, 3}


def test_augment_keeps_the_image_dtype():
    images, labels = _blocks(seed=20)
    out, out_labels = _augment(
        jax.random.key(21), jnp.asarray(images), jnp.asarray(labels), Augmentation()
    )
    assert out.dtype == jnp.float32 and out_labels.dtype == jnp.uint8


def test_each_image_gets_its_own_draw():
    images, labels = _blocks(1, seed=3)
    images = np.repeat(images, BATCH[0], axis=0)
    labels = np.repeat(labels, BATCH[0], axis=0)
    out, out_labels = _augment(
        jax.random.key(4), jnp.asarray(images), jnp.asarray(labels), Augmentation()
    )
    out = np.asarray(out)
    assert not np.allclose(out[0], out[1]) and not np.allclose(out[1], out[2])


def test_geometry_moves_image_and_labels_together():
    images, labels = _blocks(seed=5)
    geometric = dataclasses.replace(Augmentation(), probability=0.0)
    out, out_labels = _augment(
        jax.random.key(6), jnp.asarray(images), jnp.asarray(labels), geometric
    )
    out, out_labels = np.asarray(out), np.asarray(out_labels)
    assert not np.array_equal(out_labels, labels)
    # images encode their labels; bilinear and nearest agree off the block rims
    decoded = np.clip(np.round((out - 0.1) * 3.0), 0, 3)
    inside = out_labels > 0
    assert np.mean(decoded[inside] == out_labels[inside]) > 0.9


def test_flip_mirrors_both_axes():
    images, labels = _blocks(seed=7)
    out, out_labels = _augment(
        jax.random.key(8),
        jnp.asarray(images),
        jnp.asarray(labels),
        dataclasses.replace(NEUTRAL, flip=1.0),
    )
    np.testing.assert_allclose(np.asarray(out), images[:, ::-1, ::-1], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out_labels), labels[:, ::-1, ::-1])


def test_quarter_turn_rotates_about_the_centre():
    images, labels = _blocks(seed=9)
    quarter = (math.pi / 2, math.pi / 2)
    out, out_labels = _augment(
        jax.random.key(10),
        jnp.asarray(images),
        jnp.asarray(labels),
        dataclasses.replace(NEUTRAL, rotation=quarter),
    )
    expected = np.rot90(images, -1, axes=(1, 2))
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(out_labels), np.rot90(labels, -1, axes=(1, 2))
    )


def test_scale_above_one_enlarges_the_anatomy():
    labels = np.stack([_disc(BATCH[1:], 4.5)] * BATCH[0]).astype(np.uint8) * 3
    out, out_labels = _augment(
        jax.random.key(11),
        jnp.asarray(labels, jnp.float32),
        jnp.asarray(labels),
        dataclasses.replace(NEUTRAL, scale=(2.0, 2.0)),
    )
    ratio = np.sum(np.asarray(out_labels) == 3) / np.sum(labels == 3)
    assert ratio == pytest.approx(4.0, rel=0.1)


def _intensity(key, images, **strength):
    """Augment with one intensity transform at a fixed strength."""
    labels = jnp.zeros(images.shape, jnp.uint8)
    aug = dataclasses.replace(NEUTRAL, **strength)
    return np.asarray(_augment(key, jnp.asarray(images), labels, aug)[0])


def test_gamma_and_contrast_match_numpy():
    images, _ = _blocks(seed=12)
    key = jax.random.key(13)
    out = _intensity(key, images, gamma=(2.0, 2.0))
    np.testing.assert_allclose(out, images.astype(np.float64) ** 2, rtol=1e-5)
    x = images.astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    for factor in (0.6, 1.2):
        out = _intensity(key, images, contrast=(factor, factor))
        expected = (x - mean) * factor + mean
        # (kept positive: the gamma step, neutral here, clips negative values)
        assert expected.min() > 0
        np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    "strength", [{"blur": (1.0, 1.0)}, {"low_resolution": (3.0, 3.0)}]
)
def test_blur_matches_a_truncated_gaussian_filter(strength):
    # both blur by sigma = 1 pixel (a pixel 3 times larger: half its extra width)
    images, _ = _random(BATCH, 14)
    out = _intensity(jax.random.key(15), images, **strength)
    for k in range(BATCH[0]):
        expected = ndimage.gaussian_filter(
            images[k].astype(np.float64), 1.0, mode="constant", truncate=4.0
        )
        np.testing.assert_allclose(out[k], expected, atol=ATOL)


def test_noise_has_the_requested_standard_deviation():
    images = np.full(BATCH, 0.5, np.float32)
    out = _intensity(jax.random.key(16), images, noise=(0.1, 0.1))
    residual = out - 0.5
    assert np.std(residual) == pytest.approx(0.1, rel=0.05)
    assert abs(np.mean(residual)) < 0.005
    assert not np.allclose(residual[0], residual[1])


def test_bias_is_a_smooth_bounded_factor():
    images = np.full(BATCH, 0.5, np.float32)
    out = _intensity(jax.random.key(17), images, bias=(0.3, 0.3))
    factor = out / 0.5
    # log factor = 0.3 x a field nominally in [-1, 1]; its cubic upsampling
    # overshoots (by up to 45 % over 200 keys), hence the margin
    assert np.all(np.abs(np.log(factor)) <= 0.3 * 1.5)
    log = np.log(factor)
    span = np.ptp(log, axis=(1, 2))
    assert np.all(span > 0.1)
    # smooth (a 3 x 3 grid upsampled), not pixel noise: neighbours differ by a
    # small part of each image's range
    steps = np.maximum(
        np.abs(np.diff(log, axis=1)).max(axis=(1, 2)),
        np.abs(np.diff(log, axis=2)).max(axis=(1, 2)),
    )
    assert np.all(steps < 0.25 * span)


def test_stacks_are_transformed_the_same_way_for_every_slice():
    images, labels = _blocks(2, seed=18)
    stacks = np.repeat(images[:, None], 3, axis=1)
    stack_labels = np.repeat(labels[:, None], 3, axis=1)
    geometric = dataclasses.replace(Augmentation(), probability=0.0)
    out, out_labels = _augment(
        jax.random.key(19), jnp.asarray(stacks), jnp.asarray(stack_labels), geometric
    )
    out, out_labels = np.asarray(out), np.asarray(out_labels)
    assert out.shape == stacks.shape and out_labels.shape == stack_labels.shape
    assert not np.allclose(out, stacks)
    for z in (1, 2):
        np.testing.assert_array_equal(out[:, z], out[:, 0])
        np.testing.assert_array_equal(out_labels[:, z], out_labels[:, 0])
