"""Input checks, label specs, partial-volume fractions, bias field and rendering."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxsim.fit import (
    FitParameters,
    bias_field,
    class_fractions,
    parse_label_spec,
    prepare_data,
    render,
)
from jaxsim.mr import BSSFPSequence


def test_parse_label_spec():
    assert parse_label_spec("RV=1,MYO=2,LV=3") == {
        "rv_blood": 1,
        "lv_myocardium": 2,
        "lv_blood": 3,
    }
    assert parse_label_spec(" lv=5 , aorta=7") == {"lv_blood": 5, "aorta": 7}


@pytest.mark.parametrize(
    "spec, match",
    [
        ("RV1", "look like"),
        ("XX=1", "unknown class 'XX'"),
        ("RV=0", r"\[1, 255\]"),
        ("RV=1,LV=1", "repeated"),
        ("RV=a", "integer"),
    ],
)
def test_parse_label_spec_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_label_spec(spec)


def _image(labels):
    rng = np.random.default_rng(0)
    return np.choose(labels, [0.05, 0.3, 0.1, 0.4]) + 0.01 * rng.random(labels.shape)


def test_prepare_data_crops_and_sorts(labels):
    data = prepare_data(_image(labels), labels, spacing=(8.0, 1.5, 1.5), margin=3)
    assert data.classes == ("rv_blood", "lv_myocardium", "lv_blood")
    np.testing.assert_array_equal(np.sum(data.onehot, 0), 1.0)
    for k, v in enumerate((1, 2, 3)):
        assert data.real_sorted[k].shape[0] == np.sum(labels == v)
        assert np.all(np.diff(np.asarray(data.real_sorted[k])) >= 0)
    (z0, z1), (y0, y1), (x0, x1) = data.crop
    inside = labels[z0:z1, y0:y1, x0:x1]
    assert np.sum(inside > 0) == np.sum(labels > 0)  # nothing labelled was cut
    assert x0 == np.flatnonzero(labels.any((0, 1)))[0] - 3


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda im, lb: (im[:, :-1], lb), "shape"),
        (lambda im, lb: (im, np.where(lb == 3, 2, lb)), r"label value 3 \(lv_blood\)"),
        (lambda im, lb: (np.full_like(im, 0.7), lb), "constant"),
        (lambda im, lb: (np.where(lb == 1, np.nan, im), lb), "finite"),
        (lambda im, lb: (im - 1.0, lb), ">= 0"),
        (
            lambda im, lb: (im, np.where(lb == 1, 0, lb) + (lb == 1) * 0),
            "label value 1",
        ),
    ],
)
def test_prepare_data_errors(labels, change, match):
    image, lab = change(_image(labels), labels)
    with pytest.raises(ValueError, match=match):
        prepare_data(image, lab)


def test_prepare_data_too_few_voxels_and_bad_spacing(labels):
    lab = labels.copy()
    lab[lab == 1] = 0
    lab[0, 0, :5] = 1
    with pytest.raises(ValueError, match="has 5 voxels"):
        prepare_data(_image(labels), lab)
    with pytest.raises(ValueError, match="spacing"):
        prepare_data(_image(labels), labels, spacing=(0.0, 1.0, 1.0))


def test_in_plane_fractions_match_scipy_gaussian(labels):
    onehot = np.stack([labels == v for v in (1, 2, 3)] + [labels == 0]).astype(float)
    width, spacing = 1.3, (8.0, 1.5, 1.2)
    got = np.asarray(class_fractions(jnp.asarray(onehot), width, spacing))
    want = scipy.ndimage.gaussian_filter(
        onehot[:3],
        sigma=(0, 0, width / spacing[1], width / spacing[2]),
        mode="wrap",
        truncate=20.0,
    )
    np.testing.assert_allclose(got[:3], want, atol=2e-6)
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-6)


def test_through_plane_fractions(labels):
    onehot = np.stack([labels == v for v in (1, 2, 3)] + [labels == 0]).astype(float)
    spacing, wz = (8.0, 1.5, 1.5), 6.0
    got = np.asarray(class_fractions(jnp.asarray(onehot), 1e-3, spacing, wz))
    k = np.arange(labels.shape[0])
    w = np.exp(-0.5 * ((k[:, None] - k[None]) * 8.0 / wz) ** 2)
    w /= w.sum(1, keepdims=True)
    want = np.einsum("ij,cjyx->ciyx", w, onehot[:3])
    np.testing.assert_allclose(got[:3], want, atol=1e-6)
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-6)


def test_bias_field_polynomial():
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in (3, 4, 5)), indexing="ij")
    c = np.arange(1, 10) / 20.0
    want = np.exp(
        c[0] * z
        + c[1] * y
        + c[2] * x
        + c[3] * z * z
        + c[4] * y * y
        + c[5] * x * x
        + c[6] * z * y
        + c[7] * z * x
        + c[8] * y * x
    )
    got = bias_field(jnp.asarray(c), jnp.asarray(np.stack([z, y, x])))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def _steady_state(pd, t1, t2, tr, te, flip):
    # Exact on-resonance bSSFP (Scheffler & Lehnhardt 2003), independent of jaxsim.
    e1, e2 = math.exp(-tr / t1), math.exp(-tr / t2)
    s = pd * (1 - e1) * math.sin(flip)
    return s / (1 - (e1 - e2) * math.cos(flip) - e1 * e2) * math.exp(-te / t2)


def test_render_interiors_equal_scaled_signals(labels):
    data = prepare_data(_image(labels), labels, spacing=(8.0, 1.5, 1.5))
    seq = BSSFPSequence()
    params = FitParameters(
        pd=jnp.array([0.9, 0.8, 0.95, 0.7]),
        t1=jnp.array([1.4, 0.95, 1.5, 0.9]),
        t2=jnp.array([0.25, 0.05, 0.3, 0.05]),
        flip=jnp.asarray(seq.flip),
        scale=jnp.asarray(2.5),
        sigma=jnp.asarray(1e-7),
        pv_width=jnp.asarray(1e-3),
        pv_width_z=jnp.asarray(1e-3),
        texture=jnp.full(3, 1e-7),
        bias=jnp.zeros(9),
    )
    image = np.asarray(render(params, data, seq, key=jax.random.key(1)))
    for k in range(4):
        want = 2.5 * _steady_state(
            *(float(getattr(params, f)[k]) for f in ("pd", "t1", "t2")),
            3.1e-3,
            1.55e-3,
            float(seq.flip),
        )
        np.testing.assert_allclose(
            image[np.asarray(data.class_map) == k], want, rtol=2e-4
        )
