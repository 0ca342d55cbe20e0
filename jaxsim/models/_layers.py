"""Layers: N-d convolutions, normalisations, activations and initialisers.

Every layer works for 2 and 3 spatial dimensions from one definition, on
channel-last arrays: ``(batch, *spatial, channels)`` with spatial axes in the
project's ``[..., z, y, x]`` order, i.e. ``(B, Y, X, C)`` in 2D and
``(B, Z, Y, X, C)`` in 3D.

Padding and output sizes follow PyTorch (``torch.nn.ConvNd`` /
``ConvTransposeNd`` with ``padding`` and ``output_padding``), so that networks
built from these layers have the shapes and parameter counts of their MONAI
references. Kernels are stored as ``(*kernel_size, in, out)``; a PyTorch weight
maps onto them by a transpose (``ConvTranspose`` flips it spatially in the
forward pass exactly as PyTorch's adjoint convolution does).

Initialisers mirror the reference implementation of each network:

* ``torch_default``: PyTorch's default for ``ConvNd``/``Linear`` (MONAI ``UNet``,
  ``SegResNetVAE``): weights ``kaiming_uniform(a=sqrt(5))``, i.e.
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases from the same interval.
* ``kaiming_normal``: nnU-Net's ``InitWeights_He(1e-2)`` and MONAI ``DynUNet``:
  weights ``N(0, gain**2 / fan_in)`` with ``gain = sqrt(2 / (1 + 0.01**2))``,
  biases zero.

``fan_in`` is PyTorch's: ``in_channels * prod(kernel_size)`` for a convolution and
``out_channels * prod(kernel_size)`` for a transposed convolution (PyTorch reads
the fan from dimension 1 of its ``(in, out, *k)`` transposed weight).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from ._conv import conv, conv_transpose

INITS = ("torch_default", "kaiming_normal")
ACTIVATIONS = ("prelu", "leakyrelu", "relu")
NORMS = ("instance", "batch", "group", "none")


def as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """``value`` repeated ``n`` times, or checked to have length ``n``."""
    if isinstance(value, int):
        return (int(value),) * n
    out = tuple(int(v) for v in value)
    if len(out) != n:
        raise ValueError(
            f"{name} must be an int or a sequence of {n} ints, got {value}"
        )
    return out


def check_spatial_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)


def _check_choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    key = str(value).lower()
    if key not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return key


_CHUNK = 1 << 15


@jax.jit
def _uniform_chunk(key):
    return jax.random.uniform(key, (_CHUNK,), jnp.float32)


@jax.jit
def _normal_chunk(key):
    return jax.random.normal(key, (_CHUNK,), jnp.float32)


def _draw(chunk_fn, key, shape, scale: float, shift: float) -> jax.Array:
    """``scale * (draws + shift)``: ``prod(shape)`` float32 draws of ``chunk_fn``.

    Values are drawn in fixed-size chunks (``fold_in(key, i)`` for chunk ``i``)
    so that only two tiny programs are ever compiled: compiling a random draw per
    parameter shape costs seconds each on XLA:CPU and dominated construction.
    Concrete keys assemble and scale on the host; traced keys (``nnx.eval_shape``,
    a jitted constructor) take the same steps in jax.
    """
    n = math.prod(shape)
    count = -(-n // _CHUNK)
    chunks = [chunk_fn(jax.random.fold_in(key, i)) for i in range(count)]
    if isinstance(key, jax.core.Tracer):
        flat = jnp.concatenate(chunks)[:n]
        return (scale * (flat + shift)).reshape(shape)
    flat = np.concatenate([np.asarray(c) for c in chunks])[:n]
    flat = np.float32(scale) * (flat + np.float32(shift))
    return jnp.asarray(flat.reshape(shape))


def _uniform(key, shape, bound: float) -> jax.Array:
    """``U(-bound, bound)``."""
    return _draw(_uniform_chunk, key, shape, 2.0 * bound, -0.5)


def _normal(key, shape, std: float) -> jax.Array:
    """``N(0, std**2)``."""
    return _draw(_normal_chunk, key, shape, std, 0.0)


def _init_weight(init: str, key, shape, fan_in: int, slope: float):
    if init == "torch_default":
        return _uniform(key, tuple(shape), 1.0 / math.sqrt(fan_in))
    gain = math.sqrt(2.0 / (1.0 + slope**2))
    return _normal(key, tuple(shape), gain / math.sqrt(fan_in))


def _init_bias(init: str, key, n: int, fan_in: int):
    if init == "torch_default":
        return _uniform(key, (n,), 1.0 / math.sqrt(fan_in))
    return jnp.zeros((n,), jnp.float32)


def torch_uniform_init(fan_in: int):
    """Initializer ``U(+-1/sqrt(fan_in))``: PyTorch's default for ``nn.Linear``."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return _uniform(key, tuple(shape), bound).astype(dtype)

    return init


