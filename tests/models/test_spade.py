"""SPADE / GauGAN networks: parameter counts against the hand-summed reference
(NVlabs/SPADE), spectral norm against an SVD, the SPADE layer against a float64
NumPy reference, resizing and pooling against PyTorch's rules, shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsim.models import (
    SPADE,
    MultiscaleDiscriminator,
    SPADEGenerator,
    SPADEResBlock,
    SpectralConv,
    SpectralVector,
    avg_pool_3x3,
    count_params,
    resize_nearest,
)

# -- the reference's layer list, summed by hand ---------------------------------
# nn.Conv2d(i, o, k) holds i*o*k*k weights (+ o biases); spectral_norm adds
# buffers (u, v), no parameters; the norms are affine=False (no parameters).


def _conv(i, o, k, bias=True):
    return i * o * k * k + (o if bias else 0)


def _spade(norm_nc, label_nc, nhidden=128):
    # mlp_shared conv3 + ReLU, mlp_gamma conv3, mlp_beta conv3
    return _conv(label_nc, nhidden, 3) + 2 * _conv(nhidden, norm_nc, 3)


def _block(fin, fout, label_nc, nhidden=128):
    fmid = min(fin, fout)
    n = _conv(fin, fmid, 3) + _conv(fmid, fout, 3)  # conv_0, conv_1
    n += _spade(fin, label_nc, nhidden) + _spade(fmid, label_nc, nhidden)
    if fin != fout:  # conv_s (1x1, no bias) and norm_s
        n += _conv(fin, fout, 1, bias=False) + _spade(fin, label_nc, nhidden)
    return n


def _generator(label_nc, out_nc, nf=64, most=False, nhidden=128):
    n = _conv(label_nc, 16 * nf, 3)  # fc (a conv without the VAE)
    widths = [(16, 16)] * 3 + [(16, 8), (8, 4), (4, 2), (2, 1)]
    n += sum(_block(a * nf, b * nf, label_nc, nhidden) for a, b in widths)
    final = nf
    if most:
        n += _block(nf, nf // 2, label_nc, nhidden)
        final = nf // 2
    return n + _conv(final, out_nc, 3)  # conv_img


def _nlayer_d(input_nc, ndf=64):
    # model0 conv4 s2 (bias), model1..3 spectral conv4 + IN (no bias), model4
    return (
        _conv(input_nc, ndf, 4)
        + _conv(ndf, 2 * ndf, 4, bias=False)
        + _conv(2 * ndf, 4 * ndf, 4, bias=False)
        + _conv(4 * ndf, 8 * ndf, 4, bias=False)
        + _conv(8 * ndf, 1, 4)
    )


def test_reference_parameter_counts_by_hand():
    # The enhancer's reference configuration: ngf 64, 4 one-hot ACDC classes +
    # the physics image (semantic_nc 5), one output channel, 'normal'
    # upsampling, crop 256; D on concat(condition, image) = 6 channels.
    assert _generator(5, 1) == 92_118_337
    assert 2 * _nlayer_d(6) == 5_533_826
    # the reference's Cityscapes layout (35 labels + instance edges, RGB):
    # 93.0 M and 5.6 M parameters, as its training log reports
    assert _generator(36, 3) == 93_048_003 and 2 * _nlayer_d(39) == 5_601_410


@pytest.fixture
def cheap_weights(monkeypatch):
    """Zeros instead of random draws: counting 92 M parameters needs their
    shapes only, and drawing them dominates the construction's time."""
    import jaxsim.models._spade as spade

    def zeros(init, gain, key, shape, fan_in, fan_out):
        return jnp.zeros(shape, jnp.float32)

    monkeypatch.setattr(spade, "gan_weight", zeros)


def test_reference_generator_parameter_count(cheap_weights):
    g = nnx.eval_shape(lambda: SPADEGenerator(5, 1, ngf=64, rngs=nnx.Rngs(0)))
    assert count_params(g) == _generator(5, 1) == 92_118_337


def test_reference_discriminator_parameter_count(cheap_weights):
    d = nnx.eval_shape(lambda: MultiscaleDiscriminator(6, rngs=nnx.Rngs(0)))
    assert count_params(d) == 2 * _nlayer_d(6) == 5_533_826
    d = nnx.eval_shape(lambda: MultiscaleDiscriminator(39, rngs=nnx.Rngs(0)))
    assert count_params(d) == 2 * _nlayer_d(39) == 5_601_410


def test_small_and_most_parameter_counts():
    g = nnx.eval_shape(
        lambda: SPADEGenerator(
            3, 2, ngf=8, hidden=16, num_upsampling_layers="most", rngs=nnx.Rngs(0)
        )
    )
    assert count_params(g) == _generator(3, 2, nf=8, most=True, nhidden=16)
    d = nnx.eval_shape(
        lambda: MultiscaleDiscriminator(4, ndf=8, num_d=3, rngs=nnx.Rngs(0))
    )
    assert count_params(d) == 3 * _nlayer_d(4, ndf=8)


# -- spectral normalisation ----------------------------------------------------


