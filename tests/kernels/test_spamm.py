"""SPAMM tagging and tag-fading kernels against an independent float64 NumPy reference.

The reference steps a magnetization vector through 3x3 rotation matrices (Rodrigues'
formula for the pulses, a z rotation for the tagging gradient, a crusher at the end)
and the readout train pulse by pulse; it shares no code with the kernels.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxsim.kernels import spamm_mz, spamm_pattern, tag_fading

X64 = bool(jax.config.read("jax_enable_x64"))
# float32 against float64: absolute error per unit m0 (measured worst case 1e-6)
ATOL = 1e-12 if X64 else 5e-6


# --------------------------------------------------------------------------- reference
def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array(
        [[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]
    )
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def ref_spamm(position, spacing, flip_total, weights, m0=1.0, mz0=None, relax=None):
    """Mz after the train, one position at a time (float64)."""
    w = np.asarray(weights, float) / np.sum(weights)
    m = np.array([0.0, 0.0, m0 if mz0 is None else mz0])
    grad = _rot([0, 0, 1], 2 * np.pi * position / spacing)  # any sense: Mz is even
    for k, wk in enumerate(w):
        if k:
            m = grad @ m
            if relax is not None:
                t1, t2, dt = relax
                e1, e2 = np.exp(-dt / t1), np.exp(-dt / t2)
                m = np.array([m[0] * e2, m[1] * e2, m[2] * e1 + m0 * (1 - e1)])
        m = _rot([1, 0, 0], -flip_total * wk) @ m  # left-handed: +z towards +y
    return m[2]  # crusher


def ref_fading(mz0, time, t1, m0, flip, tr):
    """Step the readout train: pulses at time - n TR, ..., time - TR."""
    n = int(np.floor(time / tr + 1e-9))
    tau = time - n * tr
    mz = m0 + (mz0 - m0) * np.exp(-tau / t1)
    for _ in range(n):
        mz = mz * np.cos(flip)
        mz = m0 + (mz - m0) * np.exp(-tr / t1)
    return mz


WEIGHTS = [(1, 3, 3, 1), (1, 1), (1, 2, 1), (1, 4, 6, 4, 1), (2.0, 0.5, 1.0)]


# --------------------------------------------------------------------------- spamm_mz
@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("flip_deg", [0.0, 45.0, 70.0, 90.0, 150.0])
def test_spamm_matches_rotation_reference(weights, flip_deg):
    rng = np.random.default_rng(len(weights) + int(flip_deg))
    pos = rng.uniform(-20.0, 20.0, 64)
    spacing, m0 = 7.0, 0.8
    flip = math.radians(flip_deg)
    got = np.asarray(
        spamm_mz(pos, spacing=spacing, flip_total=flip, weights=weights, m0=m0)
    )
    want = np.array([ref_spamm(p, spacing, flip, weights, m0) for p in pos])
    np.testing.assert_allclose(got, want, atol=ATOL * m0, rtol=0)


@pytest.mark.parametrize("weights", [(1, 3, 3, 1), (1, 1)])
def test_spamm_relaxation_matches_reference(weights):
    pos = np.linspace(-6.0, 6.0, 41)
    t1, t2, dt, m0 = 0.9, 0.05, 2e-3, 1.2
    got = np.asarray(
        spamm_mz(
            pos,
            spacing=6.0,
            flip_total=1.2,
            weights=weights,
            m0=m0,
            t1=t1,
            t2=t2,
            pulse_interval=dt,
        )
    )
    want = [ref_spamm(p, 6.0, 1.2, weights, m0, relax=(t1, t2, dt)) for p in pos]
    np.testing.assert_allclose(got, want, atol=ATOL * m0, rtol=0)
    # relaxation during the train lowers the tag contrast
    ideal = np.asarray(
        spamm_mz(pos, spacing=6.0, flip_total=1.2, weights=weights, m0=m0)
    )
    assert np.ptp(got) < np.ptp(ideal)


@pytest.mark.parametrize("flip_deg", [30.0, 70.0, 90.0, 120.0])
@pytest.mark.parametrize("weights", WEIGHTS)
def test_tag_centres_see_the_total_flip(flip_deg, weights):
    """At phase 2 pi k the sub-pulses add: Mz = m0 cos(flip_total); 0 for 90 deg."""
    spacing = 5.0
    centres = spacing * np.arange(-3, 4)
    mz = spamm_mz(
        centres, spacing=spacing, flip_total=math.radians(flip_deg), weights=weights
    )
    np.testing.assert_allclose(mz, math.cos(math.radians(flip_deg)), atol=10 * ATOL)


def test_ninety_degrees_nulls_tag_centres_and_leaves_midlines_for_binomial():
    """1-3-3-1 at 90 deg: zero at the tag centres, full m0 half a period away
    (the binomial train's net rotation there is 1 - 3 + 3 - 1 = 0)."""
    mz = spamm_mz(jnp.asarray([0.0, 2.5, 5.0]), spacing=5.0, flip_total=math.pi / 2)
    np.testing.assert_allclose(mz, [0.0, 1.0, 0.0], atol=10 * ATOL)


def _fft_period(image, pixel, pad=1):
    ny, nx = image.shape
    spec = np.abs(np.fft.fft2(image, s=(pad * ny, pad * nx)))
    spec[0, 0] = 0.0
    iy, ix = np.unravel_index(np.argmax(spec), spec.shape)
    fy = np.fft.fftfreq(pad * ny, pixel)[iy]
    fx = np.fft.fftfreq(pad * nx, pixel)[ix]
    return 1.0 / np.hypot(fx, fy), np.arctan2(fy, fx)


@pytest.mark.parametrize(
    "angle", [0.0, math.atan2(4, 3), math.atan2(12, 5), math.pi / 2, -math.atan2(3, 4)]
)
def test_period_equals_spacing_exact_bins(angle):
    """Angles whose direction cosines are rational put the peak on an FFT bin."""
    n, pixel, spacing = 520, 1.0, 8.0  # 520 / 8 * (3/5, 4/5, 5/13, 12/13) integers
    c = (np.arange(n) - n // 2) * pixel
    y, x = np.meshgrid(c, c, indexing="ij")
    mz = np.asarray(
        spamm_pattern(x, y, spacing=spacing, flip_total=1.2, angle=angle, grid=False)
    )
    period, direction = _fft_period(mz - mz.mean(), pixel)
    np.testing.assert_allclose(period, spacing, rtol=1e-9)
    # the fundamental's direction is the encoding direction (up to sign)
    assert abs(math.sin(direction - angle)) < 1e-9


@pytest.mark.parametrize("angle", [0.3, 1.0, 2.2, -0.7])
@pytest.mark.parametrize("spacing", [5.0, 7.3])
def test_period_equals_spacing_any_angle(angle, spacing):
    n, pixel = 128, 1.0
    c = (np.arange(n) - n / 2) * pixel
    y, x = np.meshgrid(c, c, indexing="ij")
    mz = np.asarray(
        spamm_pattern(x, y, spacing=spacing, flip_total=1.2, angle=angle, grid=False)
    )
    window = np.outer(np.hanning(n), np.hanning(n))
    period, direction = _fft_period((mz - mz.mean()) * window, pixel, pad=8)
    # zero padding by 8: frequency resolution 1 / (8 n pixel)
    resolution = spacing**2 / (8 * n * pixel)
    assert abs(period - spacing) <= resolution
    assert abs(math.sin(direction - angle)) < 2 * spacing / (8 * n * pixel) * 2 * np.pi


def test_grid_is_product_of_orthogonal_trains():
    """Without relaxation the second train scales Mz linearly: grid = m1 * m2 / m0."""
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-30, 30, (2, 200))
    kw = dict(spacing=6.0, flip_total=1.1, angle=0.4, m0=0.7)
    grid = spamm_pattern(x, y, **kw)
    a, s = 0.4, math.sin(0.4)
    m1 = spamm_mz(x * math.cos(a) + y * s, spacing=6.0, flip_total=1.1, m0=0.7)
    m2 = spamm_mz(-x * s + y * math.cos(a), spacing=6.0, flip_total=1.1, m0=0.7)
    np.testing.assert_allclose(grid, m1 * m2 / 0.7, atol=ATOL)
    want = [
        ref_spamm(
            -xi * s + yi * math.cos(a),
            6.0,
            1.1,
            (1, 3, 3, 1),
            0.7,
            mz0=ref_spamm(xi * math.cos(a) + yi * s, 6.0, 1.1, (1, 3, 3, 1), 0.7),
        )
        for xi, yi in zip(x, y, strict=True)
    ]
    np.testing.assert_allclose(grid, want, atol=ATOL)


def test_spamm_under_jit_and_vmap():
    f = jax.jit(lambda p, a: spamm_mz(p, spacing=5.0, flip_total=a))
    pos = jnp.linspace(0.0, 5.0, 9)
    eager = spamm_mz(pos, spacing=5.0, flip_total=1.0)
    np.testing.assert_allclose(f(pos, 1.0), eager, atol=ATOL)
    batched = jax.vmap(f, in_axes=(None, 0))(pos, jnp.asarray([0.5, 1.0]))
    np.testing.assert_allclose(batched[1], eager, atol=ATOL)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spacing=0.0, flip_total=1.0), "spacing"),
        (dict(spacing=5.0, flip_total=-0.1), "flip_total"),
        (dict(spacing=5.0, flip_total=7.0), "flip_total"),
        (dict(spacing=5.0, flip_total=1.0, weights=(1, -1)), "weights"),
        (dict(spacing=5.0, flip_total=1.0, weights=(0, 0)), "weights"),
        (dict(spacing=5.0, flip_total=1.0, m0=-1.0), "m0"),
        (dict(spacing=5.0, flip_total=1.0, t1=1.0), "t1 and t2"),
        (dict(spacing=5.0, flip_total=1.0, t1=1.0, t2=0.0), "t2"),
        (dict(spacing=float("nan"), flip_total=1.0), "spacing"),
    ],
)
def test_spamm_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spamm_mz(0.0, **kwargs)


