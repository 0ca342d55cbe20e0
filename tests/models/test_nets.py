"""Networks: parameter counts against MONAI, shapes, modes, heads, VAE, state.

Reference parameter counts were measured with MONAI 1.6.1 on PyTorch 2.13.0+cpu by
``benchmarks/monai_peer.py counts`` (its own virtual environment, see
benchmarks/README_models.md): ``sum(p.numel() for p in net.parameters())`` of the
MONAI network built with the arguments in the comment of each entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsim.models import (
    DynUNet,
    SegResNetVAE,
    UNet,
    build_model,
    count_params,
    deep_supervision_weights,
)

UNET = dict(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
ACDC_K = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
ACDC_S = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
SMALL_UNET = dict(
    channels=(8, 16, 32), strides=(2, 2), num_res_units=1, act="leakyrelu",
    kernel_size=5, up_kernel_size=3, dropout=0.1,
)  # fmt: skip

# (builder, MONAI count). MONAI constructor in the comment.
MONAI_COUNTS = {
    # UNet(d, 1, 4, channels=(16,32,64,128,256), strides=(2,2,2,2),
    #      num_res_units=R, norm=N)
    "unet2d_res2_instance": (lambda r: UNet(2, 1, 4, **UNET, rngs=r), 1_625_849),
    "unet2d_res2_batch": (
        lambda r: UNet(2, 1, 4, **UNET, norm="batch", rngs=r),
        1_628_289,
    ),
    "unet2d_res0_instance": (
        lambda r: UNet(2, 1, 4, **{**UNET, "num_res_units": 0}, rngs=r),
        660_860,
    ),
    "unet2d_res0_batch": (
        lambda r: UNet(2, 1, 4, **{**UNET, "num_res_units": 0}, norm="batch", rngs=r),
        662_076,
    ),
    "unet3d_res2_instance": (lambda r: UNet(3, 1, 4, **UNET, rngs=r), 4_808_537),
    "unet3d_res2_batch": (
        lambda r: UNet(3, 1, 4, **UNET, norm="batch", rngs=r),
        4_810_977,
    ),
    "unet3d_res0_instance": (
        lambda r: UNet(3, 1, 4, **{**UNET, "num_res_units": 0}, rngs=r),
        1_981_340,
    ),
    "unet3d_res0_batch": (
        lambda r: UNet(3, 1, 4, **{**UNET, "num_res_units": 0}, norm="batch", rngs=r),
        1_982_556,
    ),
    # UNet(d, 2, 3, channels=(8,16,32), strides=(2,2), num_res_units=1,
    #      act="leakyrelu", kernel_size=5, up_kernel_size=3, dropout=0.1)
    "unet2d_small_leaky_k5": (lambda r: UNet(2, 2, 3, **SMALL_UNET, rngs=r), 26_359),
    "unet3d_small_leaky_k5": (lambda r: UNet(3, 2, 3, **SMALL_UNET, rngs=r), 121_435),
    # DynUNet(d, 1, 4, [3]*5, [1,2,2,2,2], [2,2,2,2])
    "dynunet2d_5stages": (
        lambda r: DynUNet(
            2, 1, 4, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2], rngs=r
        ),
        7_762_084,
    ),
    "dynunet3d_5stages": (
        lambda r: DynUNet(
            3, 1, 4, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2], rngs=r
        ),
        16_543_716,
    ),
    # DynUNet(3, 1, 4, ACDC_K, ACDC_S, ACDC_S[1:])
    "dynunet3d_acdc_plan": (
        lambda r: DynUNet(3, 1, 4, kernel_size=ACDC_K, strides=ACDC_S, rngs=r),
        30_554_020,
    ),
    # DynUNet(3, 1, 2, [[3,3,1],[3,3,3],[3,3,3],[3,3,3]], [1,[2,2,1],2,2],
    #         [[2,2,1],2,2], deep_supervision=True)
    "dynunet3d_4stages_ds": (
        lambda r: DynUNet(
            3,
            1,
            2,
            kernel_size=[[3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
            strides=[1, [2, 2, 1], 2, 2],
            deep_supervision=True,
            rngs=r,
        ),  # fmt: skip
        5_573_860,
    ),
    # SegResNetVAE(size, spatial_dims=d, in_channels=1, out_channels=2)
    "segresnetvae3d_32x32x32": (
        lambda r: SegResNetVAE(3, 1, 2, input_image_size=(32, 32, 32), rngs=r),
        1_304_131,
    ),
    "segresnetvae2d_64x48": (
        lambda r: SegResNetVAE(2, 1, 2, input_image_size=(64, 48), rngs=r),
        553_715,
    ),
    # SegResNetVAE((16,16,32), spatial_dims=3, init_filters=16, in_channels=2,
    #              out_channels=3, vae_nz=32, blocks_down=(1,1,1), blocks_up=(1,1))
    "segresnetvae3d_small": (
        lambda r: SegResNetVAE(
            3,
            2,
            3,
            input_image_size=(16, 16, 32),
            init_filters=16,
            vae_nz=32,
            blocks_down=(1, 1, 1),
            blocks_up=(1, 1),
            rngs=r,
        ),  # fmt: skip
        486_629,
    ),
}


@pytest.mark.parametrize("name", sorted(MONAI_COUNTS))
def test_parameter_count_equals_monai(name):
    build, expected = MONAI_COUNTS[name]
    net = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    assert count_params(net) == expected


# ------------------------------------------------------------------ helpers
_forward = jax.jit(
    lambda graphdef, state, x: nnx.merge(graphdef, state)(x), static_argnums=0
)


def forward(model, x):
    graphdef, state = nnx.split(model)
    return _forward(graphdef, state, x)


def tiny_models():
    """Small 2D and 3D networks for the shape and state tests (name, model, input)."""
    r = nnx.Rngs(0)
    return [
        # 20 = 5 x 4 (odd multiple of the total stride 4), 12 = 3 x 4
        (
            "unet2d",
            UNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=2, rngs=r),
            (20, 12),
        ),
        # per-axis strides: z only pools once, so 6 = 3 x 2 works along z
        (
            "unet3d",
            UNet(
                3,
                2,
                3,
                channels=(4, 8, 16),
                strides=((1, 2, 2), (2, 2, 2)),
                num_res_units=0,
                rngs=r,
            ),  # fmt: skip
            (6, 12, 20),
        ),
        (
            "dynunet2d",
            DynUNet(
                2,
                1,
                3,
                kernel_size=[3, 3, 3],
                strides=[1, 2, 2],
                filters=[4, 8, 16],
                rngs=r,
            ),
            (12, 20),
        ),  # fmt: skip
        (
            "dynunet3d",
            DynUNet(
                3,
                1,
                2,
                kernel_size=[[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                strides=[1, [1, 2, 2], 2],
                filters=[4, 8, 8],
                rngs=r,
            ),  # fmt: skip
            (6, 12, 20),
        ),
        (
            "segresnetvae2d",
            SegResNetVAE(
                2,
                1,
                3,
                input_image_size=(24, 16),
                blocks_down=(1, 1, 1),
                blocks_up=(1, 1),
                vae_nz=8,
                rngs=r,
            ),  # fmt: skip
            (24, 16),
        ),
        (
            "segresnetvae3d",
            SegResNetVAE(
                3,
                1,
                2,
                input_image_size=(8, 16, 24),
                blocks_down=(1, 1, 1),
                blocks_up=(1, 1),
                vae_nz=8,
                rngs=r,
            ),  # fmt: skip
            (8, 16, 24),
        ),
    ]


@pytest.fixture(scope="module")
def models():
    return {name: (model, shape) for name, model, shape in tiny_models()}


NAMES = [m[0] for m in tiny_models()]


def _input(model, shape, batch=2, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, *shape, model.in_channels))


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_finite(models, name):
    model, shape = models[name]
    model.eval()
    out = _logits(forward(model, _input(model, shape)))
    assert out.shape == (2, *shape, model.out_channels)
    assert out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("name", NAMES)
def test_split_merge_and_eval_shape(models, name):
    model, shape = models[name]
    model.eval()
    x = _input(model, shape)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rebuilt = nnx.merge(graphdef, params, rest)
    np.testing.assert_array_equal(
        _logits(forward(rebuilt, x)), _logits(forward(model, x))
    )
    # nnx.state of the rebuilt model is the same tree with the same values
    a, b = nnx.state(model), nnx.state(rebuilt)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    abstract = nnx.eval_shape(lambda: model)
    assert count_params(abstract) == count_params(model)
    shapes = jax.tree.map(lambda v: (v.shape, v.dtype), nnx.state(abstract))
    assert shapes == jax.tree.map(lambda v: (v.shape, v.dtype), a)


def test_outputs_depend_on_the_seed_and_match_for_the_same_seed():
    a = UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=1, rngs=nnx.Rngs(3))
    b = UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=1, rngs=nnx.Rngs(3))
    c = UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=1, rngs=nnx.Rngs(4))
    ka, kb, kc = (m.down[0].units[0].conv.kernel[...] for m in (a, b, c))
    np.testing.assert_array_equal(ka, kb)
    assert not np.array_equal(ka, kc)


def test_initialisation_follows_the_references():
    """PyTorch default U(+-1/sqrt(fan_in)) for UNet; He normal a=0.01 for DynUNet."""
    unet = UNet(
        2, 16, 2, channels=(64, 64), strides=(2,), num_res_units=2, rngs=nnx.Rngs(0)
    )
    w = np.asarray(unet.down[0].units[0].conv.kernel[...])  # fan_in 16 * 9
    bound = 1 / np.sqrt(16 * 9)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.98 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.05)
    # transposed conv: PyTorch's fan_in is out_channels * prod(kernel)
    t = np.asarray(unet.up[0][0].conv.kernel[...])  # (3, 3, 128, 2)
    assert np.abs(t).max() <= 1 / np.sqrt(2 * 9)
    assert float(unet.down[0].units[0].act.slope[...]) == 0.25
    dyn = DynUNet(2, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2],
                  filters=[32, 64, 64], rngs=nnx.Rngs(0))  # fmt: skip
    w = np.asarray(dyn.encoder[1].conv1.kernel[...])  # fan_in 32 * 9
    gain = np.sqrt(2 / (1 + 0.01**2))
    np.testing.assert_allclose(w.std(), gain / np.sqrt(32 * 9), rtol=0.05)
    assert abs(w.mean()) < 0.1 * w.std()
    np.testing.assert_array_equal(dyn.output_block.conv.bias[...], 0.0)


# ------------------------------------------------------------------ modes
def test_dropout_and_batch_norm_follow_train_and_eval():
    model = UNet(
        2, 1, 2, channels=(4, 8), strides=(2,), norm="batch", dropout=0.5,
        num_res_units=2, rngs=nnx.Rngs(0),
    )  # fmt: skip
    call = nnx.jit(lambda m, x: m(x))
    x = _input(model, (8, 8), batch=3)
    y = x.at[2].set(5.0 + 3.0 * x[2])  # another batch companion for image 0
    stats0 = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    # training: fresh dropout masks each call, batch statistics, stats updated
    first, second = call(model, x), call(model, x)
    assert not np.allclose(first, second)
    stats1 = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    assert not all(
        np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(stats0), jax.tree.leaves(stats1), strict=True)
    )
    model.eval()
    e1, e2, e3 = call(model, x), call(model, x), call(model, y)
    np.testing.assert_array_equal(e1, e2)  # no dropout
    np.testing.assert_allclose(e1[0], e3[0], rtol=1e-5, atol=1e-6)  # running stats
    stats2 = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    for a, b in zip(jax.tree.leaves(stats1), jax.tree.leaves(stats2), strict=True):
        np.testing.assert_array_equal(a, b)  # eval does not update the stats
    # nnx.view gives the evaluation behaviour without changing the model
    model.train()
    view = nnx.view(model, deterministic=True, use_running_average=True)
    np.testing.assert_array_equal(call(view, x), e1)
    assert model.down[0].units[0].dropout.deterministic is False


def test_batch_norm_training_matches_batch_statistics():
    """A BatchNorm layer in training mode: zero mean, unit variance per channel,
    running stats moved by 0.1 towards the batch mean and unbiased variance."""
    from jaxsim.models._layers import BatchNorm

    bn = BatchNorm(3)
    x = jax.random.normal(jax.random.key(1), (4, 5, 6, 3)) * 2.0 + 1.0
    y = np.asarray(bn(x))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
    xs = np.asarray(x).reshape(-1, 3)
    np.testing.assert_allclose(bn.mean[...], 0.1 * xs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * xs.var(0, ddof=1), rtol=1e-5)


# ------------------------------------------------------------------ deep supervision
def test_deep_supervision_heads():
    model = DynUNet(
        2, 1, 3, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2],
        filters=[4, 8, 8, 8], deep_supervision=True, deep_supr_num=2,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    x = _input(model, (16, 24))
    out = forward(model, x)
    assert [o.shape for o in out] == [(2, 16, 24, 3), (2, 8, 12, 3), (2, 4, 6, 3)]
    model.eval()
    logits = forward(model, x)
    assert logits.shape == (2, 16, 24, 3)
    np.testing.assert_allclose(logits, out[0], rtol=1e-5, atol=1e-6)


def test_deep_supervision_weights_are_nnunets():
    np.testing.assert_allclose(deep_supervision_weights(3), [4 / 7, 2 / 7, 1 / 7])
    assert deep_supervision_weights(1) == (1.0,)


# ------------------------------------------------------------------ VAE
def _vae(**kw):
    return SegResNetVAE(
        2, 1, 2, input_image_size=(8, 8), blocks_down=(1, 1), blocks_up=(1,),
        vae_nz=8, rngs=nnx.Rngs(0), **kw,
    )  # fmt: skip


def test_vae_branch_loss_and_modes():
    call = nnx.jit(lambda m, x: m(x))
    x = _input(_vae(), (8, 8))
    model = _vae(vae_default_std=0.3)
    (l1, v1), (l2, v2) = call(model, x), call(model, x)
    assert v1.shape == () and v1.dtype == jnp.float32
    assert bool(jnp.isfinite(v1)) and float(v1) > 0
    assert float(v1) != float(v2)  # a new latent sample each call
    np.testing.assert_array_equal(l1, l2)  # the segmentation path is not sampled
    model.eval()
    logits, none = call(model, x)
    assert none is None
    np.testing.assert_allclose(logits, l1, rtol=1e-5, atol=1e-6)
    # std 0: the sample is the mean, the loss no longer depends on the noise
    model0 = _vae(vae_default_std=0.0)
    a, b = call(model0, x)[1], call(model0, x)[1]
    assert float(a) == float(b)
    # (vae_estimate_std=True is trained in test_learning.py)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda r: UNet(4, 1, 2, rngs=r), "spatial_dims must be 2 or 3"),
        (
            lambda r: UNet(2, 1, 2, channels=(4, 8, 16), strides=(2,), rngs=r),
            r"strides must have len\(channels\) - 1 = 2",
        ),
        (lambda r: UNet(2, 1, 2, channels=(4,), strides=(), rngs=r), "at least 2"),
        (lambda r: UNet(2, 1, 2, kernel_size=4, rngs=r), "kernel_size must be odd"),
        (lambda r: UNet(2, 1, 2, act="gelu", rngs=r), "act must be"),
        (lambda r: UNet(2, 1, 2, norm="layer", rngs=r), "norm must be"),
        (
            lambda r: DynUNet(2, 1, 2, kernel_size=[3, 3], strides=[1, 2], rngs=r),
            "at least 3",
        ),
        (
            lambda r: DynUNet(
                2,
                1,
                2,
                kernel_size=[3] * 3,
                strides=[1, 2, 2],
                upsample_kernel_size=[2, 3],
                rngs=r,
            ),  # fmt: skip
            r"upsample_kernel_size\[1\] = \(3, 3\) must equal strides\[2\]",
        ),
        (
            lambda r: DynUNet(
                2,
                1,
                2,
                kernel_size=[3] * 3,
                strides=[1, 2, 2],
                deep_supervision=True,
                deep_supr_num=2,
                rngs=r,
            ),  # fmt: skip
            r"deep_supr_num must be in \[1, 1\]",
        ),
        (
            lambda r: SegResNetVAE(2, 1, 2, input_image_size=(20, 16), rngs=r),
            r"input_image_size.*axis 0: 20 \(use 16 or 32\)",
        ),
        (
            lambda r: SegResNetVAE(
                2, 1, 2, input_image_size=(16, 16), init_filters=12, rngs=r
            ),
            "multiple of 8",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build(nnx.Rngs(0))


def test_bad_inputs_are_clear_errors(models):
    unet, _ = models["unet2d"]
    with pytest.raises(ValueError, match=r"axis 0: 18 \(use 16 or 20\)"):
        unet(jnp.zeros((1, 18, 12, 1)))
    with pytest.raises(ValueError, match=r"\(B, Y, X, C\)"):
        unet(jnp.zeros((18, 12, 1)))
    with pytest.raises(ValueError, match="in_channels=1"):
        unet(jnp.zeros((1, 16, 12, 3)))
    vae, _ = models["segresnetvae2d"]
    with pytest.raises(ValueError, match=r"input_image_size=\(24, 16\)"):
        vae(jnp.zeros((1, 16, 16, 1)))


def test_registry_builds_the_same_classes():
    r = nnx.Rngs(0)
    net = build_model("unet3d", in_channels=1, out_channels=2, rngs=r,
                      channels=[4, 8], strides=[2])  # fmt: skip
    assert isinstance(net, UNet) and net.spatial_dims == 3