def test_spectral_norm_converges_to_the_largest_singular_value():
    layer = SpectralConv(4, 6, 3, padding=1, spectral=True, rngs=nnx.Rngs(3))
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 6))
    layer.kernel[...] = jnp.asarray(kernel, jnp.float32)
    w = kernel.reshape(-1, 6).T  # (out, k k in), PyTorch's weight_mat
    s = np.linalg.svd(w, compute_uv=False)
    for _ in range(100):
        sigma = layer.sigma()
    np.testing.assert_allclose(float(sigma), s[0], rtol=1e-4)
    used = np.asarray(layer.weight(), np.float64).reshape(-1, 6).T
    np.testing.assert_allclose(np.linalg.svd(used, compute_uv=False)[0], 1.0, rtol=1e-4)
    # the state is not a parameter, and is not touched in evaluation mode
    assert isinstance(layer.u, SpectralVector)
    assert not isinstance(layer.u, nnx.Param)
    layer.kernel[...] = jnp.asarray(rng.normal(size=(3, 3, 4, 6)), jnp.float32)
    u0 = np.asarray(layer.u[...])
    layer.eval()
    layer(jnp.ones((1, 5, 5, 4)))
    np.testing.assert_array_equal(np.asarray(layer.u[...]), u0)
    layer.train()
    layer(jnp.ones((1, 5, 5, 4)))
    assert not np.allclose(np.asarray(layer.u[...]), u0)


def test_spectral_norm_one_step_is_the_reference_power_iteration():
    layer = SpectralConv(2, 3, 1, spectral=True, rngs=nnx.Rngs(1))
    w = np.asarray(layer.kernel[...], np.float64).reshape(-1, 3).T
    u = np.asarray(layer.u[...], np.float64)
    v = w.T @ u
    v /= np.linalg.norm(v)
    u1 = w @ v
    u1 /= np.linalg.norm(u1)
    np.testing.assert_allclose(float(layer.sigma()), u1 @ w @ v, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.u[...]), u1, rtol=1e-5, atol=1e-6)


def test_spectral_norm_gradient_flows_through_sigma_only():
    layer = SpectralConv(2, 3, 1, spectral=True, rngs=nnx.Rngs(1))
    layer.eval()
    gd, params, rest = nnx.split(layer, nnx.Param, ...)

    def scale(p):
        return jnp.sum(nnx.merge(gd, p, rest).weight() ** 2)

    grads = jax.grad(scale)(params)
    g = np.asarray(grads["kernel"][...])
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    assert set(grads.keys()) == {"kernel", "bias"}  # u gets no gradient


# -- resizing and pooling (PyTorch's rules) ------------------------------------


@pytest.mark.parametrize(("n_in", "n_out"), [(8, 2), (5, 3), (3, 7), (4, 4)])
def test_resize_nearest_is_pytorch_nearest(n_in, n_out):
    x = np.arange(n_in * n_in, dtype=np.float32).reshape(1, n_in, n_in, 1)
    y = np.asarray(resize_nearest(jnp.asarray(x), (n_out, n_out)))
    idx = [int(np.floor(i * n_in / n_out)) for i in range(n_out)]
    np.testing.assert_array_equal(y[0, :, :, 0], x[0][np.ix_(idx, idx)][..., 0])


def _avg_pool_reference(x):
    b, h, w, c = x.shape
    out = np.zeros((b, (h - 1) // 2 + 1, (w - 1) // 2 + 1, c))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            rows = [r for r in (2 * i - 1, 2 * i, 2 * i + 1) if 0 <= r < h]
            cols = [q for q in (2 * j - 1, 2 * j, 2 * j + 1) if 0 <= q < w]
            out[:, i, j] = x[:, rows][:, :, cols].mean(axis=(1, 2))
    return out


def test_avg_pool_excludes_padding():
    x = np.random.default_rng(1).normal(size=(2, 5, 6, 3))
    y = avg_pool_3x3(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(y), _avg_pool_reference(x), rtol=1e-5)


# -- the SPADE layer against NumPy ---------------------------------------------


def _conv_same(x, k, b):
    """float64 'same' conv of (H, W, Ci) with (k, k, Ci, Co), zero padding."""
    kk = k.shape[0]
    p = kk // 2
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    h, w = x.shape[:2]
    out = np.zeros((h, w, k.shape[-1]))
    for i in range(h):
        for j in range(w):
            out[i, j] = np.einsum("abc,abco->o", xp[i : i + kk, j : j + kk], k) + b
    return out


def test_spade_layer_matches_numpy():
    rng = np.random.default_rng(2)
    layer = SPADE(3, 2, hidden=4, rngs=nnx.Rngs(0))
    for conv in (layer.shared, layer.gamma, layer.beta):
        conv.kernel[...] = jnp.asarray(rng.normal(size=conv.kernel.shape), jnp.float32)
        conv.bias[...] = jnp.asarray(rng.normal(size=conv.bias.shape), jnp.float32)
    x = rng.normal(size=(1, 4, 4, 3)) * 3 + 1
    c = rng.normal(size=(1, 2, 2, 2))
    y = np.asarray(layer(jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32)))

    mean = x[0].mean(axis=(0, 1))
    var = x[0].var(axis=(0, 1))
    norm = (x[0] - mean) / np.sqrt(var + 1e-5)
    cu = np.repeat(np.repeat(c[0], 2, axis=0), 2, axis=1)  # nearest, 2x
    k = {n: np.asarray(getattr(layer, n).kernel[...], np.float64) for n in
         ("shared", "gamma", "beta")}  # fmt: skip
    b = {n: np.asarray(getattr(layer, n).bias[...], np.float64) for n in k}
    a = np.maximum(_conv_same(cu, k["shared"], b["shared"]), 0)
    gamma = _conv_same(a, k["gamma"], b["gamma"])
    beta = _conv_same(a, k["beta"], b["beta"])
    np.testing.assert_allclose(y[0], norm * (1 + gamma) + beta, rtol=1e-4, atol=1e-4)


def test_spade_rejects_bad_inputs():
    layer = SPADE(3, 2, hidden=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="condition"):
        layer(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 4, 5)))
    with pytest.raises(ValueError, match="x must be"):
        layer(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="kernel_size"):
        SPADE(3, 2, kernel_size=2, rngs=nnx.Rngs(0))


