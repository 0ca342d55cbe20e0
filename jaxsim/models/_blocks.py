"""Blocks: the convolution units the networks are assembled from.

Each block mirrors the MONAI block of the same name (parameter for parameter), on
channel-last arrays ``(B, *spatial, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ._layers import (
    Activation,
    Conv,
    ConvTranspose,
    as_tuple,
    make_act,
    make_dropout,
    make_norm,
)


class ConvADN(nnx.Module):
    """MONAI ``Convolution``: a (transposed) convolution, then norm, dropout, act.

    The order is MONAI's default ``"NDA"``. With ``conv_only`` the norm, dropout and
    activation are left out (MONAI's final layer convention).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channel counts.
        strides: int or per axis.
        kernel_size: odd int or per axis; padding is ``(k - 1) // 2``.
        act: ``"prelu"``, ``"leakyrelu"`` or ``"relu"``.
        norm: ``"instance"`` (not affine), ``"batch"``, ``"group"`` or ``"none"``.
        dropout: rate in [0, 1).
        bias: convolution bias.
        conv_only: only the convolution.
        transposed: a transposed convolution (output padding ``strides - 1``).
        rngs: ``nnx.Rngs``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        strides: int | Sequence[int] = 1,
        kernel_size: int | Sequence[int] = 3,
        act: str = "prelu",
        norm: str = "instance",
        dropout: float = 0.0,
        bias: bool = True,
        conv_only: bool = False,
        transposed: bool = False,
        rngs: nnx.Rngs,
    ):
        layer = ConvTranspose if transposed else Conv
        self.conv = layer(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size,
            strides,
            use_bias=bias,
            rngs=rngs,
        )
        self.conv_only = conv_only
        if conv_only:
            self.norm = self.dropout = self.act = None
        else:
            self.norm = make_norm(norm, spatial_dims, out_channels)
            self.dropout = make_dropout(dropout, rngs)
            self.act = make_act(act)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(x)
        for layer in (self.norm, self.dropout, self.act):
            if layer is not None:
                x = layer(x)
        return x


