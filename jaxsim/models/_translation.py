"""Unpaired image translation networks: the ResNet generator and the PatchGAN.

The layouts follow the reference implementations layer for layer, so parameter
counts and the indices of CUT's feature layers agree with theirs:

* :class:`ResnetGenerator` -- Johnson et al.'s ResNet generator as CycleGAN
  (Zhu et al. 2017) and CUT (Park et al. 2020) build it: a 7x7 reflect-padded
  stem, two downsamplings, ``n_blocks`` residual blocks (reflect padding,
  conv-norm-ReLU-conv-norm, identity skip), two upsamplings, a 7x7 output conv
  and ``tanh``. With ``antialias=True`` (CUT's default) a downsampling is a
  stride-1 conv followed by :func:`blur_downsample` and an upsampling is
  :func:`blur_upsample` followed by a stride-1 conv; with ``antialias=False``
  (CycleGAN) they are a stride-2 conv and a stride-2 transposed conv.
* :class:`PatchDiscriminator` -- the 70x70 PatchGAN (``n_layers=3``): 4x4 convs,
  LeakyReLU 0.2, a one-channel map of real/fake scores, no sigmoid.

Normalisation is instance norm without affine parameters (so convs carry a
bias, as the references do when their norm is instance norm). Arrays are
channel-last ``(B, H, W, C)``; images are expected in ``[-1, 1]``.

Initialisation (PyTorch ``init_weights`` of the references, biases zero):
``"normal"`` is ``N(0, gain^2)`` (CycleGAN), ``"xavier"`` is Glorot normal with
standard deviation ``gain * sqrt(2 / (fan_in + fan_out))`` (CUT); ``gain`` 0.02.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._conv import conv, conv_transpose
from ._layers import InstanceNorm, _normal

__all__ = [
    "GAN_INITS",
    "patchgan_output_size",
    "GanConv",
    "PatchDiscriminator",
    "ResnetGenerator",
    "blur_downsample",
    "blur_upsample",
]

GAN_INITS = ("normal", "xavier")


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or int(value) != value or value < low or (
        high is not None and value > high
    ):  # fmt: skip
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be an integer >= {low}{upper}; got {value!r}")
    return int(value)


def gan_weight(init: str, gain: float, key, shape, fan_in: int, fan_out: int):
    """A weight drawn as the references' ``init_weights`` draws it."""
    if init not in GAN_INITS:
        raise ValueError(f"init must be one of {GAN_INITS}; got {init!r}")
    if not gain > 0:
        raise ValueError(f"init_gain must be > 0; got {gain}")
    std = gain if init == "normal" else gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _normal(key, tuple(shape), std)


