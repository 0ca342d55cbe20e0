"""Layers: the fast convolution forms equal the direct ones, transposed convolution
is the adjoint of convolution, norms normalise, linear upsampling is PyTorch's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.models import _conv
from jaxsim.models._layers import GroupNorm, InstanceNorm, upsample_linear

# jitted (sizes static): one compilation per case instead of one per primitive
conv = jax.jit(_conv.conv, static_argnums=(2, 3))
conv_reference = jax.jit(_conv.conv_reference, static_argnums=(2, 3))
conv_transpose = jax.jit(_conv.conv_transpose, static_argnums=(2, 3, 4))
conv_transpose_reference = jax.jit(
    _conv.conv_transpose_reference, static_argnums=(2, 3, 4)
)

# (spatial dims, kernel, stride, padding, output padding)
CASES = [
    (2, 3, 2, 1, 1),  # MONAI UNet's strided conv and its transposed conv
    (2, 4, 2, 1, 0),  # even kernel: phases with different tap counts
    (3, 3, 2, 1, 1),  # 3D: depth folded into channels, z strided
    (3, (1, 3, 3), (1, 2, 2), (0, 1, 1), (0, 1, 1)),  # anisotropic (nnU-Net plans)
    (3, 5, 3, 2, 2),  # kernel > stride + 1, stride 3
]


def _tuple(v, d):
    return (v,) * d if isinstance(v, int) else v


def _arrays(d, k, cin=3, cout=4, seed=0):
    key = jax.random.key(seed)
    x = jax.random.normal(key, (2, *(5, 6, 7)[:d], cin))
    w = jax.random.normal(jax.random.fold_in(key, 1), (*_tuple(k, d), cin, cout))
    return x, w


@pytest.mark.parametrize(("d", "k", "s", "p", "op"), CASES)
def test_fast_convolutions_equal_the_direct_forms(d, k, s, p, op):
    x, w = _arrays(d, k)
    s, p, op = _tuple(s, d), _tuple(p, d), _tuple(op, d)
    ours, ref = conv(x, w, s, p), conv_reference(x, w, s, p)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
    ours, ref = conv_transpose(x, w, s, p, op), conv_transpose_reference(x, w, s, p, op)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("d", "k", "s", "p", "op"), CASES)
def test_transposed_convolution_gradients_equal_the_direct_forms(d, k, s, p, op):
    """The custom VJP (adjoint strided convolution) against autodiff of lax."""
    x, w = _arrays(d, k, seed=4)
    s, p, op = _tuple(s, d), _tuple(p, d), _tuple(op, d)
    cot = jax.random.normal(jax.random.key(5), conv_transpose(x, w, s, p, op).shape)

    def grads(fn):
        return jax.jit(jax.grad(lambda x, w: jnp.vdot(fn(x, w, s, p, op), cot), (0, 1)))

    ours = grads(_conv.conv_transpose)(x, w)
    ref = grads(_conv.conv_transpose_reference)(x, w)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("d", "k", "s", "p", "op"), CASES)
def test_transposed_convolution_is_the_adjoint(d, k, s, p, op):
    """<conv(x), y> = <x, conv_transpose(y)> with the kernel's channels swapped."""
    s, p = _tuple(s, d), _tuple(p, d)
    x, w = _arrays(d, k, seed=2)
    y_shape = conv(x, w, s, p).shape
    y = jax.random.normal(jax.random.key(3), y_shape)
    # output padding that makes the transposed output as large as x
    k_ = _tuple(k, d)
    op = tuple(
        n - ((m - 1) * si - 2 * pi + ki)
        for n, m, si, pi, ki in zip(x.shape[1:-1], y_shape[1:-1], s, p, k_, strict=True)
    )
    xt = conv_transpose(y, jnp.swapaxes(w, -1, -2), s, p, op)
    assert xt.shape == x.shape
    lhs = float(jnp.vdot(conv(x, w, s, p), y))
    rhs = float(jnp.vdot(x, xt))
    assert lhs == pytest.approx(rhs, rel=1e-4)


def test_instance_and_group_norm_normalise():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (2, 6, 5, 16))
    y = np.asarray(InstanceNorm(16)(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1.0, rtol=1e-3)
    g = np.asarray(GroupNorm(16, 8)(x)).reshape(2, 6, 5, 8, 2)
    np.testing.assert_allclose(g.mean(axis=(1, 2, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(g.var(axis=(1, 2, 4)), 1.0, rtol=1e-3)


def test_linear_upsampling_has_half_pixel_centres():
    # PyTorch interpolate(scale_factor=2, mode="linear", align_corners=False) of
    # [0, 1, 3]: samples at -0.25 (clamped), 0.25, 0.75, 1.25, 1.75, 2.25 (clamped)
    x = jnp.array([0.0, 1.0, 3.0]).reshape(1, 1, 3, 1)
    y = upsample_linear(x)[0, 0, :, 0]
    np.testing.assert_allclose(y, [0.0, 0.25, 0.75, 1.5, 2.5, 3.0], atol=1e-6)
