"""MONAI-style residual U-Net (``monai.networks.nets.UNet``) in Flax NNX."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ._blocks import ConvADN, ResidualUnit
from ._layers import ACTIVATIONS, as_tuple, check_spatial_dims
from ._shapes import check_input, check_spatial_divisible


class UNet(nnx.Module):
    """Residual U-Net with strided-conv downsampling and transposed-conv upsampling.

    The topology is MONAI's ``UNet`` (Kerfoot et al. 2018), parameter for
    parameter: level ``i`` of ``len(channels) - 1`` levels downsamples by
    ``strides[i]`` into ``channels[i]`` at its first convolution, the bottom
    layer maps ``channels[-2] -> channels[-1]`` at stride 1, and each decoder
    layer upsamples the concatenation ``[skip, deeper]`` with a transposed
    convolution (then a one-subunit residual unit when ``num_res_units > 0``).
    As in MONAI the last decoder layer ends in a bare convolution (its norm and
    activation are dropped), so the output is unnormalised logits.

    Initialisation is PyTorch's default (what MONAI's ``UNet`` uses):
    ``U(+-1/sqrt(fan_in))`` for weights and biases, PReLU slope 0.25.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes).
        channels: features per level, top first, at least 2 (MONAI requires
            them; the default is the configuration of MONAI's tutorials).
        strides: downsampling factor per level, ``len(channels) - 1`` of them
            (an int or one per spatial axis each).
        kernel_size: odd convolution kernel (int or per axis).
        up_kernel_size: odd transposed-convolution kernel (int or per axis).
        num_res_units: convolutions per residual unit; 0 (MONAI's default) for
            plain convolution layers.
        act: ``"prelu"`` (MONAI's default) or ``"leakyrelu"`` (slope 0.01).
        norm: ``"instance"`` (not affine, MONAI's default) or ``"batch"``.
        dropout: dropout rate after each normalisation.
        bias: convolution biases.
        rngs: ``nnx.Rngs`` (``params`` stream; ``dropout`` when dropout > 0).

    Input ``(B, *spatial, in_channels)`` float, spatial sizes divisible by the
    product of the strides per axis; output ``(B, *spatial, out_channels)``.

    Example:
        >>> net = UNet(2, 1, 4, channels=(8, 16, 32), strides=(2, 2),
        ...            num_res_units=2, rngs=nnx.Rngs(0))
        >>> net(jnp.zeros((1, 32, 32, 1))).shape
        (1, 32, 32, 4)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[int | Sequence[int]] = (2, 2, 2, 2),
        kernel_size: int | Sequence[int] = 3,
        up_kernel_size: int | Sequence[int] = 3,
        num_res_units: int = 0,
        act: str = "prelu",
        norm: str = "instance",
        dropout: float = 0.0,
        bias: bool = True,
        rngs: nnx.Rngs,
    ):
        d = check_spatial_dims(spatial_dims)
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 entries, got {channels}")
        if len(strides) != len(channels) - 1:
            raise ValueError(
                f"strides must have len(channels) - 1 = {len(channels) - 1} "
                f"entries, got {len(strides)} (channels={channels}, strides={strides})"
            )
        strides = tuple(as_tuple(s, d, "strides entry") for s in strides)
        for name, k in (
            ("kernel_size", kernel_size),
            ("up_kernel_size", up_kernel_size),
        ):
            if any(v % 2 == 0 for v in as_tuple(k, d, name)):
                raise ValueError(f"{name} must be odd, got {k}")
        if str(act).lower() not in ACTIVATIONS[:2]:
            raise ValueError(f"act must be 'prelu' or 'leakyrelu', got {act!r}")
        if str(norm).lower() not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance' or 'batch', got {norm!r}")
        if num_res_units < 0:
            raise ValueError(f"num_res_units must be >= 0, got {num_res_units}")
        self.spatial_dims, self.in_channels, self.out_channels = (
            d,
            in_channels,
            out_channels,
        )
        self.strides = strides
        common = dict(act=act, norm=norm, dropout=dropout, bias=bias, rngs=rngs)

        def layer(cin, cout, s, **extra):
            if num_res_units > 0:
                return ResidualUnit(
                    d, cin, cout, strides=s, kernel_size=kernel_size,
                    subunits=num_res_units, **common, **extra,
                )  # fmt: skip
            return ConvADN(d, cin, cout, strides=s, kernel_size=kernel_size, **common)

        n = len(channels) - 1
        down, up = [], []
        for i in range(n):
            cin = in_channels if i == 0 else channels[i - 1]
            cout = out_channels if i == 0 else channels[i - 1]
            upc = channels[i] + channels[i + 1] if i == n - 1 else 2 * channels[i]
            top = i == 0
            down.append(layer(cin, channels[i], strides[i]))
            upconv = ConvADN(
                d, upc, cout, strides=strides[i], kernel_size=up_kernel_size,
                conv_only=top and num_res_units == 0, transposed=True, **common,
            )  # fmt: skip
            if num_res_units > 0:
                ru = ResidualUnit(
                    d, cout, cout, kernel_size=kernel_size, subunits=1,
                    last_conv_only=top, **common,
                )  # fmt: skip
                up.append(nnx.List([upconv, ru]))
            else:
                up.append(nnx.List([upconv]))
        self.down = nnx.List(down)
        self.bottom = layer(channels[-2], channels[-1], 1)
        self.up = nnx.List(up)

    @property
    def total_stride(self) -> tuple[int, ...]:
        """Product of the strides per spatial axis (input sizes must divide by it)."""
        return tuple(
            math.prod(s[a] for s in self.strides) for a in range(self.spatial_dims)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``(B, *spatial, out_channels)`` for ``x`` ``(B, *spatial, C_in)``."""
        check_input(x, self.spatial_dims, self.in_channels, "UNet")
        check_spatial_divisible(x.shape[1:-1], self.total_stride, "UNet")
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.bottom(x)
        for layers, skip in zip(reversed(self.up), reversed(skips), strict=True):
            x = jnp.concatenate([skip, x], axis=-1)
            for layer in layers:
                x = layer(x)
        return x