class GanConv(nnx.Module):
    """2D convolution ``(B, H, W, Cin) -> (B, H', W', Cout)`` with zero padding
    (reflect padding is a separate step), or a transposed one.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: square kernel side.
        strides: stride.
        padding: symmetric zero padding (PyTorch's ``padding``).
        transpose: a PyTorch ``ConvTranspose2d`` (``output_padding = strides - 1``).
        use_bias: learned bias (initialised to zero).
        init, init_gain: see the module docstring.
        rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        strides: int = 1,
        *,
        padding: int = 0,
        transpose: bool = False,
        use_bias: bool = True,
        init: str = "normal",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        self.strides = int(strides)
        self.padding = int(padding)
        self.transpose = bool(transpose)
        k = int(kernel_size)
        field = k * k
        # PyTorch's fans: a transposed weight (in, out, k, k) reads fan_in from
        # dimension 1, i.e. out * k * k.
        fan_in, fan_out = in_channels * field, out_channels * field
        if transpose:
            fan_in, fan_out = fan_out, fan_in
        shape = (k, k, in_channels, out_channels)
        self.kernel = nnx.Param(
            gan_weight(init, init_gain, rngs.params(), shape, fan_in, fan_out)
        )
        self.bias = nnx.Param(jnp.zeros((out_channels,))) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        s, p = (self.strides,) * 2, (self.padding,) * 2
        if self.transpose:
            y = conv_transpose(x, self.kernel[...], s, p, (self.strides - 1,) * 2)
        else:
            y = conv(x, self.kernel[...], s, p)
        if self.bias is not None:
            y = y + self.bias[...]
        return y


def _taps(n: int) -> np.ndarray:
    """Binomial filter of ``n`` taps, normalised to sum 1 ([1,2,1]/4, [1,3,3,1]/8)."""
    row = np.array([math.comb(n - 1, i) for i in range(n)], np.float64)
    return row / row.sum()


def _correlate_axis(x: jax.Array, taps, axis: int, stride: int) -> jax.Array:
    """Valid 1D correlation along ``axis`` with fixed ``taps`` and ``stride``."""
    n = (x.shape[axis] - len(taps)) // stride + 1
    out = 0.0
    for i, t in enumerate(taps):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(i, i + stride * (n - 1) + 1, stride)
        out = out + float(t) * x[tuple(sl)]
    return out


def blur_downsample(x: jax.Array) -> jax.Array:
    """CUT's ``Downsample``: reflect pad 1, ``[1,2,1]x[1,2,1]/16`` blur, stride 2.

    Args:
        x: ``(B, H, W, C)`` float.

    Returns:
        ``(B, (H - 1) // 2 + 1, (W - 1) // 2 + 1, C)``; a fixed filter (no
        parameters), the same for every channel.
    """
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    taps = _taps(3)
    return _correlate_axis(_correlate_axis(x, taps, 1, 2), taps, 2, 2)


def _upsample_axis(x: jax.Array, axis: int) -> jax.Array:
    """One axis of CUT's ``Upsample``: replicate pad 1, transposed correlation
    with ``[1,3,3,1]/4`` (stride 2, padding 2), drop the first and last sample."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    x = jnp.pad(x, pad, mode="edge")
    n = x.shape[axis]
    # zero-dilate, then a valid correlation with the flipped (symmetric) taps
    # after padding by kernel - 1 - padding = 1 on each side
    shape = list(x.shape)
    shape[axis] = 2 * n - 1
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(0, None, 2)
    dilated = jnp.zeros(shape, x.dtype).at[tuple(sl)].set(x)
    pad[axis] = (1, 1)
    full = _correlate_axis(jnp.pad(dilated, pad), 2.0 * _taps(4), axis, 1)
    sl[axis] = slice(1, full.shape[axis] - 1)
    return full[tuple(sl)]


def blur_upsample(x: jax.Array) -> jax.Array:
    """CUT's ``Upsample``: a ``[1,3,3,1]x[1,3,3,1]/16`` transposed blur, stride 2.

    Args:
        x: ``(B, H, W, C)`` float.

    Returns:
        ``(B, 2 H, 2 W, C)``; fixed filter, no parameters (a constant image stays
        constant).
    """
    return _upsample_axis(_upsample_axis(x, 1), 2)