class Conv(nnx.Module):
    """N-d convolution with PyTorch padding: ``(B, *S, Cin) -> (B, *S', Cout)``.

    ``S'[i] = floor((S[i] + 2 * padding[i] - kernel_size[i]) / strides[i]) + 1``.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channel counts.
        kernel_size: int or one per spatial axis.
        strides: int or one per spatial axis.
        padding: symmetric zero padding per axis; ``None`` gives
            ``(kernel_size - 1) // 2`` ("same" for odd kernels at stride 1).
        use_bias: add a learned bias.
        init: ``"torch_default"`` or ``"kaiming_normal"`` (see the module docstring).
        negative_slope: the ``a`` of the He gain for ``"kaiming_normal"``.
        rngs: ``nnx.Rngs`` with a ``params`` (or default) stream.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 1,
        *,
        padding: int | Sequence[int] | None = None,
        use_bias: bool = True,
        init: str = "torch_default",
        negative_slope: float = 0.01,
        rngs: nnx.Rngs,
    ):
        d = check_spatial_dims(spatial_dims)
        init = _check_choice(init, INITS, "init")
        self.kernel_size = as_tuple(kernel_size, d, "kernel_size")
        self.strides = as_tuple(strides, d, "strides")
        if padding is None:
            padding = tuple((k - 1) // 2 for k in self.kernel_size)
        self.padding = as_tuple(padding, d, "padding")
        fan_in = in_channels * math.prod(self.kernel_size)
        shape = (*self.kernel_size, in_channels, out_channels)
        self.kernel = nnx.Param(
            _init_weight(init, rngs.params(), shape, fan_in, negative_slope)
        )
        self.bias = (
            nnx.Param(_init_bias(init, rngs.params(), out_channels, fan_in))
            if use_bias
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv(x, self.kernel[...], self.strides, self.padding)
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class ConvTranspose(nnx.Module):
    """N-d transposed convolution with PyTorch semantics.

    ``S'[i] = (S[i] - 1) * strides[i] - 2 * padding[i] + kernel_size[i]
    + output_padding[i]``; the adjoint of :class:`Conv` with the same kernel,
    strides and padding (PyTorch's ``ConvTransposeNd``).

    Args:
        spatial_dims, in_channels, out_channels, kernel_size, strides: as
            :class:`Conv`.
        padding: PyTorch's ``padding``; ``None`` gives ``(kernel_size - 1) // 2``.
        output_padding: extra size on the high side; ``None`` gives
            ``strides - 1`` (doubling sizes for odd kernels with stride 2).
        use_bias, init, negative_slope, rngs: as :class:`Conv`.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 2,
        *,
        padding: int | Sequence[int] | None = None,
        output_padding: int | Sequence[int] | None = None,
        use_bias: bool = True,
        init: str = "torch_default",
        negative_slope: float = 0.01,
        rngs: nnx.Rngs,
    ):
        d = check_spatial_dims(spatial_dims)
        init = _check_choice(init, INITS, "init")
        self.kernel_size = as_tuple(kernel_size, d, "kernel_size")
        self.strides = as_tuple(strides, d, "strides")
        if padding is None:
            padding = tuple((k - 1) // 2 for k in self.kernel_size)
        self.padding = as_tuple(padding, d, "padding")
        if output_padding is None:
            output_padding = tuple(s - 1 for s in self.strides)
        self.output_padding = as_tuple(output_padding, d, "output_padding")
        for k, s, p, op in zip(
            self.kernel_size,
            self.strides,
            self.padding,
            self.output_padding,
            strict=True,
        ):
            if p > k - 1 or not 0 <= op < s:
                raise ValueError(
                    "ConvTranspose needs 0 <= padding <= kernel_size - 1 and "
                    "0 <= output_padding < strides, got "
                    f"kernel_size={self.kernel_size}, "
                    f"strides={self.strides}, padding={self.padding}, "
                    f"output_padding={self.output_padding}"
                )
        fan_in = out_channels * math.prod(self.kernel_size)
        shape = (*self.kernel_size, in_channels, out_channels)
        self.kernel = nnx.Param(
            _init_weight(init, rngs.params(), shape, fan_in, negative_slope)
        )
        self.bias = (
            nnx.Param(_init_bias(init, rngs.params(), out_channels, fan_in))
            if use_bias
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        patch = self.kernel_size == self.strides and not any(self.padding)
        if patch and not any(self.output_padding):
            y = _patch_transpose(x, kernel)
        else:
            y = conv_transpose(
                x, kernel, self.strides, self.padding, self.output_padding
            )
        if self.bias is not None:
            y = y + self.bias[...]
        return y


def _patch_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Transposed convolution with kernel == stride and no padding.

    Each input voxel writes one non-overlapping ``kernel_size`` patch, so the
    operation is a matrix product followed by a reshape (no zero-dilated input).
    """
    *k, _, cout = kernel.shape
    d = len(k)
    b, *s, _ = x.shape
    sp, kp = "zyx"[-d:], "tuv"[-d:]
    y = jnp.einsum(f"b{sp}i,{kp}io->b{sp}{kp}o", x, kernel)
    # interleave (s0, k0, s1, k1, ...) so that each pair merges into one axis
    perm = [0]
    for i in range(d):
        perm += [1 + i, 1 + d + i]
    y = y.transpose(*perm, 1 + 2 * d)
    return y.reshape(b, *(si * ki for si, ki in zip(s, k, strict=True)), cout)


def _moments(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance over ``axes`` (kept).

    Two passes (``mean((x - mean)^2)``), not ``E[x^2] - E[x]^2``: the first
    layer's activations inherit the image's intensity offset (MR magnitudes in
    the hundreds), where the one-pass form loses the variance to cancellation.
    """
    mean = jnp.mean(x, axis=axes, keepdims=True)
    return mean, jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)


class InstanceNorm(nnx.Module):
    """Instance normalisation over the spatial axes of each channel of each image.

    ``(x - mean) / sqrt(var + epsilon)`` (biased variance), times ``scale`` plus
    ``bias`` when ``affine``. PyTorch's ``InstanceNormNd`` without running stats;
    MONAI ``UNet`` uses ``affine=False`` (no parameters), nnU-Net and MONAI
    ``DynUNet`` ``affine=True``.
    """

    def __init__(self, num_features: int, *, affine: bool = False, epsilon=1e-5):
        self.epsilon = float(epsilon)
        self.scale = nnx.Param(jnp.ones((num_features,))) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,))) if affine else None

    def __call__(self, x: jax.Array) -> jax.Array:
        axes = tuple(range(1, x.ndim - 1))
        mean, var = _moments(x, axes)
        y = (x - mean) * lax.rsqrt(var + self.epsilon)
        if self.scale is not None:
            y = y * self.scale[...] + self.bias[...]
        return y


