"""Training data sources: preprocessing validation, slices of real cases against a
hand-resampled reference, batches of stored slices, the data specification, and
one simulated batch."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from jaxsim.geometry import ImageGeometry
from jaxsim.io import LabelledCase, save_nifti
from jaxsim.train import (
    Preprocessing,
    SimulatedData,
    SliceData,
    open_data,
    slices_from_cases,
)

X64 = bool(jax.config.read("jax_enable_x64"))


def _case(name, shape, spacing, seed):
    """A case whose labels are constant on 2 x 2 in-plane blocks (so halving the
    resolution keeps them exactly) over a positive image."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    coarse = rng.integers(0, 4, (nz, ny // 2, nx // 2)).astype(np.uint8)
    labels = np.kron(coarse, np.ones((1, 2, 2), np.uint8))
    image = rng.uniform(10.0, 500.0, shape).astype(np.float32)
    geometry = ImageGeometry.axis_aligned(shape=shape, spacing=spacing)
    return LabelledCase(name, image, labels, geometry, spacing)


def _halved(case, out, top_left):
    """float64 reference of a case at twice its pixel size inside an ``out``
    field of view: means of 2 x 2 pixel blocks placed at ``top_left``, zero
    around; divided by each slice's maximum (percentile 100)."""
    nz, ny, nx = case.image.shape
    blocks = case.image.astype(np.float64).reshape(nz, ny // 2, 2, nx // 2, 2)
    y, x = top_left
    image = np.zeros((nz, *out))
    labels = np.zeros((nz, *out), np.uint8)
    image[:, y : y + ny // 2, x : x + nx // 2] = blocks.mean(axis=(2, 4))
    labels[:, y : y + ny // 2, x : x + nx // 2] = case.labels[:, ::2, ::2]
    return image / image.max(axis=(1, 2), keepdims=True), labels


# --------------------------------------------------------------------------- prep
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"shape": (4, 32)}, "shape must be (H, W) with sides >= 8; got (4, 32)"),
        ({"shape": (32, 7)}, "got (32, 7)"),
        ({"shape": (32,)}, "shape must be (H, W)"),
        ({"shape": (16, 16, 16)}, "shape must be (H, W)"),
        ({"spacing": 0.0}, "spacing must be > 0 mm; got 0.0"),
        ({"spacing": -1.5}, "spacing must be > 0 mm; got -1.5"),
        ({"spacing": float("nan")}, "spacing must be > 0 mm; got nan"),
        ({"percentile": 50.0}, "percentile must lie in (50, 100]; got 50.0"),
        ({"percentile": 100.5}, "percentile must lie in (50, 100]; got 100.5"),
        ({"percentile": 10.0}, "got 10.0"),
    ],
)
def test_invalid_preprocessing_raises(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        Preprocessing(**kwargs)


def test_preprocessing_bounds_and_shape_coercion():
    prep = Preprocessing(shape=[32.0, 40], spacing=0.5, percentile=100.0)
    assert prep.shape == (32, 40) and all(type(n) is int for n in prep.shape)
    assert Preprocessing(shape=(8, 8), percentile=50.001).shape == (8, 8)


def test_volume_slices_at_the_network_grid_only_normalise():
    case = _case("x", (2, 12, 10), (8.0, 1.25, 1.25), 0)
    prep = Preprocessing(shape=(12, 10), spacing=1.25, percentile=100.0)
    image, labels = prep.volume_slices(case.image, case.labels, (1.25, 1.25))
    x = case.image.astype(np.float64)
    np.testing.assert_allclose(
        np.asarray(image), x / x.max(axis=(1, 2), keepdims=True), rtol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(labels), case.labels)
    image, none = prep.volume_slices(case.image, None, (1.25, 1.25))
    assert none is None and image.shape == (2, 12, 10)


# --------------------------------------------------------------------------- slices
def test_slices_from_cases_resample_each_case():
    a = _case("a", (2, 20, 24), (10.0, 1.25, 1.25), 1)
    b = _case("b", (3, 16, 16), (8.0, 2.5, 2.5), 2)
    prep = Preprocessing(shape=(16, 16), spacing=2.5, percentile=100.0)
    images, labels, names = slices_from_cases([a, b], prep)
    assert images.shape == (5, 16, 16) and labels.shape == (5, 16, 16)
    assert images.dtype == np.float32 and labels.dtype == np.uint8
    assert names == ["a", "a", "b", "b", "b"]
    # a: 20 x 24 pixels of 1.25 mm are 10 x 12 of 2.5 mm; input centre (9.5, 11.5)
    # on output centre (7.5, 7.5), so output pixel p reads 2 p - (5.5, 3.5): the
    # block of input pixels 2 p - 6 and 2 p - 5 (rows), 2 p - 4 and 2 p - 3 (cols)
    expected, expected_labels = _halved(a, (16, 16), (3, 2))
    np.testing.assert_allclose(images[:2], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(labels[:2], expected_labels)
    # b is already on the network's grid
    x = b.image.astype(np.float64)
    np.testing.assert_allclose(
        images[2:], x / x.max(axis=(1, 2), keepdims=True), rtol=1e-6
    )
    np.testing.assert_array_equal(labels[2:], b.labels)


def _stored(n=12, seed=3):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, (n, 8, 9)).astype(np.float32)
    labels = rng.integers(0, 4, (n, 8, 9)).astype(np.uint8)
    return images, labels


def test_slice_data_batches_are_stored_pairs_chosen_by_the_key():
    images, labels = _stored()
    names = [f"case{i // 3}" for i in range(len(images))]
    data = SliceData(images, labels.astype(np.int64), names)
    assert len(data) == 12 and data.names == names
    assert data.describe() == {"kind": "slices", "slices": 12}
    a, la = data.batch(jax.random.key(0), 16)
    b, lb = data.batch(jax.random.key(0), 16)
    c, _ = data.batch(jax.random.key(1), 16)
    assert a.shape == (16, 8, 9) and a.dtype == np.float32 and la.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    for image, label in zip(np.asarray(a), np.asarray(la), strict=True):
        (index,) = np.flatnonzero(np.all(images == image, axis=(1, 2)))
        np.testing.assert_array_equal(label, labels[index])


@pytest.mark.parametrize(
    "images,labels",
    [
        (np.zeros((3, 8, 8)), np.zeros((3, 8, 9))),
        (np.zeros((3, 8, 8)), np.zeros((2, 8, 8))),
        (np.zeros((8, 8)), np.zeros((8, 8))),
        (np.zeros((2, 1, 3, 8, 8)), np.zeros((2, 1, 3, 8, 8))),
    ],
)
def test_slice_data_rejects_mismatched_arrays(images, labels):
    with pytest.raises(ValueError, match=r"must both be \(N, H, W\) or \(N, D, H, W\)"):
        SliceData(images, labels)


def test_slice_data_holds_stacks():
    images = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    data = SliceData(images, np.zeros(images.shape, np.uint8))
    batch, _ = data.batch(jax.random.key(0), 4)
    assert batch.shape == (4, 3, 8, 8)


def test_slice_data_rejects_no_slices():
    with pytest.raises(ValueError, match="no slices"):
        SliceData(np.zeros((0, 8, 8)), np.zeros((0, 8, 8)))


# --------------------------------------------------------------------------- open_data
def _write(folder, case, labels=None):
    save_nifti(folder / f"{case.name}.nii.gz", case.image, case.geometry)
    save_nifti(
        folder / f"{case.name}_gt.nii.gz",
        case.labels if labels is None else labels,
        case.geometry,
    )


def test_open_data_reads_a_folder_of_cases(tmp_path):
    a = _case("a", (2, 20, 24), (10.0, 1.25, 1.25), 4)
    b = _case("b", (3, 16, 16), (8.0, 2.5, 2.5), 5)
    _write(tmp_path, b)
    _write(tmp_path, a)
    prep = Preprocessing(shape=(16, 16), spacing=2.5, percentile=100.0)
    data = open_data(str(tmp_path), prep)
    assert isinstance(data, SliceData)
    assert data.describe() == {"kind": "real", "slices": 5}
    assert data.names == ["a", "a", "b", "b", "b"]
    images, labels, _ = slices_from_cases([a, b], prep)
    np.testing.assert_allclose(np.asarray(data.images), images, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(data.labels), labels)


def test_open_data_maps_labels_into_the_scheme(tmp_path):
    case = _case("c", (2, 16, 16), (8.0, 2.5, 2.5), 6)
    _write(tmp_path, case, labels=case.labels * 10)  # stored as 0, 10, 20, 30
    prep = Preprocessing(shape=(16, 16), spacing=2.5)
    with pytest.raises(ValueError, match="outside the scheme of 4 classes"):
        open_data(str(tmp_path), prep)
    data = open_data(str(tmp_path), prep, label_map={10: 1, 20: 2, 30: 3})
    np.testing.assert_array_equal(np.asarray(data.labels), case.labels)


def test_open_data_names_the_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"--data {re.escape(str(missing))}"):
        open_data(str(missing), Preprocessing())


