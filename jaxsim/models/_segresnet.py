"""SegResNet with the VAE regularisation branch (MONAI ``SegResNetVAE``), Flax NNX.

Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization",
BrainLes 2018 (arXiv:1810.11654).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ._blocks import SegResBlock
from ._layers import (
    Conv,
    GroupNorm,
    as_tuple,
    check_spatial_dims,
    make_act,
    make_dropout,
    torch_uniform_init,
    upsample_linear,
)
from ._shapes import check_input, check_spatial_divisible

SMALLEST_FILTERS = 16  # MONAI's channels of the VAE bottleneck map


class _NormActConv(nnx.Module):
    """GroupNorm, activation, 1x1 convolution with bias (MONAI's final conv)."""

    def __init__(self, spatial_dims, in_channels, out_channels, act, rngs):
        self.norm = GroupNorm(in_channels, 8)
        self.act = make_act(act)
        self.conv = Conv(spatial_dims, in_channels, out_channels, 1, rngs=rngs)

    def __call__(self, x):
        return self.conv(self.act(self.norm(x)))


class SegResNetVAE(nnx.Module):
    """SegResNet encoder-decoder with a variational auto-encoder branch.

    Encoder: a 3x3 convolution to ``init_filters``, then ``len(blocks_down)``
    levels; level ``i > 0`` halves the resolution with a stride-2 convolution
    doubling the features, and each level runs ``blocks_down[i]`` pre-activation
    residual blocks (GroupNorm 8, ReLU, 3x3 conv, twice). Decoder: per level a
    1x1 convolution halving the features, linear upsampling by 2, the encoder's
    skip added, ``blocks_up[i]`` residual blocks; a final GroupNorm, ReLU and 1x1
    convolution give the logits.

    VAE branch (training mode only, as MONAI): from the deepest encoder map,
    GroupNorm, ReLU, a stride-2 3x3 conv to 16 channels, GroupNorm, ReLU, then
    flattened to ``16 * prod(input_image_size // 2**len(blocks_down))`` features;
    ``z_mean = fc1``; with ``vae_estimate_std`` ``z_sigma = softplus(fc2)`` and the
    regulariser is ``0.5 * mean(z_mean**2 + z_sigma**2 - log(1e-8 + z_sigma**2)
    - 1)`` (KL to N(0, 1)), otherwise ``z_sigma = vae_default_std`` and the
    regulariser is ``mean(z_mean**2)``. A sample ``z_mean + z_sigma * eps`` is
    decoded (``fc3``, ReLU, 1x1 conv, upsampling, then the segmentation decoder's
    up-path without skips) into an image, and ``vae_loss = regulariser +
    mean((image - input)**2)``. ``fc2`` exists (and counts) even when the std is
    not estimated, as in MONAI; it then receives no gradient.

    Initialisation is PyTorch's default (MONAI does not re-initialise).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channel counts.
        input_image_size: the spatial size the VAE branch is built for; inputs
            must have exactly this size, divisible by ``2**len(blocks_down)``.
        init_filters: features of the first level (MONAI default 8).
        blocks_down, blocks_up: residual blocks per level
            (``len(blocks_up) == len(blocks_down) - 1``).
        vae_estimate_std: learn the posterior std (KL regulariser).
        vae_default_std: fixed posterior std when not estimated.
        vae_nz: latent size.
        dropout: rate after the first convolution, or ``None``.
        act: ``"relu"`` (default), ``"leakyrelu"`` or ``"prelu"``.
        rngs: ``nnx.Rngs``; the ``noise`` stream (or the default) draws the VAE
            sample, ``dropout`` the dropout mask.

    Call: ``x`` ``(B, *input_image_size, in_channels)`` -> ``(logits, vae_loss)``
    with logits ``(B, *input_image_size, out_channels)`` and ``vae_loss`` a float32
    scalar in training mode, ``None`` in evaluation mode (``model.eval()``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        input_image_size: Sequence[int],
        init_filters: int = 8,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        blocks_up: Sequence[int] = (1, 1, 1),
        vae_estimate_std: bool = False,
        vae_default_std: float = 0.3,
        vae_nz: int = 256,
        dropout: float | None = None,
        act: str = "relu",
        rngs: nnx.Rngs,
    ):
        d = check_spatial_dims(spatial_dims)
        self.input_image_size = as_tuple(input_image_size, d, "input_image_size")
        if len(blocks_up) != len(blocks_down) - 1 or not blocks_up:
            raise ValueError(
                f"blocks_up needs len(blocks_down) - 1 = {len(blocks_down) - 1} >= 1 "
                f"entries, got blocks_down={tuple(blocks_down)}, "
                f"blocks_up={tuple(blocks_up)}"
            )
        if init_filters % 8:
            raise ValueError(
                f"init_filters must be a multiple of 8 (GroupNorm 8), "
                f"got {init_filters}"
            )
        if vae_default_std < 0:
            raise ValueError(f"vae_default_std must be >= 0, got {vae_default_std}")
        self.spatial_dims, self.in_channels, self.out_channels = (
            d,
            in_channels,
            out_channels,
        )
        self.vae_divisor = 2 ** len(blocks_down)
        check_spatial_divisible(
            self.input_image_size,
            (self.vae_divisor,) * d,
            "SegResNetVAE input_image_size",
        )
        self.vae_estimate_std = bool(vae_estimate_std)
        self.vae_default_std = float(vae_default_std)
        self.deterministic = False  # nnx train()/eval(): VAE loss only in training
        f = init_filters
        conv = dict(use_bias=False, rngs=rngs)
        self.conv_init = Conv(d, in_channels, f, 3, **conv)
        self.dropout = make_dropout(dropout, rngs)
        down = []
        for i, n in enumerate(blocks_down):
            c = f * 2**i
            pre = [Conv(d, c // 2, c, 3, 2, **conv)] if i > 0 else []
            res = [SegResBlock(d, c, act=act, rngs=rngs) for _ in range(n)]
            down.append(nnx.List(pre + res))
        self.down = nnx.List(down)
        n_up = len(blocks_up)
        self.up_convs = nnx.List(
            [
                Conv(d, f * 2 ** (n_up - i), f * 2 ** (n_up - i - 1), 1, **conv)
                for i in range(n_up)
            ]
        )
        self.up_blocks = nnx.List(
            [
                nnx.List(
                    [
                        SegResBlock(d, f * 2 ** (n_up - i - 1), act=act, rngs=rngs)
                        for _ in range(n)
                    ]
                )
                for i, n in enumerate(blocks_up)
            ]
        )
        self.conv_final = _NormActConv(d, f, out_channels, act, rngs)
        # VAE branch
        v = f * 2 ** (len(blocks_down) - 1)
        self.fc_size = tuple(s // self.vae_divisor for s in self.input_image_size)
        total = SMALLEST_FILTERS * math.prod(self.fc_size)
        self.act = make_act(act)
        self.vae_down_norm1 = GroupNorm(v, 8)
        self.vae_down_conv = Conv(d, v, SMALLEST_FILTERS, 3, 2, rngs=rngs)
        self.vae_down_norm2 = GroupNorm(SMALLEST_FILTERS, 8)
        self.vae_fc1 = nnx.Linear(total, vae_nz, **_torch_linear(total), rngs=rngs)
        self.vae_fc2 = nnx.Linear(total, vae_nz, **_torch_linear(total), rngs=rngs)
        self.vae_fc3 = nnx.Linear(vae_nz, total, **_torch_linear(vae_nz), rngs=rngs)
        self.vae_up_conv = Conv(d, SMALLEST_FILTERS, v, 1, **conv)
        self.vae_up_norm = GroupNorm(v, 8)
        self.vae_conv_final = _NormActConv(d, f, in_channels, act, rngs)
        self.noise = rngs["noise"].fork()

    def set_view(self, deterministic: bool | None = None):
        """For ``nnx.view``: ``deterministic=True`` is evaluation mode."""
        if deterministic is not None:
            self.deterministic = deterministic

    def encode(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """Deepest feature map and the per-level encoder outputs (top first)."""
        x = self.conv_init(x)
        if self.dropout is not None:
            x = self.dropout(x)
        outs = []
        for level in self.down:
            for layer in level:
                x = layer(x)
            outs.append(x)
        return x, outs

    def _up_path(self, x: jax.Array, skips: list[jax.Array] | None) -> jax.Array:
        for i, (conv, blocks) in enumerate(
            zip(self.up_convs, self.up_blocks, strict=True)
        ):
            x = upsample_linear(conv(x))
            if skips is not None:
                x = x + skips[i]
            for block in blocks:
                x = block(x)
        return x

    def vae_loss(self, x: jax.Array, deepest: jax.Array) -> jax.Array:
        """VAE regulariser plus reconstruction MSE of ``x`` from ``deepest``."""
        h = self.act(self.vae_down_norm1(deepest))
        h = self.act(self.vae_down_norm2(self.vae_down_conv(h)))
        h = h.reshape(h.shape[0], -1)
        z_mean = self.vae_fc1(h)
        eps = jax.random.normal(self.noise(), z_mean.shape, z_mean.dtype)
        if self.vae_estimate_std:
            z_sigma = jax.nn.softplus(self.vae_fc2(h))
            reg = 0.5 * jnp.mean(
                z_mean**2 + z_sigma**2 - jnp.log(1e-8 + z_sigma**2) - 1
            )
        else:
            z_sigma = self.vae_default_std
            reg = jnp.mean(z_mean**2)
        z = self.act(self.vae_fc3(z_mean + z_sigma * eps))
        z = z.reshape(z.shape[0], *self.fc_size, SMALLEST_FILTERS)
        z = self.act(self.vae_up_norm(upsample_linear(self.vae_up_conv(z))))
        image = self.vae_conv_final(self._up_path(z, None))
        return reg + jnp.mean((x - image) ** 2)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """``(logits, vae_loss)``; ``vae_loss`` is ``None`` in evaluation mode."""
        check_input(x, self.spatial_dims, self.in_channels, "SegResNetVAE")
        if tuple(x.shape[1:-1]) != self.input_image_size:
            raise ValueError(
                f"SegResNetVAE was built for input_image_size={self.input_image_size} "
                f"(its VAE layers depend on it), got spatial shape "
                f"{tuple(x.shape[1:-1])}"
            )
        deepest, outs = self.encode(x)
        skips = outs[::-1][1:]
        logits = self.conv_final(self._up_path(deepest, skips))
        if self.deterministic:
            return logits, None
        return logits, self.vae_loss(x, deepest)


def _torch_linear(fan_in: int) -> dict:
    """PyTorch's default ``nn.Linear`` initialisation: ``U(+-1/sqrt(fan_in))``."""
    init = torch_uniform_init(fan_in)
    return {"kernel_init": init, "bias_init": init}