# --------------------------------------------------------------------------- fading
def test_free_recovery_is_exponential():
    t = np.linspace(0.0, 3.0, 31)
    mz0, t1, m0 = -0.4, 0.85, 0.9
    got = np.asarray(tag_fading(mz0, t, t1=t1, m0=m0))
    np.testing.assert_allclose(got, m0 + (mz0 - m0) * np.exp(-t / t1), atol=ATOL)
    # tag contrast (difference of two tagged states) decays as exp(-t / T1)
    contrast = np.asarray(tag_fading(1.0, t, t1=t1) - tag_fading(0.0, t, t1=t1))
    np.testing.assert_allclose(contrast, np.exp(-t / t1), rtol=10 * ATOL, atol=ATOL)


def test_zero_flip_readout_is_free_recovery():
    t = np.linspace(0.0, 1.0, 23)
    with_pulses = tag_fading(0.2, t, t1=0.7, tr=4e-3, flip=0.0)
    np.testing.assert_allclose(with_pulses, tag_fading(0.2, t, t1=0.7), atol=10 * ATOL)


@pytest.mark.parametrize("flip_deg", [5.0, 12.0, 30.0])
def test_spoiled_readout_matches_stepped_reference(flip_deg):
    flip, tr, t1, m0 = math.radians(flip_deg), 4.5e-3, 1.1, 0.8
    times = np.array([0.0, 0.003, 0.0451, 0.2, 0.3333, 0.9])
    mz0 = np.array([-0.5, 0.0, 0.6])[:, None]
    got = np.asarray(tag_fading(mz0, times, t1=t1, m0=m0, flip=flip, tr=tr))
    want = np.array(
        [[ref_fading(m, t, t1, m0, flip, tr) for t in times] for m in mz0[:, 0]]
    )
    np.testing.assert_allclose(got, want, atol=20 * ATOL, rtol=0)


