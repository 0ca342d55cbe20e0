"""Folders of real labelled cases, and orbax checkpoints."""

from __future__ import annotations

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.geometry import ImageGeometry
from jaxsim.io import CheckpointStore, find_cases, load_case, load_cases, save_nifti

SHAPE = (3, 12, 10)


def _volume(seed):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 100, SHAPE).astype(np.float32)
    labels = rng.integers(0, 4, SHAPE).astype(np.uint8)
    return image, labels


def _acdc(root, patient, frames=(1, 12), ed=1, es=12):
    folder = root / f"patient{patient:03d}"
    folder.mkdir(parents=True)
    geom = ImageGeometry.axis_aligned(shape=SHAPE, spacing=(10.0, 1.5, 1.6))
    for f in frames:
        image, labels = _volume(patient * 100 + f)
        save_nifti(folder / f"patient{patient:03d}_frame{f:02d}.nii.gz", image, geom)
        save_nifti(
            folder / f"patient{patient:03d}_frame{f:02d}_gt.nii.gz", labels, geom
        )
    (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nNbFrame: 30\n")
    save_nifti(
        folder / f"patient{patient:03d}_4d.nii.gz",
        np.zeros((2, *SHAPE), np.float32),
        geom,
    )
    return folder


def test_acdc_layout_as_distributed(tmp_path):
    _acdc(tmp_path / "training", 1)
    _acdc(tmp_path / "training", 7)
    found = find_cases(tmp_path)
    assert [c.name for c in found] == [
        "patient001_frame01",
        "patient001_frame12",
        "patient007_frame01",
        "patient007_frame12",
    ]
    assert [c.phase for c in found] == ["ED", "ES", "ED", "ES"]
    case = load_case(found[1])
    image, labels = _volume(112)
    np.testing.assert_array_equal(case.image, image)
    np.testing.assert_array_equal(case.labels, labels)
    assert case.spacing == pytest.approx((10.0, 1.5, 1.6))


def test_nifti_pairs_nnunet_and_hdf5(tmp_path):
    geom = ImageGeometry.axis_aligned(shape=SHAPE, spacing=(8.0, 1.0, 1.0))
    image, labels = _volume(1)
    save_nifti(tmp_path / "heart.nii.gz", image, geom)
    save_nifti(tmp_path / "heart_seg.nii.gz", labels, geom)
    raw = tmp_path / "Dataset1"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    save_nifti(raw / "imagesTr" / "case_001_0000.nii.gz", image, geom)
    save_nifti(raw / "labelsTr" / "case_001.nii.gz", labels, geom)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["image"], f["label"] = image, labels
    found = {c.name: c for c in find_cases(tmp_path)}
    assert set(found) == {"heart", "case_001", "p"}
    with pytest.raises(ValueError, match="stores no voxel spacing"):
        load_case(found["p"])
    h5 = load_case(found["p"], spacing=(10.0, 1.5, 1.5))
    assert h5.spacing == (10.0, 1.5, 1.5)
    np.testing.assert_array_equal(h5.labels, labels)
    cases = load_cases(tmp_path, spacing=(10, 1.5, 1.5))
    assert len(cases) == 3


def test_label_mapping_and_scheme(tmp_path):
    geom = ImageGeometry.axis_aligned(shape=SHAPE, spacing=(8.0, 1.0, 1.0))
    image, labels = _volume(2)
    save_nifti(tmp_path / "a.nii.gz", image, geom)
    save_nifti(tmp_path / "a_gt.nii.gz", labels * 100, geom)  # 0, 100, 200, 300->44
    files = find_cases(tmp_path)[0]
    with pytest.raises(ValueError, match="not in the label mapping"):
        load_case(files, label_map={100: 1, 200: 2})
    with pytest.raises(ValueError, match="outside the scheme"):
        load_case(files, n_classes=4)
    raw = (labels.astype(np.int64) * 100) % 256
    mapping = {int(v): i + 1 for i, v in enumerate(sorted(set(raw.ravel()) - {0}))}
    case = load_case(files, label_map=mapping, n_classes=4)
    assert case.labels.max() == 3 and np.array_equal(case.labels > 0, labels > 0)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no labelled cases found"):
        find_cases(tmp_path)
    with pytest.raises(FileNotFoundError):
        find_cases(tmp_path / "absent")
    geom = ImageGeometry.axis_aligned(shape=SHAPE, spacing=(8.0, 1.0, 1.0))
    moved = ImageGeometry.axis_aligned(
        shape=SHAPE, spacing=(8.0, 1.0, 1.0), center=(0, 4.0, 0)
    )
    image, labels = _volume(3)
    save_nifti(tmp_path / "b.nii.gz", image, geom)
    save_nifti(tmp_path / "b_gt.nii.gz", labels, moved)
    with pytest.raises(ValueError, match="not on the grid"):
        load_case(find_cases(tmp_path)[0])
    save_nifti(
        tmp_path / "b_gt.nii.gz",
        labels[:, :, :5],
        moved.__class__.axis_aligned(shape=(3, 12, 5), spacing=(8.0, 1.0, 1.0)),
        overwrite=True,
    )
    with pytest.raises(ValueError, match="shape"):
        load_case(find_cases(tmp_path)[0])


def test_checkpoint_round_trip_keeps_arrays_keys_and_description(tmp_path):
    state = {
        "w": jnp.arange(6.0).reshape(2, 3),
        "step": jnp.asarray(7, jnp.int32),
        "key": jax.random.key_data(jax.random.key(5)),
    }
    with CheckpointStore(tmp_path, max_to_keep=2) as store:
        for step in (10, 20, 30):
            store.save(
                step, jax.tree.map(lambda a: a * 1, state), {"model": "m", "at": step}
            )
        assert store.steps == [20, 30] and store.latest == 30
        like = jax.tree.map(jnp.zeros_like, state)
        got, meta = store.restore(like)
        assert meta == {"model": "m", "at": 30}
        for k in state:
            np.testing.assert_array_equal(got[k], state[k])
            assert got[k].dtype == state[k].dtype
        assert store.read_meta(20)["at"] == 20
        with pytest.raises(FileNotFoundError, match="step 10"):
            store.restore(like, step=10)
    with CheckpointStore(tmp_path / "empty") as empty:
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            empty.restore(state)
