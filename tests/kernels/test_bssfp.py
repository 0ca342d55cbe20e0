"""bSSFP kernels against an independent float64 NumPy Bloch simulation.

The reference below builds the sequence from 3x3 rotation and relaxation matrices
(Rodrigues' formula for the pulses) and either solves the fixed point of one
repetition or steps the whole RF train pulse by pulse; it shares no code with the
kernels.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxsim.kernels import (
    bssfp_signal,
    bssfp_transient,
    mrxcat_bssfp_signal,
    spoiled_gre_signal,
)

X64 = bool(jax.config.read("jax_enable_x64"))
# float32 kernels against the float64 reference: absolute error per unit proton
# density (measured worst case over 2e4 random valid inputs: 6e-6).
ATOL32 = 2e-5
ATOL = 1e-11 if X64 else ATOL32


# --------------------------------------------------------------------------- reference
def _rf(flip, phase):
    """Physical (left-handed) rotation by ``flip`` about (cos phase, sin phase, 0)."""
    axis = np.array([np.cos(phase), np.sin(phase), 0.0])
    k = np.array(
        [[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]
    )
    a = -flip
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _free(pd, t1, t2, t, df):
    """Affine map (matrix, offset) of free precession + relaxation over time t."""
    phi = -2 * np.pi * df * t  # Mxy -> Mxy exp(-2 pi i df t)
    c, s = np.cos(phi), np.sin(phi)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    e2, e1 = np.exp(-t / t2), np.exp(-t / t1)
    return rot @ np.diag([e2, e2, e1]), np.array([0, 0, pd * (1 - e1)])


def _demodulate(m, phase):
    return (m[0] + 1j * m[1]) * np.exp(-1j * phase)


def ref_steady_state(pd, t1, t2, tr, te, flip, df=0.0, dphi=np.pi):
    """Fixed point in the frame of the pulse, by a linear solve."""
    a, b = _free(pd, t1, t2, tr, df)
    # Advance of the RF frame between pulses: rotate coordinates by -dphi.
    c, s = np.cos(-dphi), np.sin(-dphi)
    frame = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    rf = _rf(flip, 0.0)
    m = np.linalg.solve(np.eye(3) - rf @ frame @ a, rf @ frame @ b)
    ae, be = _free(pd, t1, t2, te, df)
    return _demodulate(ae @ m, 0.0)


def ref_stepped(pd, t1, t2, tr, te, flip, df, dphi, n, preparation):
    """Echo after pulse ``n`` by stepping the RF train in the laboratory frame."""
    m = np.array([0.0, 0.0, pd])
    if preparation == "half_alpha":
        m = _rf(flip / 2, -dphi) @ m
        a, b = _free(pd, t1, t2, tr / 2, df)
        m = a @ m + b
    a, b = _free(pd, t1, t2, tr, df)
    for k in range(n + 1):
        if k:
            m = a @ m + b
        m = _rf(flip, k * dphi) @ m
    ae, be = _free(pd, t1, t2, te, df)
    return _demodulate(ae @ m, n * dphi)


def ref_spoiled(pd, t1, t2, tr, te, flip, n=4000):
    """Ideal spoiling by stepping: transverse magnetization removed before pulses."""
    m = np.array([0.0, 0.0, pd])
    a, b = _free(pd, t1, t2, tr, 0.0)
    for _ in range(n):
        m = _rf(flip, 0.0) @ np.array([0.0, 0.0, m[2]])
        echo = _free(pd, t1, t2, te, 0.0)[0] @ m
        m = a @ m + b
    return abs(echo[0] + 1j * echo[1])


# ------------------------------------------------------------------------ cases
CASES = [
    # pd, t1, t2, tr, te, flip, df, dphi
    (1.0, 1.2, 0.05, 3e-3, 1.5e-3, math.radians(60), 0.0, math.pi),  # myocardium
    (0.95, 1.55, 0.25, 3.1e-3, 1.56e-3, math.radians(60), 0.0, math.pi),  # blood
    (0.8, 1.0, 0.2, 5e-3, 2e-3, 0.3, 37.0, math.pi),
    (0.7, 0.35, 0.06, 4e-3, 4e-3, 1.2, -120.0, math.pi),  # fat, TE = TR
    (1.0, 0.9, 0.9, 4e-3, 1e-3, 2.5, -80.0, 0.7),  # T2 = T1, odd phase cycling
    (1.0, 2.0, 0.1, 3e-3, 1.5e-3, 0.8, 1 / (2 * 3e-3), math.pi),  # at the band
    (1.0, 2.0, 0.1, 3e-3, 1.5e-3, 0.8, 55.0, 0.0),  # constant-phase train
]


@pytest.mark.parametrize("case", CASES)
def test_steady_state_matches_matrix_fixed_point(case):
    *args, dphi = case
    ref = ref_steady_state(*args, dphi=dphi)
    got = complex(bssfp_signal(*args, rf_phase_increment=dphi))
    assert abs(got - ref) <= ATOL * case[0] + 1e-6 * abs(ref) * (not X64)


@pytest.mark.parametrize("case", CASES[:5])
def test_steady_state_matches_brute_force_train(case):
    # After 30 T1 the train has forgotten its start; compare with a stepped train.
    pd, t1, t2, tr, te, flip, df, dphi = case
    n = int(30 * t1 / tr)
    ref = ref_stepped(pd, t1, t2, tr, te, flip, df, dphi, n, "none")
    got = complex(bssfp_signal(pd, t1, t2, tr, te, flip, df, rf_phase_increment=dphi))
    assert abs(got - ref) <= max(ATOL, 1e-9) * pd


@settings(max_examples=60, deadline=None)
@given(
    t1=st.floats(0.05, 5.0),
    t2_frac=st.floats(0.002, 1.0),
    tr=st.floats(1e-3, 20e-3),
    te_frac=st.floats(0.01, 1.0),
    flip=st.floats(0.0, math.pi),
    df=st.floats(-1000.0, 1000.0),
    dphi=st.sampled_from([0.0, math.pi / 2, math.pi]),
)
def test_steady_state_random_parameters(t1, t2_frac, tr, te_frac, flip, df, dphi):
    args = (1.0, t1, t1 * t2_frac, tr, tr * te_frac, flip, df)
    ref = ref_steady_state(*args, dphi=dphi)
    got = complex(bssfp_signal(*args, rf_phase_increment=dphi))
    assert abs(got - ref) <= ATOL


def test_on_resonance_closed_form():
    # Alternating-phase bSSFP on resonance (textbook form, e.g. Scheffler & Lehnhardt
    # 2003): |M| = M0 (1-E1) sin a / (1 - (E1 - E2) cos a - E1 E2), then exp(-TE/T2).
    pd, t1, t2, tr, te = 0.9, 1.1, 0.045, 3.2e-3, 1.6e-3
    flip = np.linspace(0.0, np.pi, 181)
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    expected = (
        pd
        * (1 - e1)
        * np.sin(flip)
        / (1 - (e1 - e2) * np.cos(flip) - e1 * e2)
        * np.exp(-te / t2)
    )
    got = bssfp_signal(pd, t1, t2, tr, te, flip)
    np.testing.assert_allclose(np.abs(got), expected, atol=ATOL, rtol=0)
    # On resonance with alternating phase the echo lies along +y (phase pi/2).
    np.testing.assert_allclose(np.real(got), 0.0, atol=ATOL)
    assert np.all(np.imag(got) >= -ATOL)


def test_banding_profile_is_periodic_and_dark_at_the_band():
    tr = 4e-3
    df = np.linspace(-1 / tr, 1 / tr, 801)
    s = np.abs(bssfp_signal(1.0, 1.0, 0.1, tr, tr / 2, 0.9, df))
    # Period 1/TR in off-resonance (magnitude), minimum at +-1/(2 TR).
    np.testing.assert_allclose(s[:400], s[400:800], atol=10 * ATOL)
    band = np.argmin(s[:400])
    assert abs(df[band] + 1 / (2 * tr)) <= (df[1] - df[0])
    assert s[band] < 0.2 * s[400]


def test_mrxcat_formula_is_the_short_tr_limit():
    pd, t1, t2, flip = 1.0, 1.2, 0.05, math.radians(60)
    gaps = []
    for tr in (4e-3, 2e-3, 1e-3, 5e-4):
        te = 1.5e-3 * tr / 4e-3
        exact = abs(complex(bssfp_signal(pd, t1, t2, tr, te, flip)))
        limit = float(mrxcat_bssfp_signal(pd, t1, t2, te, flip))
        gaps.append(abs(exact - limit) / limit)
    # First-order convergence in TR/T2: halving TR roughly halves the gap.
    assert gaps[-1] < 0.006
    ratios = np.array(gaps[:-1]) / np.array(gaps[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)


def test_mrxcat_formula_matches_its_definition():
    pd, t1, t2, te, flip = 0.95, 1.2, 0.1, 1.5e-3, math.radians(60)
    expected = pd * np.sin(flip) / ((t1 / t2 + 1) - np.cos(flip) * (t1 / t2 - 1))
    expected *= np.exp(-te / t2)
    np.testing.assert_allclose(
        mrxcat_bssfp_signal(pd, t1, t2, te, flip),
        expected,
        rtol=1e-6 if not X64 else 1e-14,
    )


@pytest.mark.parametrize("preparation", ["none", "half_alpha"])
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4], CASES[6]])
def test_transient_matches_stepped_train(case, preparation):
    pd, t1, t2, tr, te, flip, df, dphi = case
    n = np.array([0, 1, 2, 7, 40, 333])
    ref = np.array(
        [ref_stepped(pd, t1, t2, tr, te, flip, df, dphi, k, preparation) for k in n]
    )
    got = bssfp_transient(
        pd,
        t1,
        t2,
        tr,
        te,
        flip,
        n,
        df,
        rf_phase_increment=dphi,
        preparation=preparation,
    )
    np.testing.assert_allclose(got, ref, atol=(1e-10 if X64 else 1e-5) * pd, rtol=0)


def test_transient_converges_to_steady_state():
    pd, t1, t2, tr, te, flip = 1.0, 1.2, 0.05, 3e-3, 1.5e-3, math.radians(60)
    ss = complex(bssfp_signal(pd, t1, t2, tr, te, flip))
    n = np.array([10, 100, 1000, 20000])
    err = np.abs(np.asarray(bssfp_transient(pd, t1, t2, tr, te, flip, n)) - ss)
    assert err[-1] <= ATOL
    assert np.all(np.diff(err) < 0)
    # The alpha/2 preparation suppresses the on-resonance oscillation: after 10
    # pulses it is closer to steady state than a train started from equilibrium.
    cold = complex(bssfp_transient(pd, t1, t2, tr, te, flip, 10, preparation="none"))
    assert err[0] < abs(cold - ss)


def test_spoiled_gre_matches_stepped_spoiling_and_ernst_angle():
    pd, t1, t2, tr, te = 0.8, 1.0, 0.04, 8e-3, 3e-3
    for flip in (0.1, 0.4, 1.0):
        ref = ref_spoiled(pd, t1, t2, tr, te, flip)
        np.testing.assert_allclose(
            spoiled_gre_signal(pd, t1, t2, tr, te, flip),
            ref,
            rtol=1e-9 if X64 else 2e-5,
        )
    flips = np.linspace(0.01, 0.6, 2001)
    s = np.asarray(spoiled_gre_signal(pd, t1, t2, tr, te, flips))
    ernst = np.arccos(np.exp(-tr / t1))
    assert abs(flips[np.argmax(s)] - ernst) <= flips[1] - flips[0]


def test_broadcasting_jit_and_vmap_agree():
    t1 = jnp.array([0.9, 1.2, 1.5])[:, None]
    flip = jnp.linspace(0.1, 1.5, 5)[None, :]
    full = bssfp_signal(1.0, t1, 0.05, 3e-3, 1.5e-3, flip, 10.0)
    assert full.shape == (3, 5)
    jitted = jax.jit(bssfp_signal)(1.0, t1, 0.05, 3e-3, 1.5e-3, flip, 10.0)
    mapped = jax.vmap(
        lambda a: bssfp_signal(1.0, t1[:, 0], 0.05, 3e-3, 1.5e-3, a, 10.0)
    )(flip[0])
    np.testing.assert_allclose(jitted, full, rtol=1e-6)
    np.testing.assert_allclose(mapped.T, full, rtol=1e-6)
    assert full.dtype == (jnp.complex128 if X64 else jnp.complex64)


def _real_view(f):
    def g(*args):
        out = f(*args)
        return (
            jnp.stack([jnp.real(out), jnp.imag(out)]) if jnp.iscomplexobj(out) else out
        )

    return g


@pytest.mark.skipif(not X64, reason="finite-difference gradient checks need x64")
# Interior points only: finite differences step across T2 = T1 would be rejected.
@pytest.mark.parametrize(
    "case", [CASES[0], CASES[2], CASES[4][:2] + (0.85,) + CASES[4][3:]]
)
def test_check_grads_every_traced_argument(case):
    pd, t1, t2, tr, te, flip, df, dphi = case
    args = (pd, t1, t2, tr, te, flip, df, dphi)
    check_grads(
        _real_view(lambda *a: bssfp_signal(*a[:7], rf_phase_increment=a[7])),
        args,
        order=2,
        modes=("fwd", "rev"),
        eps=1e-6,
        rtol=1e-4,
    )
    check_grads(
        _real_view(
            lambda *a: bssfp_transient(*a[:6], 25, a[6], rf_phase_increment=a[7])
        ),
        args,
        order=1,
        modes=("fwd", "rev"),
        eps=1e-6,
        rtol=1e-4,
    )
    check_grads(mrxcat_bssfp_signal, (pd, t1, t2, te, flip), order=2, eps=1e-6)
    check_grads(spoiled_gre_signal, (pd, t1, t2, tr, te, flip), order=2, eps=1e-6)


def test_no_nan_in_values_or_gradients_on_edge_cases():
    rng = np.random.default_rng(1)
    n = 4000
    t1 = 10 ** rng.uniform(-2, 3, n)  # up to 1000 s
    t2 = t1 * rng.uniform(1e-3, 1.0, n)
    t2[::7] = t1[::7]  # T2 = T1
    tr = rng.uniform(1e-3, 20e-3, n)
    te = tr * rng.uniform(1e-3, 1.0, n)
    flip = rng.uniform(0.0, math.pi, n)
    flip[::5] = 0.0  # flip -> 0
    flip[1::5] = 1e-7
    df = rng.uniform(-2e3, 2e3, n)
    df[::3] = 1.0 / (2.0 * tr[::3])  # exactly at the band
    pd = np.ones(n)

    def loss(args):
        return jnp.sum(jnp.abs(bssfp_signal(*args)) ** 2)

    args = tuple(jnp.asarray(a) for a in (pd, t1, t2, tr, te, flip, df))
    assert np.all(np.isfinite(np.asarray(bssfp_signal(*args)).view(float)))
    grads = jax.grad(loss)(args)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    tgrad = jax.grad(lambda a: jnp.sum(jnp.abs(bssfp_transient(*a[:6], 50, a[6]))))(
        args
    )
    for g in tgrad:
        assert np.all(np.isfinite(np.asarray(g)))


def test_float32_within_stated_bound_of_float64_reference():
    rng = np.random.default_rng(2)
    n = 300
    t1 = 10 ** rng.uniform(-1.5, 1.5, n)
    params = (
        rng.uniform(0, 1, n),
        t1,
        t1 * rng.uniform(1e-3, 1, n),
        rng.uniform(1e-3, 1e-2, n),
    )
    te = params[3] * rng.uniform(0.01, 1, n)
    flip = rng.uniform(0, math.pi, n)
    df = rng.uniform(-500, 500, n)
    rows = zip(*params, te, flip, df, strict=True)
    ref = np.array([ref_steady_state(*row) for row in rows])
    got = np.asarray(bssfp_signal(*(np.float32(p) for p in (*params, te, flip, df))))
    assert got.dtype == np.complex64
    assert np.max(np.abs(got - ref)) <= ATOL32


BAD = [
    ({"t1": 0.0}, "t1"),
    ({"t1": -1.0}, "t1"),
    ({"t2": 0.0}, "t2"),
    ({"t2": 2.0}, "t2 must not exceed t1"),
    ({"tr": 0.0}, "tr"),
    ({"te": 0.0}, "te"),
    ({"te": 4e-3}, "te must lie in"),
    ({"flip": -0.1}, "flip"),
    ({"flip": 4.0}, "flip"),
    ({"pd": -1.0}, "pd"),
    ({"t1": float("nan")}, "t1 must be finite"),
    ({"off_resonance": float("inf")}, "off_resonance"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_invalid_input_raises_naming_the_argument(override, message):
    args = {
        "pd": 1.0,
        "t1": 1.0,
        "t2": 0.05,
        "tr": 3e-3,
        "te": 1.5e-3,
        "flip": 1.0,
        "off_resonance": 0.0,
    }
    args.update(override)
    with pytest.raises(ValueError, match=message):
        bssfp_signal(**args)
    with pytest.raises(ValueError, match=message):
        bssfp_transient(**args, n=3)


def test_transient_rejects_bad_index_and_preparation():
    args = (1.0, 1.0, 0.05, 3e-3, 1.5e-3, 1.0)
    with pytest.raises(ValueError, match="n must lie in"):
        bssfp_transient(*args, -1)
    with pytest.raises(TypeError, match="integer"):
        bssfp_transient(*args, 2.5)
    with pytest.raises(ValueError, match="preparation"):
        bssfp_transient(*args, 3, preparation="alpha/2")