def test_open_data_refuses_a_folder_without_cases(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no labelled cases"):
        open_data(str(tmp_path), Preprocessing())


def test_open_data_sim_follows_the_preprocessing():
    data = open_data("sim", Preprocessing(shape=(48, 40), spacing=2.0))
    assert isinstance(data, SimulatedData)
    assert data.spec.shape == (48, 40)
    assert data.spec.in_plane_spacing == pytest.approx((1.6, 2.4))
    described = data.describe()
    assert described["kind"] == "sim" and described["shape"] == [48, 40]
    # every range the sampler draws from is recorded, as drawn
    assert described["ranges"]["in_plane_spacing"] == pytest.approx([1.6, 2.4])
    assert described["ranges"]["texture"] == list(data.spec.texture)
    assert "shape" not in described["ranges"] and "n_coils" not in described["ranges"]


def test_resume_refuses_a_run_drawn_from_other_ranges(tmp_path):
    import json

    from jaxsim.train import TrainConfig, run_training

    tiny = {"channels": [4, 8], "strides": [2]}
    config = TrainConfig(
        data="sim", shape=(32, 32), spacing=2.5, steps=2, model_options=tiny
    )
    described = open_data("sim", Preprocessing(shape=(32, 32), spacing=2.5)).describe()
    described["ranges"]["texture"] = [0.0, 0.0]  # the run was made before a change
    (tmp_path / "config.json").write_text(
        json.dumps({"config": config.to_json(), "data": described})
    )
    held = SliceData(np.zeros((2, 32, 32), np.float32), np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="other ranges"):
        run_training(config, tmp_path, resume=True, validation=held)


def test_simulated_batch():
    # one call: compiling the simulator takes ~10 s
    data = SimulatedData(Preprocessing(shape=(32, 32), spacing=2.5))
    images, labels = data.batch(jax.random.key(0), 2)
    images, labels = np.asarray(images), np.asarray(labels)
    assert images.shape == (2, 32, 32)
    assert images.dtype == np.float32  # networks train in float32, x64 or not
    assert labels.shape == (2, 32, 32)
    assert np.all(np.isfinite(images))
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    assert np.any(labels == 3)  # the LV blood pool
    # normalised per image: its 99.5th percentile is about 1
    for image in images:
        assert np.percentile(image, 99.5) == pytest.approx(1.0, abs=0.05)
