"""nnU-Net-style plain convolutional U-Net (MONAI ``DynUNet``) in Flax NNX."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from flax import nnx

from ._blocks import UnetBasicBlock, UnetUpBlock
from ._layers import Conv, as_tuple, check_spatial_dims, make_dropout
from ._shapes import check_input, check_spatial_divisible


def default_filters(num_stages: int, spatial_dims: int) -> tuple[int, ...]:
    """nnU-Net's features per stage: ``min(32 * 2**i, 320 (3D) / 512 (2D))``."""
    cap = 320 if spatial_dims == 3 else 512
    return tuple(min(32 * 2**i, cap) for i in range(num_stages))


class _OutBlock(nnx.Module):
    """1x1 convolution with bias (MONAI ``UnetOutBlock``), optional dropout."""

    def __init__(self, spatial_dims, in_channels, out_channels, dropout, rngs):
        self.conv = Conv(
            spatial_dims, in_channels, out_channels, 1, 1,
            use_bias=True, init="kaiming_normal", rngs=rngs,
        )  # fmt: skip
        self.drop = make_dropout(dropout, rngs)

    def __call__(self, x):
        x = self.conv(x)
        return x if self.drop is None else self.drop(x)


class DynUNet(nnx.Module):
    """Plain convolutional U-Net with per-stage kernels and strides (nnU-Net).

    Stage ``i`` is two (conv, InstanceNorm (affine, eps 1e-5), LeakyReLU 0.01)
    units, the first with stride ``strides[i]``; stage 0 is the input block and
    the last stage the bottleneck. Each decoder level upsamples with a
    transposed convolution (kernel = stride = ``upsample_kernel_size[i]``, no
    bias), concatenates the skip and runs a two-conv stage, then a 1x1
    convolution gives the logits. Parameter for parameter this is MONAI's
    ``DynUNet`` (``res_block=False``), including its choice of the decoder conv
    kernel at level ``i``: ``kernel_size[i + 1]`` (nnU-Net's ``PlainConvUNet`` uses
    ``kernel_size[i]``; they differ only for anisotropic plans).

    Convolutions are initialised He-normal with ``a = 0.01`` and zero bias
    (nnU-Net's ``InitWeights_He(1e-2)``, MONAI's ``DynUNet.initialize_weights``).
    Use :func:`plan_dynunet` for nnU-Net's kernels and strides from the spacing.

    Deep supervision: with ``deep_supervision=True``, in training mode
    (``model.train()``, the state after construction) the call returns a tuple
    ``(logits, head_1, ..., head_n)`` with ``n = deep_supr_num``: ``head_j`` is a
    1x1 convolution on decoder level ``j`` at that level's resolution (nnU-Net
    downsamples the targets rather than MONAI's upsampling of the heads). In
    evaluation mode (``model.eval()``) it returns the logits alone.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channel counts.
        kernel_size: per stage, an int or one per spatial axis; at least 3 stages.
        strides: per stage (the first is usually 1), same length.
        upsample_kernel_size: per decoder level, ``len(strides) - 1`` entries;
            ``None`` uses ``strides[1:]``.
        filters: features per stage; ``None`` gives :func:`default_filters`.
        dropout: rate after each convolution, or ``None``.
        norm: ``"instance"`` (affine, default) or ``"batch"``.
        negative_slope: LeakyReLU slope.
        deep_supervision: return the extra heads in training mode.
        deep_supr_num: number of heads, ``1 <= deep_supr_num < len(strides) - 1``.
        conv_bias: bias on the stage convolutions (``False`` as MONAI; ``True``
            as nnU-Net; redundant before an affine norm).
        trans_bias: bias on the transposed convolutions (MONAI default ``False``).
        rngs: ``nnx.Rngs``.

    Input ``(B, *spatial, in_channels)``, spatial sizes divisible by the product
    of the strides per axis; output ``(B, *spatial, out_channels)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: Sequence[int | Sequence[int]],
        strides: Sequence[int | Sequence[int]],
        upsample_kernel_size: Sequence[int | Sequence[int]] | None = None,
        filters: Sequence[int] | None = None,
        dropout: float | None = None,
        norm: str = "instance",
        negative_slope: float = 0.01,
        deep_supervision: bool = False,
        deep_supr_num: int = 1,
        conv_bias: bool = False,
        trans_bias: bool = False,
        rngs: nnx.Rngs,
    ):
        d = check_spatial_dims(spatial_dims)
        n = len(strides)
        if len(kernel_size) != n or n < 3:
            raise ValueError(
                "kernel_size and strides must have the same length, at least 3 "
                f"stages; got {len(kernel_size)} kernel sizes and {n} strides"
            )
        kernels = tuple(
            as_tuple(k, d, f"kernel_size[{i}]") for i, k in enumerate(kernel_size)
        )
        strides = tuple(as_tuple(s, d, f"strides[{i}]") for i, s in enumerate(strides))
        if upsample_kernel_size is None:
            upsample_kernel_size = strides[1:]
        if len(upsample_kernel_size) != n - 1:
            raise ValueError(
                f"upsample_kernel_size must have len(strides) - 1 = {n - 1} entries, "
                f"got {len(upsample_kernel_size)}"
            )
        ups = tuple(
            as_tuple(u, d, f"upsample_kernel_size[{i}]")
            for i, u in enumerate(upsample_kernel_size)
        )
        for i, (u, s) in enumerate(zip(ups, strides[1:], strict=True)):
            if u != s:
                raise ValueError(
                    f"upsample_kernel_size[{i}] = {u} must equal strides[{i + 1}] = "
                    f"{s} (the transposed convolution's stride is its kernel size)"
                )
        if filters is None:
            filters = default_filters(n, d)
        if len(filters) < n:
            raise ValueError(
                f"filters needs {n} entries (one per stage), got {filters}"
            )
        filters = tuple(int(f) for f in filters[:n])
        if deep_supervision and not 1 <= deep_supr_num < n - 1:
            raise ValueError(
                f"deep_supr_num must be in [1, {n - 2}] for {n} stages, "
                f"got {deep_supr_num}"
            )
        self.spatial_dims, self.in_channels, self.out_channels = (
            d,
            in_channels,
            out_channels,
        )
        self.strides = strides
        self.deep_supervision = bool(deep_supervision)
        self.deep_supr_num = int(deep_supr_num)
        self.deterministic = False  # nnx train()/eval() switch the heads' output
        block = dict(
            norm=norm, negative_slope=negative_slope, dropout=dropout,
            conv_bias=conv_bias, rngs=rngs,
        )  # fmt: skip
        self.encoder = nnx.List(
            [
                UnetBasicBlock(
                    d,
                    in_channels if i == 0 else filters[i - 1],
                    filters[i],
                    kernel_size=kernels[i],
                    strides=strides[i],
                    **block,
                )  # fmt: skip
                for i in range(n)
            ]
        )
        self.decoder = nnx.List(
            [
                UnetUpBlock(
                    d,
                    filters[i + 1],
                    filters[i],
                    kernel_size=kernels[i + 1],
                    upsample_kernel_size=ups[i],
                    trans_bias=trans_bias,
                    **block,
                )  # fmt: skip
                for i in range(n - 1)
            ]
        )
        self.output_block = _OutBlock(d, filters[0], out_channels, dropout, rngs)
        self.heads = nnx.List(
            [
                _OutBlock(d, filters[j], out_channels, dropout, rngs)
                for j in range(1, self.deep_supr_num + 1)
            ]
            if self.deep_supervision
            else []
        )

    def set_view(self, deterministic: bool | None = None):
        """For ``nnx.view``: ``deterministic=True`` is evaluation mode."""
        if deterministic is not None:
            self.deterministic = deterministic

    @property
    def total_stride(self) -> tuple[int, ...]:
        """Product of the strides per spatial axis (input sizes must divide by it)."""
        return tuple(
            math.prod(s[a] for s in self.strides) for a in range(self.spatial_dims)
        )

    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, ...]:
        """Logits, or ``(logits, *heads)`` in training mode with deep supervision."""
        check_input(x, self.spatial_dims, self.in_channels, "DynUNet")
        check_spatial_divisible(x.shape[1:-1], self.total_stride, "DynUNet")
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        levels = []
        for level in reversed(range(len(self.decoder))):
            x = self.decoder[level](x, skips[level])
            levels.append(x)
        levels.reverse()  # levels[j] is decoder level j (0 = full resolution)
        logits = self.output_block(levels[0])
        if self.deep_supervision and not self.deterministic:
            return (logits, *(head(levels[j + 1]) for j, head in enumerate(self.heads)))
        return logits


def deep_supervision_weights(num_outputs: int) -> tuple[float, ...]:
    """nnU-Net's loss weights for ``num_outputs`` deep-supervision outputs.

    ``w_i = 1 / 2**i`` from full resolution down, normalised to sum to 1. nnU-Net
    sets the weight of its lowest-resolution output to zero because it supervises
    every decoder level; with a subset of heads (``deep_supr_num``) all weights
    are kept.

    Args:
        num_outputs: logits plus heads (``1 + deep_supr_num``), at least 1.

    Returns:
        Weights, largest first, summing to 1.
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    w = [0.5**i for i in range(num_outputs)]
    total = sum(w)
    return tuple(v / total for v in w)