def test_tag_contrast_decays_as_cos_power_times_t1():
    flip, tr, t1 = math.radians(10.0), 5e-3, 1.0
    n = np.arange(0, 120, 7)
    t = n * tr + 0.5 * tr  # away from pulse instants
    contrast = tag_fading(1.0, t, t1=t1, flip=flip, tr=tr) - tag_fading(
        0.0, t, t1=t1, flip=flip, tr=tr
    )
    np.testing.assert_allclose(
        contrast, np.cos(flip) ** n * np.exp(-t / t1), rtol=50 * ATOL, atol=ATOL
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(t1=0.0), "t1"),
        (dict(t1=1.0, flip=2.0, tr=5e-3), "flip"),
        (dict(t1=1.0, tr=0.0), "tr"),
        (dict(t1=1.0, m0=-1.0), "m0"),
    ],
)
def test_fading_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tag_fading(0.5, 0.1, **kwargs)
    with pytest.raises(ValueError, match="time"):
        tag_fading(0.5, -0.1, t1=1.0)


# --------------------------------------------------------------------------- grads
@pytest.mark.skipif(not X64, reason="check_grads needs float64")
def test_spamm_gradients():
    pos = jnp.linspace(-4.0, 4.0, 7)

    def f(p, spacing, flip, t1, t2):
        return spamm_mz(
            p, spacing=spacing, flip_total=flip, t1=t1, t2=t2, pulse_interval=1e-3
        )

    check_grads(jax.jit(f), (pos, 5.0, 1.2, 0.9, 0.06), order=2, modes=("rev",))

    def g(x, y, angle, flip):
        return spamm_pattern(x, y, spacing=6.0, flip_total=flip, angle=angle)

    check_grads(jax.jit(g), (pos, pos[::-1], 0.3, 1.0), order=1, modes=("fwd", "rev"))


@pytest.mark.skipif(not X64, reason="check_grads needs float64")
def test_fading_gradients():
    t = jnp.asarray([0.0123, 0.2071, 0.5555])  # away from pulse instants

    def f(mz0, time, t1, flip):
        return tag_fading(mz0, time, t1=t1, m0=0.9, flip=flip, tr=4e-3)

    check_grads(jax.jit(f), (0.3, t, 1.1, 0.2), order=2, modes=("rev",))


def test_gradients_finite_float32():
    g = jax.grad(
        lambda a: jnp.sum(
            spamm_pattern(jnp.arange(9.0), 1.0, spacing=5.0, flip_total=a) ** 2
        )
    )(math.pi / 2)
    assert np.isfinite(g)
    g = jax.grad(
        lambda a: jnp.sum(tag_fading(0.0, jnp.arange(3.0), t1=1.0, flip=a, tr=5e-3))
    )(0.0)
    assert np.isfinite(g)