class ResidualUnit(nnx.Module):
    """MONAI ``ResidualUnit``: ``subunits`` ConvADN units plus a residual path.

    The first unit carries the stride. The residual is the identity when the
    shape is kept, a ``kernel_size`` convolution with the same stride when
    downsampling, and a 1x1 convolution when only the channel count changes.

    Args:
        spatial_dims, in_channels, out_channels, strides, kernel_size, act, norm,
            dropout, bias: as :class:`ConvADN`.
        subunits: number of ConvADN units (at least 1).
        last_conv_only: the last unit is a bare convolution.
        rngs: ``nnx.Rngs``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        strides: int | Sequence[int] = 1,
        kernel_size: int | Sequence[int] = 3,
        subunits: int = 2,
        act: str = "prelu",
        norm: str = "instance",
        dropout: float = 0.0,
        bias: bool = True,
        last_conv_only: bool = False,
        rngs: nnx.Rngs,
    ):
        subunits = max(1, int(subunits))
        units = []
        cin, s = in_channels, strides
        for i in range(subunits):
            units.append(
                ConvADN(
                    spatial_dims,
                    cin,
                    out_channels,
                    strides=s,
                    kernel_size=kernel_size,
                    act=act,
                    norm=norm,
                    dropout=dropout,
                    bias=bias,
                    conv_only=last_conv_only and i == subunits - 1,
                    rngs=rngs,
                )
            )
            cin, s = out_channels, 1
        self.units = nnx.List(units)
        strided = any(v != 1 for v in as_tuple(strides, spatial_dims, "strides"))
        if strided or in_channels != out_channels:
            k = kernel_size if strided else 1
            self.residual = Conv(
                spatial_dims,
                in_channels,
                out_channels,
                k,
                strides,
                padding=None if strided else 0,
                use_bias=bias,
                rngs=rngs,
            )
        else:
            self.residual = None

    def __call__(self, x: jax.Array) -> jax.Array:
        res = x if self.residual is None else self.residual(x)
        for unit in self.units:
            x = unit(x)
        return x + res


class UnetBasicBlock(nnx.Module):
    """MONAI ``UnetBasicBlock`` (nnU-Net's stage): 2 x (conv, InstanceNorm, act).

    Convolutions are initialised He-normal (``a = 0.01``) as in nnU-Net and
    MONAI ``DynUNet``; the first carries the stride, with PyTorch padding
    ``(kernel_size - stride + 1) // 2``.

    Args:
        spatial_dims, in_channels, out_channels: as :class:`ConvADN`.
        kernel_size, strides: int or per axis.
        norm: ``"instance"`` (affine) or ``"batch"``.
        negative_slope: LeakyReLU slope (0.01).
        dropout: rate after each convolution, or ``None``.
        conv_bias: bias on the two convolutions (MONAI ``DynUNet``: ``False``;
            nnU-Net ``PlainConvUNet``: ``True``; a bias directly before an affine
            norm is redundant).
        rngs: ``nnx.Rngs``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        norm: str = "instance",
        negative_slope: float = 0.01,
        dropout: float | None = None,
        conv_bias: bool = False,
        rngs: nnx.Rngs,
    ):
        k = as_tuple(kernel_size, spatial_dims, "kernel_size")
        s = as_tuple(strides, spatial_dims, "strides")
        if any(ki < si for ki, si in zip(k, s, strict=True)):
            raise ValueError(f"kernel_size {k} must be >= strides {s} on every axis")
        common = dict(use_bias=conv_bias, init="kaiming_normal", rngs=rngs)
        self.conv1 = Conv(
            spatial_dims,
            in_channels,
            out_channels,
            k,
            s,
            padding=tuple((ki - si + 1) // 2 for ki, si in zip(k, s, strict=True)),
            **common,
        )
        self.conv2 = Conv(spatial_dims, out_channels, out_channels, k, 1, **common)
        self.drop1 = make_dropout(dropout, rngs)
        self.drop2 = make_dropout(dropout, rngs)
        self.norm1 = make_norm(norm, spatial_dims, out_channels, affine=True)
        self.norm2 = make_norm(norm, spatial_dims, out_channels, affine=True)
        self.act = Activation("leakyrelu", negative_slope)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv, drop, norm in (
            (self.conv1, self.drop1, self.norm1),
            (self.conv2, self.drop2, self.norm2),
        ):
            x = conv(x)
            if drop is not None:
                x = drop(x)
            x = self.act(norm(x))
        return x


class UnetUpBlock(nnx.Module):
    """MONAI ``UnetUpBlock``: transposed conv (kernel = stride), concat skip, stage.

    ``(B, *S, Cin), skip (B, *S*up, Cout) -> (B, *S*up, Cout)``. The transposed
    convolution has ``kernel_size = strides = upsample_kernel_size`` and no bias
    unless ``trans_bias``; the skip is concatenated after the upsampled features.

    Args:
        spatial_dims, in_channels, out_channels: as :class:`ConvADN`.
        kernel_size: kernel of the stage's two convolutions.
        upsample_kernel_size: kernel and stride of the transposed convolution.
        norm, negative_slope, dropout, conv_bias: as :class:`UnetBasicBlock`.
        trans_bias: bias on the transposed convolution.
        rngs: ``nnx.Rngs``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int],
        upsample_kernel_size: int | Sequence[int],
        norm: str = "instance",
        negative_slope: float = 0.01,
        dropout: float | None = None,
        conv_bias: bool = False,
        trans_bias: bool = False,
        rngs: nnx.Rngs,
    ):
        up = as_tuple(upsample_kernel_size, spatial_dims, "upsample_kernel_size")
        self.transp_conv = ConvTranspose(
            spatial_dims,
            in_channels,
            out_channels,
            up,
            up,
            padding=0,
            output_padding=0,
            use_bias=trans_bias,
            init="kaiming_normal",
            rngs=rngs,
        )
        self.drop = make_dropout(dropout, rngs)
        self.conv_block = UnetBasicBlock(
            spatial_dims,
            2 * out_channels,
            out_channels,
            kernel_size=kernel_size,
            norm=norm,
            negative_slope=negative_slope,
            dropout=dropout,
            conv_bias=conv_bias,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        x = self.transp_conv(x)
        if self.drop is not None:
            x = self.drop(x)
        return self.conv_block(jnp.concatenate([x, skip], axis=-1))


class SegResBlock(nnx.Module):
    """MONAI SegResNet ``ResBlock``: x + conv(act(norm(conv(act(norm(x)))))).

    GroupNorm (8 groups) and ReLU; bias-free 3x3 convolutions with PyTorch's
    default initialisation. Shape preserving: ``(B, *S, C) -> (B, *S, C)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        *,
        kernel_size: int = 3,
        norm: str = "group",
        act: str = "relu",
        rngs: nnx.Rngs,
    ):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.norm1 = make_norm(norm, spatial_dims, channels)
        self.norm2 = make_norm(norm, spatial_dims, channels)
        self.act = make_act(act)
        conv = dict(use_bias=False, rngs=rngs)
        self.conv1 = Conv(spatial_dims, channels, channels, kernel_size, **conv)
        self.conv2 = Conv(spatial_dims, channels, channels, kernel_size, **conv)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv1(self.act(self.norm1(x)))
        y = self.conv2(self.act(self.norm2(y)))
        return x + y
