"""MR acquisition on synthetic tissue fractions (no phantom): exact, fast checks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.geometry import ImageGeometry
from jaxsim.kernels import bssfp_signal
from jaxsim.mr import (
    Anatomy,
    BSSFPSequence,
    MRAcquisition,
    acquire_cine,
    cartesian_mask,
    coil_layout,
    coil_sensitivities,
    crop_kspace,
    default_tissue_properties,
    fft2c,
    ifft2c,
    loop_field,
    refine_in_plane,
    seed2021_contrasts,
    tukey_window,
)
from jaxsim.phantoms import TISSUE_INDEX, TISSUES
from jaxsim.random import stream

X64 = bool(jax.config.read("jax_enable_x64"))
T = len(TISSUES)
MYO, BLOOD, FAT = (TISSUE_INDEX[n] for n in ("lv_myocardium", "lv_blood", "fat"))


def _blocks(ny, nx, nz=1, oversample=1):
    """Fractions (1, T, nz, ny*o, nx*o): left half myocardium, right quarter blood,
    the rest fat; with a matching target-resolution myocardium mask."""
    fy, fx = ny * oversample, nx * oversample
    f = np.zeros((1, T, nz, fy, fx), np.float32)
    f[0, MYO, :, :, : fx // 2] = 1
    f[0, BLOOD, :, :, 3 * fx // 4 :] = 1
    f[0, FAT, :, :, fx // 2 : 3 * fx // 4] = 1
    myo = np.zeros((nz, ny, nx), bool)
    myo[:, :, : nx // 2] = True
    return jnp.asarray(f), jnp.asarray(myo)


def _acquire(key, f, myo, maps, props, seq, **acq):
    """acquire_cine of synthetic fractions with MRAcquisition(**acq)."""
    acq.setdefault("oversample", 1)
    return_coils = acq.pop("return_coils", False)
    labels = jnp.zeros((f.shape[0], *myo.shape), jnp.uint8)
    anatomy = Anatomy(fractions=f, labels=labels, myo_mask=myo, coil_maps=maps)
    return acquire_cine(
        key, anatomy, props, seq, MRAcquisition(**acq), return_coils=return_coils
    )


def _geometry(shape=(2, 48, 48), spacing=(8.0, 2.0, 2.0)):
    return ImageGeometry.axis_aligned(
        center=(0.0, 0.0, 0.0), spacing=spacing, shape=shape
    )


def test_uniform_coil_no_noise_no_crop_equals_kernel():
    f, myo = _blocks(16, 16)
    props, seq = default_tissue_properties(1.5), BSSFPSequence()
    maps = jnp.ones((1, 1, 16, 16), jnp.complex64)
    image, sigma, _ = _acquire(jax.random.key(0), f, myo, maps, props, seq)
    s = np.abs(
        np.asarray(bssfp_signal(props.pd, props.t1, props.t2, seq.tr, seq.te, seq.flip))
    )
    np.testing.assert_allclose(image[0, 0, :, :8], s[MYO], rtol=1e-5)
    np.testing.assert_allclose(image[0, 0, :, 12:], s[BLOOD], rtol=1e-5)
    np.testing.assert_allclose(image[0, 0, :, 8:12], s[FAT], rtol=1e-5)
    assert float(sigma) == 0.0


def test_refined_grid_tiles_the_coarse_grid():
    g = ImageGeometry.from_axes(
        center=(3.0, -2.0, 5.0),
        axes=jnp.asarray(_rotation()),
        spacing=(6.0, 1.5, 2.0),
        shape=(2, 6, 5),
    )
    fine = refine_in_plane(g, 3)
    assert fine.shape == (2, 18, 15)
    c = np.asarray(g.voxel_centers())
    f = np.asarray(fine.voxel_centers()).reshape(2, 6, 3, 5, 3, 3)
    np.testing.assert_allclose(f.mean(axis=(2, 4)), c, atol=1e-4)
    np.testing.assert_allclose(fine.voxel_volume * 9, g.voxel_volume, rtol=1e-5)


def _rotation():
    a, b = 0.4, -0.7
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.mark.parametrize("oversample", [2, 3])
def test_kspace_crop_of_fine_grid_matches_coarse_sampling(oversample):
    # A band-limited (wide Gaussian) image rendered on the fine grid and cropped in
    # k-space equals the same function sampled on the coarse grid's voxel centres.
    g = _geometry((1, 32, 32))
    fine = refine_in_plane(g, oversample)

    def blob(geom):
        p = np.asarray(geom.voxel_centers())
        return np.exp(-((p[..., 0] - 5.0) ** 2 + (p[..., 1] + 3.0) ** 2) / (2 * 7.0**2))

    shift = (oversample - 1) / (2 * oversample)
    k = crop_kspace(
        fft2c(jnp.asarray(blob(fine), jnp.complex64)), (32, 32), shift=(shift, shift)
    )
    # The voxel average of the blob over a coarse voxel: a Gaussian this wide differs
    # from its centre value by < 1e-3 of the peak.
    np.testing.assert_allclose(np.real(ifft2c(k)), blob(g), atol=2e-3)
    np.testing.assert_allclose(np.imag(ifft2c(k)), 0.0, atol=1e-4)


def test_tukey_window_limits():
    np.testing.assert_allclose(tukey_window(9, 0.0), 1.0)
    np.testing.assert_allclose(tukey_window(9, 1.0), np.hanning(9), atol=1e-12)
    w = tukey_window(64, 0.5)
    assert w[0] == 0.0 and w[32] == 1.0 and np.all(np.diff(w[:32]) >= 0)


def test_single_loop_on_axis_field_is_analytic():
    radius, centre, normal = 80.0, np.array([10.0, -20.0, 30.0]), np.array([0, 1.0, 0])
    h = np.linspace(-200, 200, 41)
    points = jnp.asarray(centre + h[:, None] * normal)
    b = np.asarray(loop_field(points, centre, normal, radius, 64))
    exact = 2 * np.pi * radius**2 / (radius**2 + h**2) ** 1.5
    np.testing.assert_allclose(b @ normal, exact, rtol=1e-5 if not X64 else 1e-10)
    np.testing.assert_allclose(
        b - np.outer(b @ normal, normal), 0.0, atol=1e-6 * exact.max()
    )


def test_loop_field_converges_off_axis():
    rng = np.random.default_rng(0)
    points = jnp.asarray(rng.uniform(-150, 150, (50, 3)) + np.array([0, 0, 120.0]))
    ref = np.asarray(loop_field(points, np.zeros(3), np.array([0, 0, 1.0]), 60.0, 2048))
    got = np.asarray(loop_field(points, np.zeros(3), np.array([0, 0, 1.0]), 60.0, 64))
    assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_coil_layout_and_normalisation():
    centres, normals, r = coil_layout(8, ring_radius=250.0)
    np.testing.assert_allclose(np.hypot(centres[:, 0], centres[:, 1]), 250.0)
    np.testing.assert_allclose(np.sum(normals * centres, axis=1), -250.0)
    assert r == pytest.approx(250.0 * np.pi / 8)
    c2, _, _ = coil_layout(12, coils_per_ring=8)
    assert len(np.unique(np.round(c2[:, 2], 6))) == 2
    maps = coil_sensitivities(_geometry((2, 40, 40), (8.0, 4.0, 4.0)), 8)
    rss = np.sqrt(np.sum(np.abs(np.asarray(maps)) ** 2, axis=0))
    np.testing.assert_allclose(rss.mean(), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="n_coils"):
        coil_layout(0)


def test_single_coil_snr_is_the_target():
    f, myo = _blocks(96, 96)
    props, seq = default_tissue_properties(1.5), BSSFPSequence()
    maps = jnp.ones((1, 1, 96, 96), jnp.complex64)
    args = (f, myo, maps, props, seq)
    clean, _, _ = _acquire(jax.random.key(0), *args)
    noisy, sigma, _ = _acquire(jax.random.key(1), *args, snr=20.0)
    m = np.asarray(myo)
    mean = float(np.asarray(clean)[0][m].mean())
    noise_sd = float(np.std(np.asarray(noisy - clean)[0][m]))
    np.testing.assert_allclose(mean / noise_sd, 20.0, rtol=0.10)
    np.testing.assert_allclose(float(sigma), mean / 20.0, rtol=1e-5)


def test_multicoil_sensitivity_combination_noise_follows_definition():
    g = _geometry((1, 96, 96), (8.0, 3.0, 3.0))
    f, myo = _blocks(96, 96)
    maps = coil_sensitivities(g, 6, ring_radius=200.0)
    props, seq = default_tissue_properties(1.5), BSSFPSequence()
    args = (f, myo, maps, props, seq)
    kw = dict(n_coils=6, coil_combination="sensitivity", return_coils=True)
    clean, _, cc = _acquire(jax.random.key(0), *args, **kw)
    noisy, sigma, nc = _acquire(jax.random.key(3), *args, snr=15.0, **kw)
    # Per channel: complex noise with sigma per component.
    resid = np.asarray(nc - cc)
    np.testing.assert_allclose(np.std(resid.real), float(sigma), rtol=0.03)
    np.testing.assert_allclose(np.std(resid.imag), float(sigma), rtol=0.03)
    # sigma from the noise-free combined image's myocardial mean.
    np.testing.assert_allclose(
        float(sigma), np.asarray(clean)[0][np.asarray(myo)].mean() / 15.0, rtol=1e-4
    )
    # Combined: noise per component sigma / sqrt(sum |s|^2), voxel by voxel.
    s = np.asarray(maps)
    w = np.sum(np.abs(s) ** 2, axis=0)
    combined = np.sum(np.conj(s) * resid[0], axis=0) / w
    z = combined * np.sqrt(w) / float(sigma)
    np.testing.assert_allclose(np.std(z.real), 1.0, rtol=0.03)
    np.testing.assert_allclose(np.std(z.imag), 1.0, rtol=0.03)


def test_same_key_same_noise_and_different_key_different_noise():
    f, myo = _blocks(32, 32)
    props, seq = default_tissue_properties(1.5), BSSFPSequence()
    maps = jnp.ones((1, 1, 32, 32), jnp.complex64)
    a = _acquire(jax.random.key(5), f, myo, maps, props, seq, snr=10.0)
    b = _acquire(jax.random.key(5), f, myo, maps, props, seq, snr=10.0)
    c = _acquire(jax.random.key(6), f, myo, maps, props, seq, snr=10.0)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])


def test_undersampling_mask_and_zero_filling():
    mask = np.asarray(cartesian_mask(jax.random.key(0), 64, 4.0, center_lines=8))
    assert mask.sum() == 16 and mask[28:36].all()
    assert np.asarray(cartesian_mask(jax.random.key(0), 64, 1.0)).all()
    f, myo = _blocks(64, 64)
    # Stripes across y, so that the image has energy off the k_y = 0 line.
    f, myo = jnp.swapaxes(f, -1, -2), jnp.swapaxes(myo, -1, -2)
    props, seq = default_tissue_properties(1.5), BSSFPSequence()
    maps = jnp.ones((1, 1, 64, 64), jnp.complex64)
    key = jax.random.key(0)
    full, _, _ = _acquire(key, f, myo, maps, props, seq)
    under, _, _ = _acquire(key, f, myo, maps, props, seq, acceleration=4.0)
    # The acquisition draws its mask from the key's "mr.mask" stream.
    mask = np.asarray(cartesian_mask(stream(key, "mr.mask"), 64, 4.0, center_lines=16))
    assert mask.sum() == 16
    # Zero filling keeps exactly the sampled lines' energy (Parseval).
    k = np.asarray(fft2c(jnp.asarray(full[0, 0], jnp.complex64)))
    kept = np.sum(np.abs(k[mask]) ** 2)
    np.testing.assert_allclose(np.sum(np.asarray(under[0, 0]) ** 2), kept, rtol=1e-3)
    assert kept < np.sum(np.abs(k) ** 2)


def test_transient_sequence_and_b0_field_change_contrast():
    f, myo = _blocks(16, 16)
    props = default_tissue_properties(1.5)
    maps = jnp.ones((1, 1, 16, 16), jnp.complex64)
    key, args = jax.random.key(0), (f, myo, maps, props)
    steady, _, _ = _acquire(key, *args, BSSFPSequence())
    early, _, _ = _acquire(key, *args, BSSFPSequence(dummy_pulses=5))
    late, _, _ = _acquire(key, *args, BSSFPSequence(dummy_pulses=20000))
    np.testing.assert_allclose(late, steady, rtol=2e-4)
    assert not np.allclose(early, steady, rtol=1e-2)
    banded, _, _ = _acquire(key, *args, BSSFPSequence(), b0_std=150.0)
    # Off-resonance can only lower the alternating-phase on-resonance maximum
    # region here, and it must vary across the field of view.
    assert np.std(np.asarray(banded)[0, 0, :, :8]) > 1e-3
    assert np.all(np.asarray(banded) <= np.asarray(steady).max() * 1.0001)


def test_gradients_wrt_tissue_and_flip_match_finite_differences():
    f, myo = _blocks(16, 16, oversample=2)
    props = default_tissue_properties(1.5)
    maps = jnp.ones((1, 1, 16, 16), jnp.complex64)

    def loss(t1_myo, flip):
        p = type(props)(props.pd, props.t1.at[MYO].set(t1_myo), props.t2)
        seq = BSSFPSequence(flip=flip)
        key = jax.random.key(0)
        img, _, _ = _acquire(key, f, myo, maps, p, seq, oversample=2, tukey_alpha=0.5)
        return jnp.mean(img)

    x = (jnp.asarray(0.95), jnp.asarray(math.radians(60)))
    g = jax.grad(loss, argnums=(0, 1))(*x)
    for i, h in enumerate((1e-2, 1e-2)):
        e = [0.0, 0.0]
        e[i] = h
        fd = (loss(x[0] + e[0], x[1] + e[1]) - loss(x[0] - e[0], x[1] - e[1])) / (2 * h)
        assert np.isfinite(float(g[i]))
        np.testing.assert_allclose(float(g[i]), float(fd), rtol=2e-2)


def test_seed2021_design_has_27_distinct_contrasts():
    tissue, seq, snr, idx = seed2021_contrasts(jax.random.key(0))
    assert tissue.t1.shape == (27, T) and seq.tr.shape == (27,) and snr.shape == (27,)
    rows = {
        (float(snr[i]), float(seq.flip[i]), float(tissue.t1[i, MYO])) for i in range(27)
    }
    assert len(rows) == 27
    assert sorted(set(np.asarray(snr).tolist())) == [10.0, 20.0, 40.0]
