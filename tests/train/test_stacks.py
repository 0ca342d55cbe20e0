"""3D networks: stacks of consecutive slices from real cases and databases,
whole-stack inference with 3D windows, and the layout checks of a 3D run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.io import LabelledCase
from jaxsim.train import (
    Preprocessing,
    TrainConfig,
    input_layout,
    segment_volume,
    slices_from_cases,
)

THRESHOLDS = (0.25, 0.5, 0.75)
LEVELS = np.array([0.1, 0.4, 0.6, 0.9])


def oracle(batch):
    """A perfect 'network' for blocks whose class is a threshold of intensity;
    any spatial rank (2D or 3D windows)."""
    x = batch[..., 0]
    classes = sum((x > t).astype(jnp.int32) for t in THRESHOLDS)
    return 30.0 * jax.nn.one_hot(classes, 4)


def _blocks(nz=5, ny=40, nx=48):
    """Piecewise-constant classes per slice; every slice holds the brightest
    class, so per-slice normalisation keeps the levels."""
    labels = np.zeros((nz, ny, nx), np.uint8)
    for k in range(nz):
        labels[k, 4:20, 4 + k : 24 + k] = 1
        labels[k, 22:36, 10:30] = 2
        labels[k, 8:30, 30:44] = 3
    return (LEVELS[labels] * 200.0).astype(np.float32), labels


def _case(name, image, labels, spacing=(8.0, 1.5, 1.5)):
    from jaxsim.geometry import ImageGeometry

    geometry = ImageGeometry.axis_aligned(shape=image.shape, spacing=spacing)
    return LabelledCase(
        name=name, image=image, labels=labels, geometry=geometry, spacing=spacing
    )


@pytest.mark.parametrize("tta", [False, True])
def test_whole_stack_inference_is_exact_at_the_network_grid(tta):
    image, labels = _blocks()
    # 3 slices per window over 5 slices, 32 x 32 windows over 40 x 48 pixels
    prep = Preprocessing(shape=(32, 32), spacing=1.5, slices=3)
    out = segment_volume(oracle, image, (8.0, 1.5, 1.5), prep, tta=tta)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


def test_stack_shorter_than_the_window_is_padded():
    image, labels = _blocks(nz=2)
    prep = Preprocessing(shape=(32, 32), spacing=1.5, slices=4)
    out = segment_volume(oracle, image, (8.0, 1.5, 1.5), prep, tta=False)
    np.testing.assert_array_equal(out, labels)


def test_stacks_from_cases_are_consecutive_slices():
    image, labels = _blocks(nz=5)
    short_image, short_labels = _blocks(nz=2)
    cases = [_case("a", image, labels), _case("b", short_image, short_labels)]
    prep = Preprocessing(shape=(40, 48), spacing=1.5, slices=3)
    images, stacks, names = slices_from_cases(cases, prep)
    # 5 slices give 3 windows of 3; 2 slices give one window, padded with a
    # background slice
    assert images.shape == stacks.shape == (4, 3, 40, 48)
    assert names == ["a", "a", "a", "b"]
    for s in range(3):
        np.testing.assert_array_equal(stacks[s], labels[s : s + 3])
    np.testing.assert_array_equal(stacks[3, :2], short_labels)
    assert not stacks[3, 2].any() and not images[3, 2].any()
    # per-slice normalisation: each slice's 99.5th percentile is 1
    assert np.allclose(images[0].reshape(3, -1).max(axis=1), 1.0)


def test_layout_of_2d_and_3d_runs():
    assert input_layout(TrainConfig(model="unet3d", shape=(96, 96))) == (
        (8, 96, 96),
        3,
    )
    assert input_layout(TrainConfig(model="unet3d", shape=(4, 64, 64))) == (
        (4, 64, 64),
        3,
    )
    assert input_layout(TrainConfig(shape=(64, 64))) == ((64, 64), 2)
    with pytest.raises(ValueError, match="2D network"):
        input_layout(TrainConfig(model="unet2d", shape=(4, 64, 64)))
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        TrainConfig(shape=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="slices"):
        Preprocessing(slices=0)