# -- residual blocks, generator and discriminator shapes ----------------------


def test_resblock_shortcut():
    learned = SPADEResBlock(4, 2, 3, hidden=4, rngs=nnx.Rngs(0))
    assert learned.conv_s is not None and learned.conv_s.bias is None
    assert count_params(learned) == _block(4, 2, 3, nhidden=4)
    same = SPADEResBlock(3, 3, 2, hidden=4, spectral=False, rngs=nnx.Rngs(0))
    assert same.conv_s is None and same.norm_s is None
    # with conv_1 zero the block is the identity (x_s = x, dx = 0)
    same.conv_1.kernel[...] = jnp.zeros_like(same.conv_1.kernel[...])
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 3))
    c = jax.random.normal(jax.random.key(1), (1, 8, 8, 2))
    np.testing.assert_allclose(np.asarray(same(x, c)), np.asarray(x), atol=1e-6)
    assert learned(jnp.ones((2, 4, 4, 4)), jnp.ones((2, 8, 8, 3))).shape == (2, 4, 4, 2)


@pytest.mark.parametrize(("mode", "size"), [("normal", 32), ("more", 64)])
def test_generator_shapes(mode, size):
    g = SPADEGenerator(5, 1, ngf=2, hidden=4, num_upsampling_layers=mode,
                       rngs=nnx.Rngs(0))  # fmt: skip
    g.eval()
    c = jax.ShapeDtypeStruct((2, size, size + g.factor, 5), jnp.float32)
    assert jax.eval_shape(lambda c: g(c), c).shape == (2, size, size + g.factor, 1)
    with pytest.raises(ValueError, match="multiples of 2"):
        g(jnp.zeros((1, size + 4, size, 5)))
    with pytest.raises(ValueError, match="condition must be"):
        g(jnp.zeros((1, size, size, 4)))
    with pytest.raises(ValueError, match="num_upsampling_layers"):
        SPADEGenerator(5, ngf=2, num_upsampling_layers="many", rngs=nnx.Rngs(0))


def test_multiscale_discriminator_features():
    d = MultiscaleDiscriminator(3, ndf=2, n_layers=4, num_d=2, rngs=nnx.Rngs(0))
    out = d(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)))
    # kernel 4, padding 2: side n -> n // stride + 1
    widths = [2, 4, 8, 16, 1]
    sides = [[17, 9, 5, 6, 7], [9, 5, 3, 4, 5]]  # the second on 16 x 16
    assert len(out) == 2
    for feats, s in zip(out, sides, strict=True):
        assert [f.shape for f in feats] == [(2, n, n, c) for n, c in
                                            zip(s, widths, strict=True)]  # fmt: skip
    # the intermediate features follow LeakyReLU(0.2): negatives are scaled
    assert float(jnp.min(out[0][1])) < 0 and float(jnp.min(out[0][1])) > -10
    with pytest.raises(ValueError, match="x must be"):
        d(jnp.zeros((1, 32, 32, 4)))
    # the normalised convs carry no bias; the first and last do
    convs = d.discriminators[0].convs
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    assert [c.spectral for c in convs] == [False, True, True, True, False]


@pytest.mark.slow
def test_generator_forward_and_gradient():
    g = SPADEGenerator(5, 1, ngf=2, hidden=4, rngs=nnx.Rngs(0))
    gd, params, rest = nnx.split(g, nnx.Param, ...)
    c = jax.random.normal(jax.random.key(0), (2, 32, 32, 5))

    @jax.jit
    def loss(p, c):
        return jnp.mean(nnx.merge(gd, p, rest, copy=True)(c) ** 2)

    grads = jax.grad(loss, argnums=(0, 1))(params, c)
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(np.asarray(x)).all() for x in leaves)
    assert float(jnp.abs(grads[1]).max()) > 0
    y = g(c)
    assert y.shape == (2, 32, 32, 1) and float(jnp.abs(y).max()) < 1
