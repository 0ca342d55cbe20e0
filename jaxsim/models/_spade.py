"""SPADE / GauGAN (Park et al. 2019): semantic image synthesis networks.

The layouts follow NVlabs/SPADE layer for layer, so parameter counts equal the
reference's for the same configuration:

* :class:`SpectralConv` -- a 2D convolution with optional spectral
  normalisation (Miyato et al. 2018), ``torch.nn.utils.spectral_norm`` with one
  power iteration per training-mode call.
* :class:`SPADE` -- spatially-adaptive denormalisation: a parameter-free
  instance norm of ``x`` modulated by ``gamma`` and ``beta`` maps predicted from
  the condition map (resized nearest to ``x``).
* :class:`SPADEResBlock` -- the SPADE residual block.
* :class:`SPADEGenerator` -- GauGAN's generator without the VAE encoder: the
  condition map downsampled to the lowest resolution, a conv3, then
  head / middle / up SPADE blocks with nearest upsampling, LeakyReLU, conv3, tanh.
* :class:`MultiscaleDiscriminator` -- ``num_d`` PatchGANs (4x4 convs, padding 2,
  spectral norm and instance norm), the ``i``-th on the input average-pooled
  ``i`` times; every intermediate feature is returned for feature matching.

Arrays are channel-last ``(B, H, W, C)``. Where the reference's normalisation
is synchronized batch norm (its generator default ``spectralspadesyncbatch3x3``)
this module uses instance norm (the reference's ``spectralspadeinstance3x3``):
neither has parameters, and instance norm is the same in training and in use.

Initialisation: every convolution is drawn as the reference's
``init_weights(init_type="xavier", gain=0.02)`` draws it (biases zero). A
spectrally normalised convolution divides its weight by its largest singular
value, so the scale it was drawn with does not matter.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from ._conv import conv
from ._layers import InstanceNorm, _normal
from ._translation import _check_int, gan_weight

__all__ = [
    "SPADE",
    "MultiscaleDiscriminator",
    "SPADEGenerator",
    "SPADEResBlock",
    "SpectralConv",
    "SpectralVector",
    "UPSAMPLING_LAYERS",
    "avg_pool_3x3",
    "resize_nearest",
]

#: GauGAN's ``--num_upsampling_layers``: number of 2x upsamplings.
UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}


class SpectralVector(nnx.Variable):
    """The power iteration's left singular vector ``u`` of a spectrally
    normalised weight: state, not a parameter (never differentiated, updated by
    the forward pass in training mode only)."""


def _l2_normalize(v, eps: float = 1e-12):
    return v / jnp.maximum(jnp.linalg.norm(v), eps)


def resize_nearest(x: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """PyTorch's ``F.interpolate(mode="nearest")``: output pixel ``i`` reads input
    pixel ``floor(i * n_in / n_out)`` along each spatial axis.

    Args:
        x: ``(B, h, w, C)``.
        shape: ``(H, W)`` output size.

    Returns:
        ``(B, H, W, C)``, same dtype.
    """
    h, w = (int(n) for n in shape)
    if x.shape[1:3] == (h, w):
        return x
    rows = (jnp.arange(h) * x.shape[1]) // h
    cols = (jnp.arange(w) * x.shape[2]) // w
    return x[:, rows][:, :, cols]


def avg_pool_3x3(x: jax.Array) -> jax.Array:
    """``F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)``: the
    multiscale discriminator's downsampling.

    Args:
        x: ``(B, H, W, C)``.

    Returns:
        ``(B, (H - 1) // 2 + 1, (W - 1) // 2 + 1, C)``; each output is the mean
        of the input pixels its window covers (padding not counted).
    """
    window, strides = (1, 3, 3, 1), (1, 2, 2, 1)
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = lax.reduce_window(x, 0.0, lax.add, window, strides, pad)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = lax.reduce_window(ones, 0.0, lax.add, window, strides, pad)
    return total / count


class SpectralConv(nnx.Module):
    """2D convolution ``(B, H, W, Cin) -> (B, H', W', Cout)`` with zero padding,
    optionally spectrally normalised.

    With ``spectral=True`` the kernel is used divided by ``sigma``, an estimate
    of the largest singular value of the kernel reshaped to a
    ``(Cout, k k Cin)`` matrix ``W`` (PyTorch's ``spectral_norm``, one power
    iteration per call). The state is the vector ``u`` (``(Cout,)``, a
    :class:`SpectralVector`, drawn from ``N(0, 1)`` and normalised). Each call
    computes ``v = W^T u / |W^T u|``, ``u' = W v / |W v|`` and
    ``sigma = u'^T W v``; in training mode ``u'`` and ``v`` are taken without
    gradient and ``sigma`` is differentiated through ``W`` only, as the
    reference does, while in evaluation mode the whole estimate is differentiated
    (the exact derivative of the function the network then computes). In training mode
    (``use_running_average=False``, the default; ``model.train()``) the call
    stores ``u'`` as the new ``u``, so repeated calls run the power iteration and
    ``sigma`` converges to the largest singular value; in evaluation mode
    (``model.eval()``) ``u`` is left as it is and a call is a pure function of
    the weights and ``u``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: square kernel side.
        strides: stride.
        padding: symmetric zero padding (PyTorch's ``padding``).
        use_bias: learned bias (zero at start).
        spectral: spectral normalisation.
        init, init_gain: ``"xavier"`` or ``"normal"`` and the gain (0.02).
        rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        strides: int = 1,
        *,
        padding: int = 0,
        use_bias: bool = True,
        spectral: bool = False,
        init: str = "xavier",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        k = int(kernel_size)
        self.strides, self.padding = int(strides), int(padding)
        fan_in, fan_out = in_channels * k * k, out_channels * k * k
        shape = (k, k, in_channels, out_channels)
        self.kernel = nnx.Param(
            gan_weight(init, init_gain, rngs.params(), shape, fan_in, fan_out)
        )
        self.bias = nnx.Param(jnp.zeros((out_channels,))) if use_bias else None
        self.spectral = bool(spectral)
        self.use_running_average = False
        if self.spectral:
            u = _normal(rngs.params(), (out_channels,), 1.0)
            self.u = SpectralVector(_l2_normalize(u))
        else:
            self.u = None

    def set_view(self, use_running_average: bool | None = None):
        """For ``nnx.view``: ``True`` keeps ``u`` fixed (evaluation)."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def sigma(self) -> jax.Array:
        """The current estimate of the kernel's largest singular value (scalar);
        in training mode this call advances the power iteration."""
        kernel = self.kernel[...]
        w = kernel.reshape(-1, kernel.shape[-1]).T  # (Cout, k k Cin)
        u = lax.stop_gradient(self.u[...])
        # training: u' and v without gradient (the reference's update); evaluation:
        # a fixed function of the weights, differentiated exactly (through v, u')
        wd = w if self.use_running_average else lax.stop_gradient(w)
        v = _l2_normalize(wd.T @ u)
        u_new = _l2_normalize(wd @ v)
        if not self.use_running_average:
            self.u[...] = u_new
        return jnp.dot(u_new, w @ v)

    def weight(self) -> jax.Array:
        """The kernel ``(k, k, Cin, Cout)`` as used (divided by ``sigma`` when
        spectrally normalised)."""
        if not self.spectral:
            return self.kernel[...]
        return self.kernel[...] / self.sigma()

    def __call__(self, x: jax.Array) -> jax.Array:
        s, p = (self.strides,) * 2, (self.padding,) * 2
        y = conv(x, self.weight().astype(x.dtype), s, p)
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class SPADE(nnx.Module):
    """Spatially-adaptive denormalisation.

    ``out = IN(x) * (1 + gamma(c)) + beta(c)`` with ``IN`` the parameter-free
    instance norm (epsilon 1e-5), ``c`` the condition resized to ``x``'s size by
    :func:`resize_nearest`, ``a = ReLU(conv3(c))`` with ``hidden`` channels and
    ``gamma = conv3(a)``, ``beta = conv3(a)`` (every conv with bias, padding 1,
    no spectral norm, as in the reference).

    Args:
        channels: channels of ``x`` (the reference's ``norm_nc``).
        condition_channels: channels of the condition (``label_nc``).
        hidden: width of the shared conv (128 in the reference).
        kernel_size: odd kernel of the three convs (3).
        init, init_gain: as :class:`SpectralConv`.
        rngs: ``nnx.Rngs``.

    Call: ``x (B, H, W, channels)``, ``condition (B, h, w, condition_channels)``
    -> ``(B, H, W, channels)``.
    """

    def __init__(
        self,
        channels: int,
        condition_channels: int,
        *,
        hidden: int = 128,
        kernel_size: int = 3,
        init: str = "xavier",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        channels = _check_int("channels", channels, 1)
        condition_channels = _check_int("condition_channels", condition_channels, 1)
        hidden = _check_int("hidden", hidden, 1)
        k = _check_int("kernel_size", kernel_size, 1)
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd; got {k}")
        kw = dict(padding=k // 2, init=init, init_gain=init_gain, rngs=rngs)
        self.norm = InstanceNorm(channels)
        self.shared = SpectralConv(condition_channels, hidden, k, **kw)
        self.gamma = SpectralConv(hidden, channels, k, **kw)
        self.beta = SpectralConv(hidden, channels, k, **kw)
        self.channels, self.condition_channels = channels, condition_channels

    def __call__(self, x: jax.Array, condition: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"x must be (B, H, W, {self.channels}); got {x.shape}")
        if condition.ndim != 4 or condition.shape[-1] != self.condition_channels:
            raise ValueError(
                f"condition must be (B, h, w, {self.condition_channels}); got "
                f"{condition.shape}"
            )
        normalized = self.norm(x)
        c = resize_nearest(condition, x.shape[1:3]).astype(x.dtype)
        a = jax.nn.relu(self.shared(c))
        # gamma and beta in one convolution (their kernels side by side): the
        # same sums, half the convolutions to compile and run
        kernel = jnp.concatenate([self.gamma.kernel[...], self.beta.kernel[...]], -1)
        bias = jnp.concatenate([self.gamma.bias[...], self.beta.bias[...]])
        p = self.gamma.padding
        gb = conv(a, kernel.astype(a.dtype), (1, 1), (p, p)) + bias
        gamma, beta = gb[..., : self.channels], gb[..., self.channels :]
        return normalized * (1.0 + gamma) + beta


def _lrelu(x):
    return jax.nn.leaky_relu(x, 0.2)


class SPADEResBlock(nnx.Module):
    """SPADE residual block (the reference's ``SPADEResnetBlock``).

    ``dx = conv3(LReLU(SPADE(conv3(LReLU(SPADE(x, c))), c)))`` through
    ``fmiddle = min(fin, fout)`` channels, ``out = shortcut + dx`` where the
    shortcut is ``x`` when ``fin == fout`` and otherwise a learned 1x1 conv
    without bias of ``SPADE(x, c)`` (its own SPADE). LeakyReLU slope 0.2; the
    3x3 and 1x1 convs are spectrally normalised when ``spectral``.

    Args:
        fin, fout: input and output channels.
        condition_channels: channels of the condition map.
        hidden: SPADE hidden width (128).
        spectral: spectral norm on the block's convs (the reference's default).
        init, init_gain: as :class:`SpectralConv`.
        rngs: ``nnx.Rngs``.

    Call: ``x (B, H, W, fin)``, ``condition (B, h, w, condition_channels)`` ->
    ``(B, H, W, fout)``.
    """

    def __init__(
        self,
        fin: int,
        fout: int,
        condition_channels: int,
        *,
        hidden: int = 128,
        spectral: bool = True,
        init: str = "xavier",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        fin, fout = _check_int("fin", fin, 1), _check_int("fout", fout, 1)
        fmiddle = min(fin, fout)
        kw = dict(spectral=spectral, init=init, init_gain=init_gain, rngs=rngs)
        sp = dict(hidden=hidden, init=init, init_gain=init_gain, rngs=rngs)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralConv(fin, fmiddle, 3, padding=1, **kw)
        self.conv_1 = SpectralConv(fmiddle, fout, 3, padding=1, **kw)
        learned = self.learned_shortcut
        self.conv_s = (
            SpectralConv(fin, fout, 1, use_bias=False, **kw) if learned else None
        )
        self.norm_0 = SPADE(fin, condition_channels, **sp)
        self.norm_1 = SPADE(fmiddle, condition_channels, **sp)
        self.norm_s = SPADE(fin, condition_channels, **sp) if learned else None

    def __call__(self, x: jax.Array, condition: jax.Array) -> jax.Array:
        if self.conv_s is not None:
            x_s = self.conv_s(self.norm_s(x, condition))
        else:
            x_s = x
        dx = self.conv_0(_lrelu(self.norm_0(x, condition)))
        dx = self.conv_1(_lrelu(self.norm_1(dx, condition)))
        return x_s + dx


def _upsample(x):
    """``nn.Upsample(scale_factor=2)`` (nearest): each pixel repeated 2x2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class SPADEGenerator(nnx.Module):
    """GauGAN's generator without the VAE (the reference's ``SPADEGenerator``
    with ``use_vae=False``).

    With ``n = UPSAMPLING_LAYERS[num_upsampling_layers]`` (5 for ``"normal"``)
    the condition is resized (nearest) to ``(H / 2^n, W / 2^n)`` and mapped by a
    plain conv3 to ``16 ngf`` channels; then::

        head_0 (16 ngf) up  G_middle_0 (16 ngf) [up if more/most]
        G_middle_1 (16 ngf) up  up_0 (16 -> 8 ngf) up  up_1 (8 -> 4 ngf) up
        up_2 (4 -> 2 ngf) up  up_3 (2 -> 1 ngf) [up, up_4 (ngf -> ngf // 2) if most]
        LeakyReLU(0.2)  conv3 (-> out_channels)  tanh

    where each block is a :class:`SPADEResBlock` seeing the full-resolution
    condition and ``up`` is 2x nearest upsampling. The first and last convs are
    plain (with bias, no spectral norm), as in the reference.

    Args:
        condition_channels: channels of the condition map (the reference's
            ``semantic_nc``; for the enhancer, 4 one-hot ACDC classes plus the
            physics image = 5).
        out_channels: image channels (the reference hard-codes 3).
        ngf: base width (64).
        num_upsampling_layers: ``"normal"``, ``"more"`` or ``"most"``.
        hidden: SPADE hidden width (128).
        spectral: spectral norm in the residual blocks (the reference's
            ``norm_G=spectralspade...``).
        init, init_gain: ``"xavier"``, 0.02 (the reference's).
        rngs: ``nnx.Rngs``.

    Call: ``condition (B, H, W, condition_channels)`` float, ``H`` and ``W``
    multiples of ``2^n`` -> ``(B, H, W, out_channels)`` in ``(-1, 1)``.
    """

    def __init__(
        self,
        condition_channels: int,
        out_channels: int = 1,
        *,
        ngf: int = 64,
        num_upsampling_layers: str = "normal",
        hidden: int = 128,
        spectral: bool = True,
        init: str = "xavier",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        cc = _check_int("condition_channels", condition_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        nf = _check_int("ngf", ngf, 1)
        if num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise ValueError(
                f"num_upsampling_layers must be one of {tuple(UPSAMPLING_LAYERS)}; "
                f"got {num_upsampling_layers!r}"
            )
        if num_upsampling_layers == "most" and nf < 2:
            raise ValueError(f"ngf must be >= 2 with 'most' upsamplings; got {nf}")
        self.mode = num_upsampling_layers
        self.n_up = UPSAMPLING_LAYERS[num_upsampling_layers]
        ini = dict(init=init, init_gain=init_gain, rngs=rngs)
        blk = dict(hidden=hidden, spectral=spectral, **ini)
        self.fc = SpectralConv(cc, 16 * nf, 3, padding=1, **ini)
        self.head_0 = SPADEResBlock(16 * nf, 16 * nf, cc, **blk)
        self.G_middle_0 = SPADEResBlock(16 * nf, 16 * nf, cc, **blk)
        self.G_middle_1 = SPADEResBlock(16 * nf, 16 * nf, cc, **blk)
        self.up_0 = SPADEResBlock(16 * nf, 8 * nf, cc, **blk)
        self.up_1 = SPADEResBlock(8 * nf, 4 * nf, cc, **blk)
        self.up_2 = SPADEResBlock(4 * nf, 2 * nf, cc, **blk)
        self.up_3 = SPADEResBlock(2 * nf, nf, cc, **blk)
        most = self.mode == "most"
        self.up_4 = SPADEResBlock(nf, nf // 2, cc, **blk) if most else None
        final = nf // 2 if most else nf
        self.conv_img = SpectralConv(final, out_channels, 3, padding=1, **ini)
        self.condition_channels, self.out_channels = cc, out_channels

    @property
    def factor(self) -> int:
        """``2^n``: image sides must be multiples of it."""
        return 2**self.n_up

    def __call__(self, condition: jax.Array) -> jax.Array:
        c = condition
        if c.ndim != 4 or c.shape[-1] != self.condition_channels:
            raise ValueError(
                f"condition must be (B, H, W, {self.condition_channels}); got {c.shape}"
            )
        f = self.factor
        if c.shape[1] % f or c.shape[2] % f:
            raise ValueError(
                f"condition height and width must be multiples of 2^{self.n_up} = "
                f"{f} ({self.mode!r} upsamplings); got {c.shape[1:3]}"
            )
        x = self.fc(resize_nearest(c, (c.shape[1] // f, c.shape[2] // f)))
        x = _upsample(self.head_0(x, c))
        x = self.G_middle_0(x, c)
        if self.mode in ("more", "most"):
            x = _upsample(x)
        x = _upsample(self.G_middle_1(x, c))
        x = _upsample(self.up_0(x, c))
        x = _upsample(self.up_1(x, c))
        x = _upsample(self.up_2(x, c))
        x = self.up_3(x, c)
        if self.up_4 is not None:
            x = self.up_4(_upsample(x), c)
        return jnp.tanh(self.conv_img(_lrelu(x)))


class _NLayerD(nnx.Module):
    """One PatchGAN of the multiscale discriminator (``NLayerDiscriminator``)."""

    def __init__(self, in_channels, *, ndf, n_layers, spectral, init, gain, rngs):
        ini = dict(init=init, init_gain=gain, rngs=rngs)
        # kernel 4, padding ceil(3 / 2) = 2, as the reference
        convs = [SpectralConv(in_channels, ndf, 4, 2, padding=2, **ini)]
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            # a conv followed by instance norm has no bias (it would cancel)
            convs.append(
                SpectralConv(prev, nf, 4, stride, padding=2, use_bias=False,
                             spectral=spectral, **ini)
            )  # fmt: skip
        convs.append(SpectralConv(nf, 1, 4, 1, padding=2, **ini))
        self.convs = nnx.List(convs)
        self.norm = InstanceNorm(1)  # parameter-free; the channel count is unused

    def __call__(self, x):
        feats = []
        last = len(self.convs) - 1
        for i, layer in enumerate(self.convs):
            x = layer(x)
            if 0 < i < last:
                x = self.norm(x)
            if i < last:
                x = _lrelu(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nnx.Module):
    """GauGAN's multiscale PatchGAN discriminator.

    ``num_d`` discriminators; discriminator ``i`` sees the input average-pooled
    ``i`` times by :func:`avg_pool_3x3`. Each is ``conv4 s2 (in -> ndf) LReLU``,
    then for ``n = 1 .. n_layers - 1`` ``conv4 (-> min(2 nf, 512)) IN LReLU``
    (stride 2, the last one stride 1; spectral norm, no bias), then ``conv4 s1
    (-> 1)``; kernel 4, padding 2, LeakyReLU 0.2, instance norm without
    parameters (the reference's ``norm_D=spectralinstance``).

    Args:
        in_channels: channels of the input, ``concat(condition, image)``.
        ndf: width of the first layer (64).
        n_layers: the reference's ``n_layers_D`` (4).
        num_d: discriminators (2).
        spectral: spectral norm on the normalised convs.
        init, init_gain: as :class:`SpectralConv`.
        rngs: ``nnx.Rngs``.

    With padding 2 every layer keeps at least one pixel, so any input size
    works (a side ``n`` becomes ``n // stride + 1``).

    Call: ``(B, H, W, in_channels)`` -> a list of ``num_d`` lists of
    ``n_layers + 1`` channel-last arrays: the intermediate features of each
    discriminator (after their activations) and, last, its ``(B, h, w, 1)``
    score map.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        ndf: int = 64,
        n_layers: int = 4,
        num_d: int = 2,
        spectral: bool = True,
        init: str = "xavier",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        in_channels = _check_int("in_channels", in_channels, 1)
        ndf = _check_int("ndf", ndf, 1)
        self.n_layers = _check_int("n_layers", n_layers, 1, 8)
        self.num_d = _check_int("num_d", num_d, 1, 6)
        kw = dict(ndf=ndf, n_layers=self.n_layers, spectral=spectral, init=init,
                  gain=init_gain, rngs=rngs)  # fmt: skip
        self.discriminators = nnx.List(
            [_NLayerD(in_channels, **kw) for _ in range(self.num_d)]
        )
        self.in_channels = in_channels

    def __call__(self, x: jax.Array) -> list[list[jax.Array]]:
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"x must be (B, H, W, {self.in_channels}); got shape {x.shape}"
            )
        out = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = avg_pool_3x3(x)
            out.append(d(x))
        return out