def _reflect(x: jax.Array, p: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


class _Op(nnx.Module):
    """A parameter-free step of the layer list (kept so indices match)."""

    def __init__(self, name: str, arg: int = 0):
        self.name, self.arg = name, int(arg)

    def __call__(self, x):
        if self.name == "reflect":
            return _reflect(x, self.arg)
        if self.name == "relu":
            return jax.nn.relu(x)
        if self.name == "leakyrelu":
            return jax.nn.leaky_relu(x, 0.2)
        if self.name == "down":
            return blur_downsample(x)
        if self.name == "up":
            return blur_upsample(x)
        return jnp.tanh(x)


class _ResnetBlock(nnx.Module):
    """``x + IN(conv3(pad(ReLU(IN(conv3(pad(x)))))))`` with reflect padding."""

    def __init__(self, dim: int, *, init: str, init_gain: float, rngs: nnx.Rngs):
        kw = dict(init=init, init_gain=init_gain, rngs=rngs)
        self.conv1 = GanConv(dim, dim, 3, **kw)
        self.conv2 = GanConv(dim, dim, 3, **kw)
        self.norm = InstanceNorm(dim)

    def __call__(self, x):
        y = jax.nn.relu(self.norm(self.conv1(_reflect(x, 1))))
        return x + self.norm(self.conv2(_reflect(y, 1)))


class ResnetGenerator(nnx.Module):
    """The ResNet image-to-image generator of CycleGAN and CUT.

    Layer list (the reference's ``nn.Sequential``, indices as CUT's
    ``--nce_layers`` count them), with ``antialias=True``::

        0 reflect pad 3   1 conv7 (in -> ngf)   2 IN   3 ReLU
        4 conv3 (ngf -> 2 ngf)   5 IN   6 ReLU   7 blur down
        8 conv3 (2 ngf -> 4 ngf) 9 IN  10 ReLU  11 blur down
        12 ... 12 + n_blocks - 1: residual blocks (4 ngf)
        then per upsampling: blur up, conv3, IN, ReLU; reflect pad 3, conv7, tanh

    With ``antialias=False`` the downsamplings are ``conv3 stride 2, IN, ReLU``
    (three entries) and the upsamplings ``convT3 stride 2, IN, ReLU``.

    Args:
        in_channels, out_channels: image channels.
        ngf: width of the first layer (64 in the references).
        n_blocks: residual blocks (9 for 256 px, 6 for 128 px in CycleGAN).
        antialias: CUT's blurred down/up-sampling (default) or CycleGAN's
            strided convs.
        init, init_gain: ``"xavier"`` (CUT) or ``"normal"`` (CycleGAN), 0.02.
        rngs: ``nnx.Rngs``.

    Call: ``(B, H, W, in_channels)`` float in ``[-1, 1]``, ``H`` and ``W``
    multiples of 4 -> ``(B, H, W, out_channels)`` in ``(-1, 1)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        ngf: int = 64,
        n_blocks: int = 9,
        antialias: bool = True,
        init: str = "xavier",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        in_channels = _check_int("in_channels", in_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        ngf = _check_int("ngf", ngf, 1)
        n_blocks = _check_int("n_blocks", n_blocks, 0)
        kw = dict(init=init, init_gain=init_gain, rngs=rngs)
        layers: list = [
            _Op("reflect", 3),
            GanConv(in_channels, ngf, 7, **kw),
            InstanceNorm(ngf),
            _Op("relu"),
        ]
        for i in range(2):
            c = ngf * 2**i
            if antialias:
                layers += [GanConv(c, 2 * c, 3, padding=1, **kw)]
                layers += [InstanceNorm(2 * c), _Op("relu"), _Op("down")]
            else:
                layers += [GanConv(c, 2 * c, 3, 2, padding=1, **kw)]
                layers += [InstanceNorm(2 * c), _Op("relu")]
        layers += [_ResnetBlock(4 * ngf, **kw) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            if antialias:
                layers += [_Op("up"), GanConv(c, c // 2, 3, padding=1, **kw)]
            else:
                layers += [GanConv(c, c // 2, 3, 2, padding=1, transpose=True, **kw)]
            layers += [InstanceNorm(c // 2), _Op("relu")]
        layers += [_Op("reflect", 3), GanConv(ngf, out_channels, 7, **kw), _Op("tanh")]
        self.layers = nnx.List(layers)
        self.in_channels = in_channels
        self.out_channels = out_channels

    @property
    def n_layers(self) -> int:
        """Entries of the layer list (valid feature indices are below it)."""
        return len(self.layers)

    def feature_channels(self, layers) -> list[int]:
        """Channels of the outputs of the listed layer indices."""
        out, c = {}, self.in_channels
        for i, layer in enumerate(self.layers):
            if isinstance(layer, GanConv):
                c = layer.kernel.shape[-1]
            out[i] = c
        return [out[i] for i in self.check_layers(layers)]

    def check_layers(self, layers) -> list[int]:
        """``layers`` as a list of valid, ascending indices (else ``ValueError``)."""
        idx = [int(i) for i in layers]
        if not idx or idx != sorted(set(idx)) or idx[0] < 0 or idx[-1] >= len(self):
            raise ValueError(
                f"nce_layers must be distinct ascending indices in [0, {len(self)}) "
                f"of the generator's layer list; got {list(layers)}"
            )
        return idx

    def __len__(self) -> int:
        return len(self.layers)

    def _check_input(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"x must be (B, H, W, {self.in_channels}); got shape {x.shape}"
            )
        if x.shape[1] % 4 or x.shape[2] % 4:
            raise ValueError(
                f"image height and width must be multiples of 4; got {x.shape[1:3]}"
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        self._check_input(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def encode(self, x: jax.Array, layers) -> list[jax.Array]:
        """Outputs of the listed layers (CUT's ``encode_only``): a list of
        ``(B, h, w, c)`` arrays, one per index, the forward pass stopping at the
        last one."""
        self._check_input(x)
        idx = self.check_layers(layers)
        feats = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in idx:
                feats.append(x)
            if i == idx[-1]:
                break
        return feats


def patchgan_output_size(size: int, n_layers: int = 3, antialias: bool = False) -> int:
    """Side of a :class:`PatchDiscriminator`'s score map for an input side ``size``
    (30 for 256 with ``n_layers=3``); below 1 the input is too small."""
    conv4 = lambda n, s: (n + 2 - 4) // s + 1  # noqa: E731 - kernel 4, padding 1
    for _ in range(n_layers):
        size = conv4(size, 1) if antialias else conv4(size, 2)
        if antialias:
            size = (size + 2 - 3) // 2 + 1 if size > 1 else size
    return conv4(conv4(size, 1), 1)


class PatchDiscriminator(nnx.Module):
    """PatchGAN discriminator (``n_layers=3``: the 70x70 PatchGAN).

    ``conv4(in -> ndf) LReLU``, then for ``n = 1 .. n_layers - 1``
    ``conv4(ndf min(2^(n-1), 8) -> ndf min(2^n, 8)) IN LReLU`` (stride 2), then
    ``conv4 (stride 1) IN LReLU`` to ``ndf min(2^n_layers, 8)`` and a stride-1
    ``conv4`` to one channel; padding 1, LeakyReLU slope 0.2, no sigmoid. With
    ``antialias=True`` (CUT) each stride-2 conv is a stride-1 conv followed (after
    its norm and activation) by :func:`blur_downsample`.

    Args:
        in_channels: image channels.
        ndf: width of the first layer (64).
        n_layers: stride-2 stages (3).
        antialias: CUT's blurred downsampling.
        init, init_gain: as :class:`ResnetGenerator` (``"normal"``, 0.02).
        rngs: ``nnx.Rngs``.

    Call: ``(B, H, W, in_channels)`` -> ``(B, h, w, 1)`` scores (``h = 30`` for
    ``H = 256`` without anti-aliasing).
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        ndf: int = 64,
        n_layers: int = 3,
        antialias: bool = False,
        init: str = "normal",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        in_channels = _check_int("in_channels", in_channels, 1)
        ndf = _check_int("ndf", ndf, 1)
        n_layers = _check_int("n_layers", n_layers, 1, 6)
        kw = dict(init=init, init_gain=init_gain, rngs=rngs)
        stride = 1 if antialias else 2
        layers: list = [GanConv(in_channels, ndf, 4, stride, padding=1, **kw)]
        layers += [_Op("leakyrelu")] + ([_Op("down")] if antialias else [])
        prev = ndf
        for n in range(1, n_layers):
            c = ndf * min(2**n, 8)
            layers += [GanConv(prev, c, 4, stride, padding=1, **kw), InstanceNorm(c)]
            layers += [_Op("leakyrelu")] + ([_Op("down")] if antialias else [])
            prev = c
        c = ndf * min(2**n_layers, 8)
        layers += [GanConv(prev, c, 4, 1, padding=1, **kw), InstanceNorm(c)]
        layers += [_Op("leakyrelu"), GanConv(c, 1, 4, 1, padding=1, **kw)]
        self.layers = nnx.List(layers)
        self.in_channels = in_channels
        self.n_layers, self.antialias = n_layers, bool(antialias)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"x must be (B, H, W, {self.in_channels}); got shape {x.shape}"
            )
        out = [patchgan_output_size(n, self.n_layers, self.antialias)
               for n in x.shape[1:3]]  # fmt: skip
        if min(out) < 1:
            raise ValueError(
                f"images of {x.shape[1:3]} pixels are too small for a PatchGAN with "
                f"n_layers={self.n_layers}: use fewer layers or larger images"
            )
        for layer in self.layers:
            x = layer(x)
        return x
