"""simulate_cine end to end on the phantom (one small grid, compiled once)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.mr import (
    BSSFPSequence,
    MRAcquisition,
    default_tissue_properties,
    seed2021_contrasts,
    simulate_cine,
    simulate_cine_contrasts,
)
from jaxsim.phantoms import (
    TISSUE_INDEX,
    default_subject,
    end_systolic_phase,
    short_axis_geometry,
)

SHAPE, SPACING = (2, 48, 48), (10.0, 2.5, 2.5)


def _swapped_relaxation():
    p = default_tissue_properties(1.5)
    return dataclasses.replace(p, t1=p.t2, t2=p.t1)


MYO, LV = TISSUE_INDEX["lv_myocardium"], TISSUE_INDEX["lv_blood"]


@pytest.fixture(scope="module")
def subject():
    return default_subject("female")


@pytest.fixture(scope="module")
def geometry(subject):
    return short_axis_geometry(subject, spacing=SPACING, shape=SHAPE)


def test_image_and_labels_shapes_and_motion(subject, geometry):
    es = float(end_systolic_phase(subject))
    r = simulate_cine(jax.random.key(0), subject, geometry, cardiac_phases=(0.0, es))
    assert r.image.shape == (2, *SHAPE) and r.image.dtype == jnp.float32
    assert r.labels.shape == (2, *SHAPE) and r.labels.dtype == jnp.uint8
    lab = np.asarray(r.labels)
    assert {MYO, LV, TISSUE_INDEX["rv_blood"]} <= set(np.unique(lab[0]).tolist())
    assert (lab[1] == LV).sum() < 0.8 * (lab[0] == LV).sum()  # systole empties the LV
    img = np.asarray(r.image[0])
    # bSSFP contrast: blood brighter than myocardium.
    assert img[lab[0] == LV].mean() > 1.5 * img[lab[0] == MYO].mean()


def test_realised_myocardial_snr_single_coil(subject, geometry):
    clean = simulate_cine(jax.random.key(1), subject, geometry)
    noisy = simulate_cine(
        jax.random.key(1), subject, geometry, acquisition=MRAcquisition(snr=20.0)
    )
    m = np.asarray(clean.labels[0]) == MYO
    signal = np.asarray(clean.image[0])[m].mean()
    noise = np.std(np.asarray(noisy.image[0] - clean.image[0])[m])
    np.testing.assert_allclose(signal / noise, 20.0, rtol=0.10)
    np.testing.assert_allclose(float(noisy.noise_std), signal / 20.0, rtol=1e-4)


def test_same_key_same_image(subject, geometry):
    acq = MRAcquisition(snr=15.0, n_coils=4)
    a = simulate_cine(jax.random.key(3), subject, geometry, acquisition=acq)
    b = simulate_cine(jax.random.key(3), subject, geometry, acquisition=acq)
    np.testing.assert_array_equal(a.image, b.image)


@pytest.mark.slow  # compiling the phantom's derivative takes ~2 minutes on 2 cores
def test_gradient_wrt_anatomy_matches_finite_difference(subject, geometry):
    # Forward mode: one tangent through the phantom rasteriser and the acquisition.
    props, seq = default_tissue_properties(1.5), BSSFPSequence()

    def total_signal(edv):
        s = dataclasses.replace(subject, edv=edv)
        img = simulate_cine(
            jax.random.key(0),
            s,
            geometry,
            tissue=props,
            sequence=seq,
            acquisition=MRAcquisition(oversample=1),
        ).image
        return jnp.sum(img)

    edv = jnp.asarray(subject.edv)
    _, g = jax.jvp(total_signal, (edv,), (jnp.ones_like(edv),))
    h = 0.02 * edv
    fd = (total_signal(edv + h) - total_signal(edv - h)) / (2 * h)
    assert np.isfinite(float(g)) and float(g) > 0  # more blood, more bright signal
    np.testing.assert_allclose(float(g), float(fd), rtol=0.05)


def test_contrasts_batch_matches_single_contrast(subject, geometry):
    tissue, seq, snr, _ = seed2021_contrasts(jax.random.key(0))
    batch = simulate_cine_contrasts(
        jax.random.key(9),
        subject,
        geometry,
        tissue=tissue,
        sequence=seq,
        acquisition=MRAcquisition(snr=snr),
    )
    assert batch.image.shape == (27, 1, *SHAPE) and batch.noise_std.shape == (27,)
    c = 13
    one = simulate_cine(
        jax.random.fold_in(jax.random.key(9), c),
        subject,
        geometry,
        tissue=jax.tree_util.tree_map(lambda x: x[c], tissue),
        sequence=jax.tree_util.tree_map(lambda x: x[c], seq),
        acquisition=MRAcquisition(snr=float(snr[c])),
    )
    np.testing.assert_allclose(batch.image[c], one.image, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"acquisition": MRAcquisition(snr=0.0)}, "snr"),
        ({"acquisition": MRAcquisition(snr=10.0, noise_std=1.0)}, "not both"),
        ({"acquisition": MRAcquisition(b0_std=-1.0)}, "b0_std"),
        ({"acquisition": MRAcquisition(tukey_alpha=1.5)}, "tukey_alpha"),
        ({"acquisition": MRAcquisition(acceleration=0.5)}, "acceleration"),
        ({"cardiac_phases": (1.0,)}, "cardiac_phases"),
        ({"sequence": BSSFPSequence(te=5e-3)}, "TE must not exceed TR"),
        ({"sequence": BSSFPSequence(flip=4.0)}, "flip"),
        ({"tissue": _swapped_relaxation()}, "T2 must not exceed T1"),
        ({"acquisition": "snr=20"}, "MRAcquisition"),
    ],
)
def test_invalid_arguments_raise(subject, geometry, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        simulate_cine(jax.random.key(0), subject, geometry, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_coils": 0}, "n_coils"),
        ({"oversample": 0}, "oversample"),
        ({"oversample": 9}, "oversample"),
        ({"coil_combination": "sos"}, "coil_combination"),
        ({"center_lines": 1.5}, "center_lines"),
    ],
)
def test_invalid_static_acquisition_fields_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MRAcquisition(**kwargs)
