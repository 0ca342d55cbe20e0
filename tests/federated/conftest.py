"""Tiny synthetic sites for the federated tests: HDF5 ``image``/``label`` files
(the layout of ``../shared/data/acdc``), 3 slices of 16 x 16 pixels of 4 mm."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

SPACING = (10.0, 4.0, 4.0)


def write_case(path: Path, seed: int) -> None:
    """A volume of nested discs (LV blood 3 in LV myocardium 2, RV blood 1 at
    the side) with intensities per label and noise; the centre moves per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    labels = np.zeros((3, 16, 16), np.uint8)
    image = np.zeros((3, 16, 16), np.float32)
    cy, cx = 8 + rng.integers(-1, 2), 9 + rng.integers(-1, 2)
    for k in range(3):
        r = np.hypot(yy - cy, xx - cx)
        labels[k][np.hypot(yy - cy, xx - cx + 5) < 2.5 - 0.3 * k] = 1
        labels[k][r < 4.0 - 0.4 * k] = 2
        labels[k][r < 2.2 - 0.3 * k] = 3
        image[k] = np.choose(labels[k], [0.1, 0.8, 0.35, 0.9]).astype(np.float32)
    image += 0.03 * rng.standard_normal(image.shape).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["image"] = image
        f["label"] = labels


def make_site(root: Path, name: str, patients, seed: int = 0) -> Path:
    """A site folder of ``patientNNN_frame01/02.h5`` volumes."""
    folder = root / name
    folder.mkdir(parents=True)
    for i, p in enumerate(patients):
        for frame in (1, 2):
            write_case(
                folder / f"patient{p:03d}_frame{frame:02d}.h5", seed + 10 * i + frame
            )
    return folder


@pytest.fixture
def site_factory(tmp_path):
    """``site_factory(name, patients, seed=0) -> folder`` under ``tmp_path/sites``."""
    return lambda name, patients, seed=0: make_site(
        tmp_path / "sites", name, patients, seed
    )


def tiny_config(**changes):
    """A federated configuration small enough for the default suite."""
    from jaxsim.federated import FederatedConfig

    base = dict(
        rounds=2, local_steps=3, batch_size=2, shape=(16, 16), spacing=4.0,
        finetune_steps=2, learning_rate=1e-2, data_spacing=SPACING, tta=False,
        augment=False,
        model_options={"channels": [4, 4], "strides": [2], "num_res_units": 0},
    )  # fmt: skip
    return FederatedConfig(**{**base, **changes})


@pytest.fixture
def tiny():
    return tiny_config
