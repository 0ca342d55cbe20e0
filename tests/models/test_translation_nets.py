"""Translation networks (CycleGAN / CUT): parameter counts, shapes, filters, pool.

Reference parameter counts are summed by hand below from the reference layer lists
(junyanz/pytorch-CycleGAN-and-pix2pix and taesungp/contrastive-unpaired-translation,
``models/networks.py``): a ``Conv2d(cin, cout, k)`` with bias has
``cin * cout * k * k + cout`` parameters, a ``Linear(a, b)`` ``a * b + b``;
instance norm (affine=False) and the anti-aliasing blur filters (registered
buffers) have none.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from jaxsim.models import (
    ImagePool,
    PatchDiscriminator,
    PatchSampleMLP,
    ResnetGenerator,
    blur_downsample,
    blur_upsample,
    count_params,
    patchgan_output_size,
)


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def resnet_reference(cin, cout, ngf, n_blocks):
    # ReflectionPad, Conv7(cin, ngf); down: Conv3(ngf, 2ngf), Conv3(2ngf, 4ngf)
    # (stride 2 in CycleGAN; stride 1 + blur in CUT: the same weights);
    # n_blocks x ResnetBlock = 2 x Conv3(4ngf, 4ngf);
    # up: ConvTranspose3(4ngf, 2ngf), ConvTranspose3(2ngf, ngf) in CycleGAN, or
    # blur + Conv3 of the same sizes in CUT; ReflectionPad, Conv7(ngf, cout), Tanh.
    return (
        conv(cin, ngf, 7)
        + conv(ngf, 2 * ngf, 3)
        + conv(2 * ngf, 4 * ngf, 3)
        + n_blocks * 2 * conv(4 * ngf, 4 * ngf, 3)
        + conv(4 * ngf, 2 * ngf, 3)
        + conv(2 * ngf, ngf, 3)
        + conv(ngf, cout, 7)
    )


# resnet_9blocks, ngf=64, 1 -> 1 channel, explicitly:
# 3_200 + 73_856 + 295_168 + 9 * 2 * 590_080 + 295_040 + 73_792 + 3_137
RESNET9_1CH = 3_200 + 73_856 + 295_168 + 9 * 2 * 590_080 + 295_040 + 73_792 + 3_137
# The same for RGB (the figure usually quoted for CycleGAN's generator, 11.378 M):
# 9_472 + 73_856 + 295_168 + 10_621_440 + 295_040 + 73_792 + 9_411
RESNET9_3CH = 9_472 + 73_856 + 295_168 + 10_621_440 + 295_040 + 73_792 + 9_411
# basic PatchGAN (n_layers=3, ndf=64), 1 channel: Conv4(1,64) + Conv4(64,128) +
# Conv4(128,256) + Conv4(256,512) + Conv4(512,1)
PATCHGAN_1CH = 1_088 + 131_200 + 524_544 + 2_097_664 + 8_193
# The same for RGB (2.765 M): Conv4(3,64) has 3_136 parameters
PATCHGAN_3CH = 3_136 + 131_200 + 524_544 + 2_097_664 + 8_193
# PatchSampleF, nce_layers 0,4,8,12,16 of resnet_9blocks (ngf 64, 1 channel):
# channels 1, 128, 256, 256, 256; per layer Linear(C,256) + Linear(256,256)
PATCHNCE_1CH = (
    (256 + 256) + (128 * 256 + 256) + 3 * (256 * 256 + 256) + 5 * (256 * 256 + 256)
)


def abstract(build):
    return nnx.eval_shape(build)


@pytest.mark.parametrize(
    ("cin", "antialias", "expected"),
    [(1, False, RESNET9_1CH), (3, False, RESNET9_3CH), (1, True, RESNET9_1CH)],
)
def test_resnet_generator_parameter_count(cin, antialias, expected):
    assert expected == resnet_reference(cin, cin, 64, 9)
    g = abstract(
        lambda: ResnetGenerator(
            cin, cin, ngf=64, n_blocks=9, antialias=antialias, rngs=nnx.Rngs(0)
        )
    )
    assert count_params(g) == expected


@pytest.mark.parametrize("ngf,n_blocks", [(8, 1), (16, 6), (32, 2)])
def test_resnet_generator_count_other_sizes(ngf, n_blocks):
    g = abstract(lambda: ResnetGenerator(1, 1, ngf=ngf, n_blocks=n_blocks,
                                         rngs=nnx.Rngs(0)))  # fmt: skip
    assert count_params(g) == resnet_reference(1, 1, ngf, n_blocks)


@pytest.mark.parametrize(("cin", "expected"), [(1, PATCHGAN_1CH), (3, PATCHGAN_3CH)])
def test_patchgan_parameter_count(cin, expected):
    for antialias in (False, True):
        d = abstract(
            lambda a=antialias: PatchDiscriminator(cin, antialias=a, rngs=nnx.Rngs(0))
        )
        assert count_params(d) == expected


def test_patchnce_head_parameter_count():
    g = abstract(lambda: ResnetGenerator(1, 1, rngs=nnx.Rngs(0)))
    channels = g.feature_channels([0, 4, 8, 12, 16])
    assert channels == [1, 128, 256, 256, 256]
    head = abstract(lambda: PatchSampleMLP(channels, rngs=nnx.Rngs(0)))
    assert count_params(head) == PATCHNCE_1CH == 559_872


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("size", [24, 70, 256])
def test_patchgan_output_size_formula(size, n_layers, antialias):
    d = PatchDiscriminator(1, ndf=2, n_layers=n_layers, antialias=antialias,
                           rngs=nnx.Rngs(0))  # fmt: skip
    out = jax.eval_shape(d, jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32))
    assert out.shape[1] == patchgan_output_size(size, n_layers, antialias)


def test_patchgan_map_is_30_for_256():
    d = PatchDiscriminator(1, ndf=4, rngs=nnx.Rngs(0))
    out = jax.eval_shape(d, jax.ShapeDtypeStruct((1, 256, 256, 1), jnp.float32))
    assert out.shape == (1, 30, 30, 1)
    d = PatchDiscriminator(1, ndf=4, antialias=True, rngs=nnx.Rngs(0))
    out = jax.eval_shape(d, jax.ShapeDtypeStruct((1, 256, 256, 1), jnp.float32))
    assert out.shape == (1, 30, 30, 1)


@pytest.mark.parametrize("antialias", [True, False])
def test_generator_shapes_range_and_features(antialias):
    g = ResnetGenerator(1, 1, ngf=8, n_blocks=2, antialias=antialias,
                        rngs=nnx.Rngs(0))  # fmt: skip
    x = jax.random.uniform(jax.random.key(1), (2, 32, 24, 1), minval=-1, maxval=1)
    y = jax.jit(lambda v: g(v))(x)
    assert y.shape == (2, 32, 24, 1)
    assert bool(jnp.all(jnp.abs(y) < 1))
    if antialias:
        feats = jax.eval_shape(lambda v: g.encode(v, [0, 4, 8, 12, 13]), x)
        assert [f.shape for f in feats] == [
            (2, 38, 30, 1), (2, 32, 24, 16), (2, 16, 12, 32),
            (2, 8, 6, 32), (2, 8, 6, 32),
        ]  # fmt: skip
        assert g.feature_channels([0, 4, 8, 12, 13]) == [1, 16, 32, 32, 32]


def test_bad_inputs_raise():
    g = ResnetGenerator(1, 1, ngf=4, n_blocks=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiples of 4"):
        g(jnp.zeros((1, 30, 32, 1)))
    with pytest.raises(ValueError, match="nce_layers"):
        g.encode(jnp.zeros((1, 32, 32, 1)), [4, 0])
    with pytest.raises(ValueError, match="nce_layers"):
        g.encode(jnp.zeros((1, 32, 32, 1)), [0, 99])
    with pytest.raises(ValueError, match="n_blocks"):
        ResnetGenerator(1, 1, n_blocks=-1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="init must be one of"):
        PatchDiscriminator(1, init="kaiming", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="n_layers"):
        PatchDiscriminator(1, n_layers=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="too small for a PatchGAN"):
        PatchDiscriminator(1, ndf=2, rngs=nnx.Rngs(0))(jnp.zeros((1, 16, 16, 1)))


def test_init_statistics():
    """CycleGAN's N(0, 0.02) and CUT's Glorot normal (gain 0.02), biases zero."""
    g = ResnetGenerator(1, 1, ngf=16, n_blocks=1, init="normal", rngs=nnx.Rngs(0))
    w = np.asarray(g.layers[8].kernel[...])  # Conv3(32, 64), 18_432 draws
    assert abs(w.std() - 0.02) < 0.02 * 0.03
    assert not np.asarray(g.layers[8].bias[...]).any()
    g = ResnetGenerator(1, 1, ngf=16, n_blocks=1, init="xavier", rngs=nnx.Rngs(0))
    w = np.asarray(g.layers[8].kernel[...])
    expected = 0.02 * np.sqrt(2.0 / (32 * 9 + 64 * 9))
    assert abs(w.std() - expected) < expected * 0.03


# -- the anti-aliasing filters against float64 NumPy versions of PyTorch's ops --


def np_filter(n):
    row = np.array([1.0, 2.0, 1.0]) if n == 3 else np.array([1.0, 3.0, 3.0, 1.0])
    f = np.outer(row, row)
    return f / f.sum()


def np_downsample(x):
    """ReflectionPad2d(1) then conv2d(filt [1,2,1]^2/16, stride 2), per channel."""
    xp = np.pad(x, ((1, 1), (1, 1)), mode="reflect")
    f = np_filter(3)
    ho, wo = (xp.shape[0] - 3) // 2 + 1, (xp.shape[1] - 3) // 2 + 1
    out = np.zeros((ho, wo))
    for i, j in itertools.product(range(ho), range(wo)):
        out[i, j] = np.sum(xp[2 * i : 2 * i + 3, 2 * j : 2 * j + 3] * f)
    return out


def np_upsample(x):
    """ReplicationPad2d(1), conv_transpose2d(filt [1,3,3,1]^2/64 * 4, stride 2,
    padding 2), then [1:, 1:] and [:-1, :-1] (CUT's Upsample, filt_size 4)."""
    xp = np.pad(x, ((1, 1), (1, 1)), mode="edge")
    f = np_filter(4) * 4
    h, w = xp.shape
    full = np.zeros(((h - 1) * 2 + 4, (w - 1) * 2 + 4))
    for i, j in itertools.product(range(h), range(w)):
        full[2 * i : 2 * i + 4, 2 * j : 2 * j + 4] += xp[i, j] * f
    out = full[2:-2, 2:-2]  # padding=2 crops 2 on each side
    return out[1:, 1:][:-1, :-1]


@pytest.mark.parametrize("shape", [(8, 8), (7, 10)])
def test_blur_downsample_matches_reference(shape):
    x = np.random.default_rng(0).normal(size=shape)
    got = blur_downsample(jnp.asarray(x, jnp.float32)[None, ..., None])[0, ..., 0]
    np.testing.assert_allclose(np.asarray(got), np_downsample(x), atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 4), (5, 3)])
