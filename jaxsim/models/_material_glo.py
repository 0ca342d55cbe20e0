"""The material generator of Generative Latent Optimisation (GLO).

:class:`MaterialGLO` decodes a latent code into a coarse 3D material map, as the
material generator ``G_theta_M`` of seed paper 004 (a ``16^3`` map from a latent
vector): latent -> linear -> a ``2^3`` grid of features -> (nearest x2 upsampling,
3x3x3 convolution, leaky ReLU) per level -> 3x3x3 convolution to the channels ->
``max_log * tanh``. The bound keeps every log-modulation inside
``[-max_log, max_log]`` per property, so a map can be chosen that never takes a
tissue out of its valid range (:func:`jaxsim.mr.check_material_bounds`). The
output is channel-first, ``(B, C, g, g, g)``, as :mod:`jaxsim.mr` takes material
maps; channel ``c`` modulates property ``c % 3`` (PD, T1, T2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._layers import Conv

__all__ = ["MaterialGLO", "DEFAULT_MAX_LOG"]

#: Bounds of the PD, T1 and T2 log-modulations: PD x [0.67, 1.49], T1 and T2
#: x [0.61, 1.65]; valid for the literature tissues at 1.5 and 3 T (blood PD
#: 0.95 stays below 1.5, and T2 stays below T1 for every tissue).
DEFAULT_MAX_LOG = (0.4, 0.5, 0.5)
_BASE = 2  # side of the first feature grid
_SLOPE = 0.2


def _check_int(name, value, low):
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


class MaterialGLO(nnx.Module):
    """Latent code -> bounded 3D material map.

    Args:
        latent_dim: length of the latent code (>= 1).
        grid: side ``g`` of the output map, a power of two >= 2.
        channels: output channels, a multiple of 3 (``(group, property)``
            pairs; 9 for :mod:`jaxsim.mr`'s three tissue groups).
        max_log: bound on the log-modulations, one per property (PD, T1, T2)
            or a scalar; each > 0.
        width: features of the first grid (halved per level, at least 8).
        rngs: ``nnx.Rngs`` with a ``params`` (or default) stream.

    Call: ``latents (B, latent_dim)`` -> ``(B, channels, g, g, g)`` float32
    with ``|out[:, c]| < max_log[c % 3]``.

    Example:
        >>> glo = MaterialGLO(latent_dim=16, grid=16, rngs=nnx.Rngs(0))
        >>> glo(jnp.zeros((2, 16))).shape
        (2, 9, 16, 16, 16)
    """

    def __init__(
        self,
        latent_dim: int = 16,
        grid: int = 16,
        channels: int = 9,
        max_log=DEFAULT_MAX_LOG,
        width: int = 32,
        *,
        rngs: nnx.Rngs,
    ):
        self.latent_dim = _check_int("latent_dim", latent_dim, 1)
        self.grid = _check_int("grid", grid, 2)
        if self.grid & (self.grid - 1):
            raise ValueError(f"grid must be a power of two >= 2; got {grid}")
        self.channels = _check_int("channels", channels, 3)
        if self.channels % 3:
            raise ValueError(f"channels must be a multiple of 3; got {channels}")
        self.width = _check_int("width", width, 1)
        bound = np.broadcast_to(np.asarray(max_log, np.float64), (3,))
        if bound.shape != (3,) or not np.all(np.isfinite(bound)) or np.any(bound <= 0):
            raise ValueError(
                f"max_log must be > 0 (one or three values); got {max_log}"
            )
        self.max_log = tuple(float(b) for b in bound)
        levels = int(math.log2(self.grid // _BASE))
        widths = [max(8, self.width // 2**i) for i in range(levels + 1)]
        self.linear = nnx.Linear(self.latent_dim, _BASE**3 * widths[0], rngs=rngs)
        self.ups = nnx.List(
            [Conv(3, widths[i], widths[i + 1], 3, rngs=rngs) for i in range(levels)]
        )
        self.head = Conv(3, widths[-1], self.channels, 3, rngs=rngs)
        # a small head: the first maps are near zero (near the plain phantom)
        self.head.kernel[...] = self.head.kernel[...] * 0.1
        self.head.bias[...] = jnp.zeros_like(self.head.bias[...])
        self._widths = tuple(widths)

    def __call__(self, latents: jax.Array) -> jax.Array:
        latents = jnp.asarray(latents)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(
                f"latents must have shape (B, {self.latent_dim}); got {latents.shape}"
            )
        b = latents.shape[0]
        # the parameters' precision (float32 also under x64)
        latents = latents.astype(self.linear.kernel[...].dtype)
        x = self.linear(latents).reshape(b, _BASE, _BASE, _BASE, self._widths[0])
        x = nnx.leaky_relu(x, _SLOPE)
        for conv in self.ups:
            x = jnp.repeat(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), 2, axis=3)
            x = nnx.leaky_relu(conv(x), _SLOPE)
        x = self.head(x)
        scale = jnp.asarray(np.tile(self.max_log, self.channels // 3), x.dtype)
        return jnp.moveaxis(scale * jnp.tanh(x), -1, 1)
