"""simulate_tagged on the phantom (one small grid, compiled once) and cine_to_tagged.

The phantom test measures tag lines in the simulated images and compares them with
the tag positions predicted from the phantom's motion field: a tag centre at end-
systole sits where the end-diastolic position's coordinate along the encoding
direction is a multiple of the tag spacing.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.io import read_image_label_h5
from jaxsim.kernels import spamm_mz, tag_fading
from jaxsim.mr import (
    Anatomy,
    CineResult,
    MRAcquisition,
    TaggingSequence,
    acquire_tagged,
    cartesian_mask,
    cine_to_tagged,
    default_tissue_properties,
    fft2c,
    simulate_tagged,
    smooth_field,
)
from jaxsim.phantoms import (
    TISSUE_INDEX,
    TISSUES,
    default_subject,
    end_diastolic_positions,
    end_systolic_phase,
    short_axis_geometry,
)
from jaxsim.random import stream

SHAPE, SPACING = (2, 48, 48), (10.0, 2.5, 2.5)  # the cine tests' grid
TAG = 10.0  # mm
MYO, LV = TISSUE_INDEX["lv_myocardium"], TISSUE_INDEX["lv_blood"]


@pytest.fixture(scope="module")
def subject():
    return default_subject("female")


@pytest.fixture(scope="module")
def geometry(subject):
    return short_axis_geometry(subject, spacing=SPACING, shape=SHAPE)


@pytest.fixture(scope="module")
def frames(subject, geometry):
    """Line tags along x at ED and ES, and the same without tags (flip 0)."""
    es = float(end_systolic_phase(subject))
    kw = dict(cardiac_phases=(0.0, es), acquisition=MRAcquisition(oversample=1))
    key = jax.random.key(0)
    seq = TaggingSequence(tag_spacing=TAG, grid=False, angle=0.0)
    tagged = simulate_tagged(
        key, subject, geometry, sequence=seq.replace(flip_total=math.pi / 2), **kw
    )
    plain = simulate_tagged(
        key, subject, geometry, sequence=seq.replace(flip_total=0.0), **kw
    )
    return es, tagged, plain


def test_result_structure(frames):
    _, tagged, _ = frames
    assert isinstance(tagged, CineResult)
    assert tagged.image.shape == (2, *SHAPE) and tagged.image.dtype == jnp.float32
    assert tagged.labels.shape == (2, *SHAPE) and tagged.labels.dtype == jnp.uint8
    assert float(tagged.noise_std) == 0.0 and tagged.coil_images is None
    assert np.all(np.isfinite(np.asarray(tagged.image)))


def _minima(profile):
    """Sub-pixel local minima (parabola through three samples)."""
    out = []
    for i in range(1, len(profile) - 1):
        a, b, c = profile[i - 1 : i + 2]
        if b < a and b <= c:
            out.append(i + 0.5 * (a - c) / (a - 2 * b + c))
    return np.asarray(out)


def _predicted(subject, geometry, phase, k, row, cols):
    """Columns where the ED x coordinate is a multiple ``n`` of TAG, and ``n``."""
    c = np.linspace(cols[0], cols[-1], 2001)
    index = np.stack([c, np.full_like(c, row), np.full_like(c, k)], -1)
    world = geometry.world_coordinates(jnp.asarray(index))
    ed = end_diastolic_positions(subject, world, phase) - geometry.center
    u = np.asarray(ed @ geometry.axes[0]) / TAG
    out, tags = [], []
    for j in np.nonzero(np.diff(np.floor(u)) != 0)[0]:
        n = np.floor(max(u[j], u[j + 1]))  # the integer crossed (linear interpolation)
        t = (n - u[j]) / (u[j + 1] - u[j])
        out.append(c[j] + t * (c[j + 1] - c[j]))
        tags.append(n)
    return np.asarray(out), np.asarray(tags)


def test_tags_follow_the_phantom_motion_within_one_pixel(subject, geometry, frames):
    es, tagged, plain = frames
    labels = np.asarray(tagged.labels[1])
    k = int(np.argmax((labels == MYO).sum(axis=(1, 2))))
    ratio = np.asarray(tagged.image[1, k]) / np.maximum(
        np.asarray(plain.image[1, k]), 1e-6
    )
    rows, cols = np.nonzero(labels[k] == LV)
    row = int(round(rows.mean()))
    centre = cols.mean()
    myo = np.nonzero(labels[k, row] == MYO)[0]
    checked = 0
    for side in (myo[myo < centre], myo[myo > centre]):
        if side.size < 3:
            continue
        mid = side.mean()
        found = _minima(ratio[row])
        x_img = found[np.argmin(np.abs(found - mid))]
        assert abs(x_img - mid) < TAG / SPACING[2]  # a tag in this wall
        pred, tags = _predicted(
            subject, geometry, es, k, row, (side[0] - 2, side[-1] + 2)
        )
        nearest = np.argmin(np.abs(pred - x_img))
        x_pred, n = pred[nearest], tags[nearest]
        assert abs(x_img - x_pred) < 1.0, (x_img, x_pred)
        # the same material tag sat elsewhere at ED: the motion exceeds one pixel
        still, ed_tags = _predicted(subject, geometry, 0.0, k, row, (0, SHAPE[2] - 1))
        assert abs(still[ed_tags == n][0] - x_pred) > 1.0
        checked += 1
    assert checked == 2


def test_end_diastolic_frame_is_the_pattern_and_fades(subject, geometry, frames):
    """At tagging time nothing has moved or recovered: tagged / untagged is exactly
    the SPAMM Mz at each voxel's x coordinate (period TAG); by ES static tissue's
    tag depth has faded (T1 and readout pulses)."""
    _, tagged, plain = frames
    ref = np.asarray(plain.image)
    ratio = np.asarray(tagged.image) / np.maximum(ref, 1e-6)
    u = np.asarray((geometry.voxel_centers() - geometry.center) @ geometry.axes[0])
    want = np.asarray(spamm_mz(u, spacing=TAG, flip_total=math.pi / 2))
    signal = ref[0] > 0.05 * ref[0].max()
    np.testing.assert_allclose(ratio[0][signal], want[signal], atol=2e-3)
    es = float(end_systolic_phase(subject))
    points = geometry.voxel_centers()
    moved = np.linalg.norm(
        np.asarray(end_diastolic_positions(subject, points, es) - points), axis=-1
    )
    static = signal & (moved < 0.25)  # tissue the phantom motion leaves ~in place
    assert static.sum() > 30
    depth = [np.ptp(ratio[p][static]) for p in (0, 1)]
    assert depth[0] > 0.5 and depth[1] < 0.9 * depth[0]


def _synthetic(n_frames=2, n=16, dtype=jnp.float32):
    t = len(TISSUES)
    rng = np.random.default_rng(0)
    fr = rng.uniform(size=(n_frames, t, 1, n, n))
    fr = jnp.asarray(fr / fr.sum(axis=1, keepdims=True), dtype)
    c = (jnp.arange(n, dtype=dtype) - n / 2) * 1.5
    u = jnp.broadcast_to(c[None, None, None, :], (n_frames, 1, n, n))
    v = jnp.broadcast_to(c[None, None, :, None], (n_frames, 1, n, n))
    maps = jnp.ones((1, 1, n, n), jnp.complex64)
    myo = jnp.ones((1, n, n), bool)
    return fr, (u, v), myo, maps


def _acquire(key, fr, uv, myo, maps, props, seq, times, washout=0.1, **acq):
    """acquire_tagged of synthetic fractions with MRAcquisition(**acq)."""
    acq.setdefault("oversample", 1)
    return_coils = acq.pop("return_coils", False)
    labels = jnp.zeros((fr.shape[0], *myo.shape), jnp.uint8)
    anatomy = Anatomy(fractions=fr, labels=labels, myo_mask=myo, coil_maps=maps)
    return acquire_tagged(
        key,
        anatomy,
        uv,
        props,
        seq,
        times,
        MRAcquisition(**acq),
        washout,
        return_coils=return_coils,
    )


def test_acquire_tagged_gradients_finite():
    fr, uv, myo, maps = _synthetic()
    tissue = default_tissue_properties()
    times = jnp.asarray([0.0, 0.3])

    def loss(t1, flip, spacing):
        tis = TaggingSequence(tag_spacing=spacing, flip_total=flip)
        props = tissue.__class__(tissue.pd, t1, tissue.t2)
        img = _acquire(
            jax.random.key(1), fr, uv, myo, maps, props, tis, times, snr=20.0
        )[0]
        return jnp.sum(img)

    grads = jax.grad(loss, argnums=(0, 1, 2))(tissue.t1, math.pi / 2, 7.0)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    assert float(jnp.abs(grads[1])) > 0


def test_acquire_tagged_single_tissue_is_kernel_chain():
    """A voxel of pure tissue at rest: image = PD-weighted fading of the SPAMM Mz
    times sin(flip) exp(-TE/T2) (oversample 1, no noise, uniform coil)."""
    n = 16
    fr, uv, myo, maps = _synthetic(n=n)
    tis = default_tissue_properties()
    i = TISSUE_INDEX["liver"]
    fr = jnp.zeros_like(fr).at[:, i].set(1.0)
    seq = TaggingSequence(tag_spacing=6.0, flip_total=1.0, grid=False)
    times = jnp.asarray([0.0, 0.25])
    img = _acquire(jax.random.key(0), fr, uv, myo, maps, tis, seq, times)[0]
    mz = spamm_mz(uv[0][0, 0], spacing=6.0, flip_total=1.0) * tis.pd[i]
    want = [
        tag_fading(mz, t, t1=tis.t1[i], m0=tis.pd[i], flip=seq.readout_flip, tr=seq.tr)
        * math.sin(seq.readout_flip)
        * jnp.exp(-seq.te / tis.t2[i])
        for t in (0.0, 0.25)
    ]
    np.testing.assert_allclose(img[:, 0], np.stack(want), rtol=1e-4, atol=1e-6)


def _tagged_coils(key, **kw):
    """Noise-free single-coil tagged frames of the synthetic grid, with coil images."""
    fr, uv, myo, maps = _synthetic(n=16)
    seq = TaggingSequence(tag_spacing=6.0, flip_total=1.0, grid=False)
    props, times = default_tissue_properties(), jnp.asarray([0.0, 0.25])
    return _acquire(key, fr, uv, myo, maps, props, seq, times, return_coils=True, **kw)


def test_acquire_tagged_b0_adds_only_the_gradient_echo_phase():
    key = jax.random.key(4)
    plain, _, plain_coils = _tagged_coils(key)
    shifted, _, coils = _tagged_coils(key, b0_std=30.0)
    # |exp(i phi)| = 1: magnitudes unchanged; the phase is 2 pi df TE per voxel
    np.testing.assert_allclose(shifted, plain, rtol=1e-5, atol=1e-7)
    df = smooth_field(stream(key, "mr.b0"), (1, 16, 16), 30.0)
    want = np.exp(2j * np.pi * TaggingSequence().te * np.asarray(df))
    ratio = np.asarray(coils[:, 0]) / np.asarray(plain_coils[:, 0])
    np.testing.assert_allclose(ratio, np.broadcast_to(want, ratio.shape), atol=1e-4)
    assert np.ptp(np.angle(ratio)) > 0.05


def test_acquire_tagged_bias_multiplies_the_image():
    key = jax.random.key(5)
    plain = _tagged_coils(key)[0]
    biased = _tagged_coils(key, bias_std=0.3)[0]
    log_bias = smooth_field(stream(key, "mr.bias"), (1, 16, 16), 0.3)
    bias = np.exp(np.asarray(log_bias))
    np.testing.assert_allclose(biased, plain * bias, rtol=1e-4, atol=1e-7)
    assert np.ptp(bias) > 0.1


def test_acquire_tagged_undersampling_zero_fills_unsampled_lines():
    key = jax.random.key(7)
    coils = _tagged_coils(key, acceleration=2.0, center_lines=4)[2]
    mask = cartesian_mask(stream(key, "mr.mask"), 16, 2.0, center_lines=4)
    k = np.abs(np.asarray(fft2c(coils)))  # (P, C, nz, ny, nx)
    missing = ~np.asarray(mask)
    assert missing.any() and k[..., ~missing, :].max() > 0
    assert k[..., missing, :].max() <= 1e-5 * k.max()


def test_simulate_tagged_accepts_the_cine_acquisition_options(subject, geometry):
    seq = TaggingSequence(tag_spacing=TAG)
    kw = dict(cardiac_phases=(0.0,), sequence=seq)
    key = jax.random.key(8)

    def run(**acq):
        acq = MRAcquisition(oversample=1, **acq)
        return simulate_tagged(key, subject, geometry, acquisition=acq, **kw).image

    full = run()
    for img in (run(acceleration=2.0), run(bias_std=0.2, b0_std=20.0)):
        assert img.shape == full.shape and np.all(np.isfinite(np.asarray(img)))
        assert not np.allclose(img, full)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sequence=TaggingSequence(tag_spacing=0.0)), "tag_spacing"),
        (dict(sequence=TaggingSequence(flip_total=-1.0)), "flip_total"),
        (dict(sequence=TaggingSequence(readout_flip=2.0)), "readout_flip"),
        (dict(sequence=TaggingSequence(te=5e-3)), "TE must not exceed TR"),
        (dict(sequence=TaggingSequence(weights=(1, -1))), "weights"),
        (dict(cardiac_phases=(1.2,)), "cardiac_phases"),
        (dict(blood_washout=0.0), "blood_washout"),
        (dict(acquisition=MRAcquisition(acceleration=0.5)), "acceleration"),
        (dict(acquisition=MRAcquisition(b0_std=-1.0)), "b0_std"),
        (dict(acquisition=MRAcquisition(bias_std=-0.1)), "bias_std"),
    ],
)
def test_simulate_tagged_errors(subject, geometry, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_tagged(jax.random.key(0), subject, geometry, **kwargs)


# --------------------------------------------------------------------- cine_to_tagged
def test_cine_to_tagged_identity_without_tags_or_contrast():
    img = np.random.default_rng(0).uniform(size=(3, 20, 24)).astype(np.float32)
    out = cine_to_tagged(
        img, pixel_spacing=1.5, tag_spacing=7.0, flip_total=0.0, contrast_exponent=1.0
    )
    np.testing.assert_allclose(out, img, rtol=1e-6)


def test_cine_to_tagged_square_root_and_null_tag_centres():
    img = np.full((1, 21, 21), 0.25, np.float32)
    out = np.asarray(
        cine_to_tagged(img, pixel_spacing=1.0, tag_spacing=5.0, flip_total=math.pi / 2)
    )
    # image centre is a tag centre; 90 deg nulls it; a uniform image keeps its
    # maximum (the power law acts on the image normalised by its maximum)
    assert abs(out[0, 10, 10]) < 1e-6
    np.testing.assert_allclose(out.max(), 0.25, rtol=1e-2)
    lines = np.asarray(
        cine_to_tagged(
            img, pixel_spacing=1.0, tag_spacing=4.0, flip_total=math.pi / 2, grid=False
        )
    )
    np.testing.assert_allclose(lines[0, :, 12], 0.25, rtol=1e-5)  # midline: m0
    np.testing.assert_allclose(lines[0, :, 10], 0.0, atol=1e-6)


@pytest.mark.parametrize("angle", [0.0, 0.5, 2.0])
def test_cine_to_tagged_period_at_any_angle(angle):
    n = 128
    img = np.ones((n, n), np.float32)
    out = np.asarray(
        cine_to_tagged(
            img,
            pixel_spacing=(1.0, 1.0),
            tag_spacing=7.0,
            flip_total=1.2,
            angle=angle,
            grid=False,
        )
    )
    w = np.outer(np.hanning(n), np.hanning(n))
    spec = np.abs(np.fft.fft2((out - out.mean()) * w, s=(8 * n, 8 * n)))
    iy, ix = np.unravel_index(np.argmax(spec), spec.shape)
    f = np.hypot(np.fft.fftfreq(8 * n)[iy], np.fft.fftfreq(8 * n)[ix])
    assert abs(1.0 / f - 7.0) < 7.0**2 / (8 * n)


def test_cine_to_tagged_fading_is_exponential_without_readout():
    img = np.ones((4, 1, 15, 15), np.float32)
    t = np.array([0.0, 0.2, 0.5, 1.0])
    out = np.asarray(
        cine_to_tagged(
            img,
            pixel_spacing=1.0,
            tag_spacing=6.0,
            flip_total=math.pi / 2,
            frame_times=t[:, None],
            readout_flip=0.0,
            t1=0.8,
        )
    )
    # tag centre: Mz 0 at t = 0, recovering as 1 - exp(-t/T1)
    np.testing.assert_allclose(out[:, 0, 7, 7], 1 - np.exp(-t / 0.8), atol=1e-5)


def test_cine_to_tagged_gradients_finite():
    img = jnp.asarray(np.pad(np.ones((6, 6), np.float32), 1))  # zeros at the border

    def loss(image, flip):
        return jnp.sum(
            cine_to_tagged(
                image,
                pixel_spacing=1.5,
                tag_spacing=6.0,
                flip_total=flip,
                frame_times=0.1,
            )
        )

    g_img, g_flip = jax.grad(loss, argnums=(0, 1))(img, 1.2)
    assert np.all(np.isfinite(np.asarray(g_img))) and np.isfinite(float(g_flip))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pixel_spacing=0.0), "pixel_spacing"),
        (dict(pixel_spacing=(1.0, 1.0, 1.0)), "pixel_spacing"),
        (dict(frame_times=np.zeros(5)), "frame_times"),
        (dict(contrast_exponent=0.0), "contrast_exponent"),
    ],
)
def test_cine_to_tagged_errors(kwargs, match):
    base = dict(pixel_spacing=1.0, tag_spacing=5.0, flip_total=1.0)
    with pytest.raises(ValueError, match=match):
        cine_to_tagged(np.ones((3, 8, 8)), **{**base, **kwargs})
    with pytest.raises(ValueError, match="image"):
        cine_to_tagged(-np.ones((8, 8)), **base)


def test_cine_to_tagged_on_real_acdc(shared_data):
    files = sorted((shared_data / "acdc").glob("*.h5"))
    if not files:
        pytest.skip("no ACDC HDF5 files")
    image, label = read_image_label_h5(files[0])
    out = np.asarray(
        cine_to_tagged(
            image,
            pixel_spacing=1.5,
            tag_spacing=7.5,
            flip_total=math.radians(70),
            angle=0.6,
        )
    )
    assert out.shape == image.shape and np.all(np.isfinite(out))
    # tags only lower the square-root image; untagged maxima reach it
    root = np.sqrt(image / image.max()) * image.max()
    assert np.all(out <= root + 1e-6) and np.all(
        out >= math.cos(math.radians(70)) ** 2 * root - 1e-6
    )
    # in the myocardium the pattern's mean is the tag-line average of Mz
    myo = label == 2
    ratio = out[myo] / np.maximum(root[myo], 1e-6)
    mean = (
        float(
            np.mean(
                spamm_mz(
                    np.linspace(0, 7.5, 64, endpoint=False),
                    spacing=7.5,
                    flip_total=math.radians(70),
                )
            )
        )
        ** 2
    )
    assert abs(ratio.mean() - mean) < 0.05