def test_blur_upsample_matches_reference(shape):
    x = np.random.default_rng(1).normal(size=shape)
    got = blur_upsample(jnp.asarray(x, jnp.float32)[None, ..., None])[0, ..., 0]
    ref = np_upsample(x)
    assert got.shape == (2 * shape[0], 2 * shape[1]) == ref.shape
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


def test_blurs_keep_constants():
    c = jnp.full((1, 6, 8, 2), 0.3)
    np.testing.assert_allclose(blur_downsample(c), 0.3, atol=1e-6)
    np.testing.assert_allclose(blur_upsample(c), 0.3, atol=1e-6)


@pytest.mark.integration
def test_blurs_have_gradients():
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 1))
    check_grads(blur_downsample, (x,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
    check_grads(blur_upsample, (x,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


@pytest.mark.integration
def test_generator_gradients_reach_every_weight():
    """d loss / d kernel is finite and non-zero for every conv kernel (the biases
    before an instance norm have exactly zero gradient, as in the reference)."""
    g = ResnetGenerator(1, 1, ngf=4, n_blocks=1, rngs=nnx.Rngs(0))
    d = PatchDiscriminator(1, ndf=4, n_layers=2, rngs=nnx.Rngs(1))
    x = jax.random.uniform(jax.random.key(2), (1, 16, 16, 1), minval=-1, maxval=1)
    for net, f in ((g, lambda m: jnp.mean(m(x) ** 2)), (d, lambda m: jnp.mean(m(x)))):
        gdef, params = nnx.split(net, nnx.Param)
        grads = jax.jit(jax.grad(lambda p, gd=gdef, f=f: f(nnx.merge(gd, p))))(params)
        flat = nnx.to_flat_state(grads)
        kernels = [(k, v) for k, v in flat if k[-1] == "kernel"]
        assert kernels
        for path, v in kernels:
            arr = np.asarray(v[...])
            assert np.isfinite(arr).all(), path
            assert np.abs(arr).max() > 0, path


def test_patch_sample_mlp_shapes_norms_and_shared_ids():
    feats = [
        jax.random.normal(jax.random.key(0), (2, 6, 6, 3)),
        jax.random.normal(jax.random.key(1), (2, 4, 4, 5)),
    ]
    head = PatchSampleMLP([3, 5], nc=8, init_gain=1.0, rngs=nnx.Rngs(0))
    out, ids = jax.jit(lambda f, k: head(f, num_patches=10, key=k))(
        feats, jax.random.key(3)
    )
    assert [o.shape for o in out] == [(2, 10, 8), (2, 10, 8)]
    assert ids[0].shape == (10,) and ids[1].shape == (10,)  # 10 of 36, 10 of 16
    assert len(set(np.asarray(ids[0]).tolist())) == 10
    for o in out:
        np.testing.assert_allclose(np.linalg.norm(np.asarray(o), axis=-1), 1, 1e-5)
    again, _ = jax.jit(lambda f, i: head(f, patch_ids=i))(feats, ids)
    for a, b in zip(out, again, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    _, ids3 = jax.eval_shape(
        lambda f, k: head(f, num_patches=100, key=k), feats, jax.random.key(3)
    )
    assert ids3[1].shape == (16,)  # capped at h * w
    with pytest.raises(ValueError, match="feats must hold"):
        head(feats[:1], key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_patches"):
        head(feats, num_patches=0, key=jax.random.key(0))


# -- the image pool -----------------------------------------------------------


def _rows(a):
    return sorted(tuple(np.asarray(r).ravel().tolist()) for r in a)


def test_image_pool_fills_then_swaps_conserving_images():
    pool = ImagePool(4)
    state = pool.init((1, 1, 1))
    counter = itertools.count()
    swaps = total = 0
    query = jax.jit(pool.query)
    for step in range(60):
        batch = jnp.asarray([[[[float(next(counter))]]] for _ in range(3)])
        before = state
        out, state = query(state, batch, key=jax.random.key(step))
        n_before = int(before["count"])
        stored_before = _rows(before["images"][:n_before])
        if n_before + 3 <= 4:  # still filling: returned as given, all stored
            np.testing.assert_array_equal(out, batch)
            assert _rows(state["images"][: n_before + 3]) == sorted(
                stored_before + _rows(batch)
            )
        if n_before == 4:
            # every image is either returned or stored, never lost or duplicated
            assert sorted(_rows(out) + _rows(state["images"])) == sorted(
                stored_before + _rows(batch)
            )
            swaps += int(np.sum(np.asarray(out) != np.asarray(batch)))
            total += 3
    assert int(state["count"]) == 4
    assert 0.35 < swaps / total < 0.65  # probability 1/2


def test_image_pool_size_zero_and_validation():
    pool = ImagePool(0)
    x = jnp.ones((2, 3, 3, 1))
    out, _ = pool.query(pool.init((3, 3, 1)), x, key=jax.random.key(0))
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ValueError, match="pool size"):
        ImagePool(-1)