class GroupNorm(nnx.Module):
    """Group normalisation (PyTorch ``GroupNorm``, affine, ``epsilon=1e-5``)."""

    def __init__(self, num_features: int, num_groups: int = 8, *, epsilon=1e-5):
        if num_features % num_groups:
            raise ValueError(
                f"GroupNorm: num_features={num_features} is not divisible by "
                f"num_groups={num_groups}"
            )
        self.num_groups = int(num_groups)
        self.epsilon = float(epsilon)
        self.scale = nnx.Param(jnp.ones((num_features,)))
        self.bias = nnx.Param(jnp.zeros((num_features,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        *lead, c = x.shape
        g = x.reshape(*lead, self.num_groups, c // self.num_groups)
        mean, var = _moments(g, (*range(1, x.ndim - 1), x.ndim))
        y = ((g - mean) * lax.rsqrt(var + self.epsilon)).reshape(x.shape)
        return y * self.scale[...] + self.bias[...]


class BatchNorm(nnx.Module):
    """Batch normalisation with PyTorch semantics.

    Training (``use_running_average=False``): normalise by the batch statistics
    over batch and spatial axes (biased variance) and update the running stats
    ``r <- (1 - momentum) * r + momentum * batch`` with the *unbiased* batch
    variance, as ``torch.nn.BatchNormNd(momentum=0.1)`` does. Evaluation: normalise
    by the running stats. ``model.train()`` / ``model.eval()`` switch the mode.
    """

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.1,
        epsilon: float = 1e-5,
        use_running_average: bool = False,
    ):
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.use_running_average = use_running_average
        self.scale = nnx.Param(jnp.ones((num_features,)))
        self.bias = nnx.Param(jnp.zeros((num_features,)))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
        self.var = nnx.BatchStat(jnp.ones((num_features,)))

    def set_view(self, use_running_average: bool | None = None):
        """For ``nnx.view``: ``True`` normalises by the running statistics."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            n = math.prod(x.shape[:-1])
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * lax.stop_gradient(mean)
            self.var[...] = (1 - m) * self.var[...] + m * lax.stop_gradient(unbiased)
        y = (x - mean) * lax.rsqrt(var + self.epsilon)
        return y * self.scale[...] + self.bias[...]


class PReLU(nnx.Module):
    """PyTorch ``nn.PReLU()``: one learned slope shared by all channels, init 0.25."""

    def __init__(self, init: float = 0.25):
        self.slope = nnx.Param(jnp.asarray(init, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, self.slope[...] * x)


class Activation(nnx.Module):
    """Parameter-free activation: ``"relu"`` or ``"leakyrelu"`` (slope 0.01)."""

    def __init__(self, name: str, negative_slope: float = 0.01):
        self.name = _check_choice(name, ("relu", "leakyrelu"), "act")
        self.negative_slope = float(negative_slope)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.name == "relu":
            return jax.nn.relu(x)
        return jax.nn.leaky_relu(x, self.negative_slope)


def make_act(name: str) -> nnx.Module:
    """``"prelu"`` (one learned slope), ``"leakyrelu"`` (0.01) or ``"relu"``."""
    name = _check_choice(name, ACTIVATIONS, "act")
    return PReLU() if name == "prelu" else Activation(name)


def make_norm(
    name: str, spatial_dims: int, channels: int, *, affine: bool = False
) -> nnx.Module | None:
    """``"instance"`` (``affine`` as given), ``"batch"``, ``"group"``, ``"none"``."""
    del spatial_dims  # the same layers serve 2D and 3D (channel-last)
    name = _check_choice(name, NORMS, "norm")
    if name == "instance":
        return InstanceNorm(channels, affine=affine)
    if name == "batch":
        return BatchNorm(channels)
    if name == "group":
        return GroupNorm(channels, 8)
    return None


def make_dropout(rate: float | None, rngs: nnx.Rngs) -> nnx.Dropout | None:
    """``nnx.Dropout`` for a rate in (0, 1), ``None`` for no dropout."""
    if rate is None or rate == 0:
        return None
    if not 0 <= rate < 1:
        raise ValueError(f"dropout must be in [0, 1), got {rate}")
    return nnx.Dropout(float(rate), rngs=rngs)


def upsample_linear(x: jax.Array, factor: int = 2) -> jax.Array:
    """(Bi/tri)linear upsampling by ``factor`` with half-pixel centres.

    Equals PyTorch ``interpolate(mode="bilinear"/"trilinear",
    align_corners=False)`` for integer upsampling factors (edge samples clamp).
    """
    b, *s, c = x.shape
    return jax.image.resize(x, (b, *(n * factor for n in s), c), method="linear")
