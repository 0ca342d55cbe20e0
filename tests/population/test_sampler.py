"""The on-device sampler: shapes, determinism, one compilation, labels equal to the
phantom's own label map, and image contrast equal to the bSSFP kernel's."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from jaxsim.geometry import ImageGeometry
from jaxsim.kernels import bssfp_signal
from jaxsim.labels import ACDC, task_labels
from jaxsim.mr import default_tissue_properties
from jaxsim.phantoms import label_map
from jaxsim.population import SamplerSpec, sample_batch
from jaxsim.population._sampler import _sample

SMALL = SamplerSpec(shape=(48, 48), in_plane_spacing=(4.5, 6.0))
N = 4  # one batch size throughout: each new (n, static layout) compiles anew


def _pick(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


@pytest.fixture(scope="module")
def batch():
    return sample_batch(jax.random.key(0), N, SMALL)


def test_shapes_dtypes_and_ranges(batch):
    assert batch.images.shape == (N, 48, 48) and batch.labels.shape == (N, 48, 48)
    assert batch.labels.dtype == jnp.uint8
    assert batch.affines.shape == (N, 1, 4, 4) and batch.spacing.shape == (N, 3)
    images = np.asarray(batch.images)
    assert np.all(np.isfinite(images)) and images.min() >= 0
    # normalised: the 99.5th percentile is 1
    q = np.quantile(images.reshape(N, -1), 0.995, axis=1, method="higher")
    np.testing.assert_allclose(q, 1.0, rtol=0.02)
    assert set(np.unique(np.asarray(batch.labels)).tolist()) <= {0, 1, 2, 3}
    sp = np.asarray(batch.spacing)
    assert np.all((sp[:, 1] >= 4.5) & (sp[:, 1] <= 6.0)) and np.all(
        sp[:, 1] == sp[:, 2]
    )
    assert np.all((sp[:, 0] >= 6.0) & (sp[:, 0] <= 10.0))
    assert len(np.unique(sp[:, 1])) == N  # drawn per item


def test_same_key_same_batch(batch):
    again = sample_batch(jax.random.key(0), N, SMALL)
    np.testing.assert_array_equal(batch.images, again.images)
    np.testing.assert_array_equal(batch.labels, again.labels)
    other = sample_batch(jax.random.key(1), N, SMALL)
    assert not np.allclose(batch.images, other.images)


def test_labels_are_the_phantoms_label_map_in_the_task_scheme(batch):
    """Independently: the phantom's label_map on each item's own geometry."""
    for i in range(N):
        geometry = ImageGeometry(affine=batch.affines[i, 0], shape=(1, 48, 48))
        tissue = label_map(
            _pick(batch.subjects, i),
            geometry,
            cardiac_phase=batch.cardiac_phase[i],
            supersample=SMALL.supersample,
        )
        want = task_labels(np.asarray(tissue[0]), ACDC)
        agree = np.mean(want == np.asarray(batch.labels[i]))
        assert agree >= 0.999, (i, agree)
    assert np.asarray(batch.labels > 0).any()


@pytest.mark.integration  # compiles the sampler for a second layout
def test_contrast_is_the_bssfp_kernels():
    """Point ranges (mean tissue, fixed sequence, no noise, B0 or bias, one coil):
    the interiors of LV blood and myocardium have the kernel's signal ratio."""
    tr, te, flip = 3.1e-3, 1.55e-3, math.radians(60.0)
    spec = SMALL.replace(
        tissue_spread=(0.0, 0.0),
        tr=(tr, tr),
        te_fraction=(te / tr, te / tr),
        flip=(flip, flip),
        snr=(1e7, 1e7),
        b0_std=(0.0, 0.0),
        bias_std=(0.0, 0.0),
        active_coils=(1.0, 1.0),
        n_coils=1,
        slice_position=(0.4, 0.5),
        tilt=(0.0, 0.0),
        in_plane_spacing=(2.0, 2.0),
    )
    b = sample_batch(jax.random.key(3), N, spec)
    p = default_tissue_properties(1.5)
    s = np.abs(np.asarray(bssfp_signal(p.pd, p.t1, p.t2, tr, te, flip))).astype(float)
    lv, myo = s[1], s[3]  # TISSUES: lv_blood 1, lv_myocardium 3
    for i in range(N):
        image, labels = np.asarray(b.images[i]), np.asarray(b.labels[i])
        inner_lv = binary_erosion(labels == 3, iterations=2)
        inner_myo = binary_erosion(labels == 2, iterations=1)
        assert inner_lv.sum() > 10 and inner_myo.sum() > 5
        ratio = np.median(image[inner_lv]) / np.median(image[inner_myo])
        np.testing.assert_allclose(ratio, lv / myo, rtol=0.03)


def test_ranges_are_traced_compiled_once():
    before = _sample._cache_size()
    for lo in (6.0, 7.0, 8.0):
        spec = SMALL.replace(slice_thickness=(lo, lo + 1.0), snr=(lo, 2 * lo))
        b = sample_batch(jax.random.key(2), N, spec)
        assert np.all(np.asarray(b.spacing)[:, 0] >= lo)
    assert _sample._cache_size() - before <= 1


@pytest.mark.integration  # compiles the sampler for 3D stacks
def test_stacks():
    spec = SMALL.replace(shape=(3, 32, 32), stack_jitter=(0.0, 0.0))
    b = sample_batch(jax.random.key(4), 2, spec)
    assert b.images.shape == (2, 3, 32, 32) and b.affines.shape == (2, 3, 4, 4)
    a = np.asarray(b.affines[0])
    # slices one slice-thickness apart along the common normal, same in-plane axes
    step = a[1, :3, 3] - a[0, :3, 3]
    normal = a[0, :3, 2] / np.linalg.norm(a[0, :3, 2])
    np.testing.assert_allclose(np.linalg.norm(step), b.spacing[0, 0], rtol=1e-4)
    np.testing.assert_allclose(abs(step @ normal), b.spacing[0, 0], rtol=1e-4)
    np.testing.assert_allclose(a[1, :3, :2], a[0, :3, :2], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(4,)), "shape"),
        (dict(snr=(10.0, 5.0)), "snr"),
        (dict(snr=(-1.0, 5.0)), "snr"),
        (dict(active_coils=(1.0, 9.0)), "active_coils"),
        (dict(te_fraction=(0.5, 1.5)), "te_fraction"),
        (dict(cardiac_phase=(0.0, float("nan"))), "cardiac_phase"),
        (dict(n_coils=0), "n_coils"),
    ],
)
def test_invalid_specs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_batch(jax.random.key(0), 2, SamplerSpec(**kwargs))


def test_invalid_batch_size_raises():
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample_batch(jax.random.key(0), 0, SMALL)
