"""Invalid input under jit: NaN where invalid (never a plausible value), and the
opt-in checked mode raises the eager checks' own messages."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.kernels import (
    bssfp_signal,
    bssfp_transient,
    mrxcat_bssfp_signal,
    spamm_mz,
    spamm_pattern,
    spoiled_gre_signal,
    tag_fading,
)
from jaxsim.kernels.checks import checked_call

# (name, kernel, positional args, keyword args) with one invalid value each
CASES = [
    ("bssfp t1<0", bssfp_signal, (0.9, -1.0, 0.25, 3.1e-3, 1.55e-3, 1.0), {}),
    ("bssfp t2>t1", bssfp_signal, (0.9, 0.2, 0.25, 3.1e-3, 1.55e-3, 1.0), {}),
    ("bssfp te>tr", bssfp_signal, (0.9, 1.0, 0.25, 3.1e-3, 4.0e-3, 1.0), {}),
    ("bssfp flip", bssfp_signal, (0.9, 1.0, 0.25, 3.1e-3, 1.55e-3, 4.0), {}),
    ("bssfp pd<0", bssfp_signal, (-0.5, 1.0, 0.25, 3.1e-3, 1.55e-3, 1.0), {}),
    (
        "transient t1<0",
        bssfp_transient,
        (0.9, -1.0, 0.25, 3.1e-3, 1.55e-3, 1.0, 7),
        {},
    ),
    ("mrxcat te<0", mrxcat_bssfp_signal, (0.9, 1.0, 0.25, -1.0, 1.0), {}),
    ("spoiled tr<0", spoiled_gre_signal, (0.9, 1.0, 0.25, -3e-3, 1e-3, 0.3), {}),
    ("spamm spacing", spamm_mz, (1.5,), dict(spacing=-5.0, flip_total=1.0)),
    ("spamm flip", spamm_mz, (1.5,), dict(spacing=5.0, flip_total=7.0)),
    (
        "pattern spacing",
        spamm_pattern,
        (1.5, 2.0),
        dict(spacing=-5.0, flip_total=1.0),
    ),
    ("fading t1<0", tag_fading, (0.2, 0.5), dict(t1=-1.0)),
    ("fading flip", tag_fading, (0.2, 0.5), dict(t1=1.0, flip=2.0, tr=5e-3)),
]


def _eager_message(fn, args, kwargs):
    with pytest.raises(ValueError) as err:
        fn(*args, **kwargs)
    return str(err.value)


@pytest.mark.parametrize("name, fn, args, kwargs", CASES, ids=[c[0] for c in CASES])
def test_invalid_input_under_jit_is_nan(name, fn, args, kwargs):
    out = jax.jit(lambda a, k: fn(*a, **k))(args, kwargs)  # every value traced
    assert np.all(np.isnan(np.asarray(out))), (name, out)


@pytest.mark.parametrize("name, fn, args, kwargs", CASES, ids=[c[0] for c in CASES])
def test_checked_mode_raises_the_eager_message(name, fn, args, kwargs):
    eager = _eager_message(fn, args, kwargs)
    with pytest.raises(ValueError) as err:
        checked_call(jax.jit(lambda a, k: fn(*a, **k)), args, kwargs)
    assert str(err.value) == eager


def test_only_invalid_elements_become_nan_and_valid_ones_are_exact():
    t1 = jnp.asarray([1.0, -1.0, 0.8, 0.1])  # second negative, last below t2
    got = np.asarray(jax.jit(bssfp_signal)(0.9, t1, 0.25, 3.1e-3, 1.55e-3, 1.0))
    assert np.isnan(got[1]) and np.isnan(got[3])
    for i in (0, 2):
        want = bssfp_signal(0.9, float(t1[i]), 0.25, 3.1e-3, 1.55e-3, 1.0)
        np.testing.assert_allclose(got[i], np.asarray(want), rtol=1e-6)


def test_valid_input_is_unchanged_by_checked_mode_and_gradients_flow():
    args = (0.9, 1.0, 0.25, 3.1e-3, 1.55e-3, 1.0)
    plain = bssfp_signal(*args)
    np.testing.assert_array_equal(checked_call(jax.jit(bssfp_signal), *args), plain)
    g = jax.grad(lambda f: jnp.abs(jax.jit(bssfp_signal)(*args[:5], f)))(1.0)
    assert np.isfinite(float(g)) and float(g) != 0.0


def test_checked_mode_does_not_leak_checks_into_later_traces():
    # After checked mode, a plain jitted call of the same function still runs
    # (a stale trace holding checks would fail: they need checkify).
    with pytest.raises(ValueError):
        checked_call(jax.jit(bssfp_signal), 0.9, -1.0, 0.25, 3.1e-3, 1.55e-3, 1.0)
    out = jax.jit(bssfp_signal)(0.9, 1.0, 0.25, 3.1e-3, 1.55e-3, math.radians(60))
    assert np.isfinite(np.abs(np.asarray(out)))
