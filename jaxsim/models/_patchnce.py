"""CUT's PatchNCE projection head and CycleGAN's image pool.

* :class:`PatchSampleMLP` -- CUT's ``PatchSampleF`` (``--netF mlp_sample``): from
  each feature map it takes the same random set of spatial positions for every
  image of the batch, passes the feature vectors through a per-layer two-layer MLP
  (``Linear(C, nc)``-ReLU-``Linear(nc, nc)``, ``nc = 256``) and L2-normalises
  them. The MLPs are built eagerly from the feature channels (the reference builds
  them at the first forward pass; the layers are the same).
* :class:`ImagePool` -- the history buffer of generated images that CycleGAN's
  discriminators see (Shrivastava et al. 2017), as pure functions of an explicit
  state so it runs inside ``jit`` and is checkpointed with the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ._translation import gan_weight

__all__ = ["ImagePool", "PatchSampleMLP", "l2_normalize"]


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-7) -> jax.Array:
    """``x / (||x||_2 + eps)`` along ``axis`` (CUT's ``Normalize(2)``)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / (norm + eps)


class _Linear(nnx.Module):
    def __init__(self, n_in: int, n_out: int, *, init, init_gain, rngs):
        self.kernel = nnx.Param(
            gan_weight(init, init_gain, rngs.params(), (n_in, n_out), n_in, n_out)
        )
        self.bias = nnx.Param(jnp.zeros((n_out,)))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


class PatchSampleMLP(nnx.Module):
    """Per-layer projection heads of PatchNCE.

    Args:
        channels: feature channels of each NCE layer (e.g.
            ``ResnetGenerator.feature_channels(nce_layers)``).
        nc: projection width (256 in CUT).
        init, init_gain: as the generator (``"xavier"``, 0.02 in CUT).
        rngs: ``nnx.Rngs``.

    Example:
        >>> head = PatchSampleMLP([1, 128, 256], rngs=nnx.Rngs(0))
        >>> out, ids = head(feats, key=key, num_patches=256)
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        nc: int = 256,
        init: str = "xavier",
        init_gain: float = 0.02,
        rngs: nnx.Rngs,
    ):
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be positive counts; got {channels}")
        if isinstance(nc, bool) or int(nc) != nc or nc < 1:
            raise ValueError(f"nc must be an integer >= 1; got {nc!r}")
        kw = dict(init=init, init_gain=init_gain, rngs=rngs)
        self.first = nnx.List([_Linear(c, nc, **kw) for c in channels])
        self.second = nnx.List([_Linear(nc, nc, **kw) for _ in channels])
        self.channels = tuple(channels)

    def __call__(
        self,
        feats: Sequence[jax.Array],
        *,
        num_patches: int = 256,
        key: jax.Array | None = None,
        patch_ids: Sequence[jax.Array] | None = None,
    ) -> tuple[list[jax.Array], list[jax.Array]]:
        """Sample and project patches.

        Args:
            feats: one ``(B, h, w, C_l)`` map per layer.
            num_patches: positions per layer (``min(num_patches, h w)`` are taken).
            key: PRNG key choosing new positions (a permutation per layer).
            patch_ids: positions chosen before (e.g. for the source image's
                features), one ``(P_l,)`` int array per layer; overrides ``key``.

        Returns:
            ``(projected, patch_ids)``: ``projected[l]`` is ``(B, P_l, nc)``, unit
            L2 norm along the last axis; ``patch_ids[l]`` the flat ``h * w``
            positions used.
        """
        if len(feats) != len(self.channels):
            raise ValueError(
                f"feats must hold {len(self.channels)} maps; got {len(feats)}"
            )
        if isinstance(num_patches, bool) or int(num_patches) < 1:
            raise ValueError(f"num_patches must be >= 1; got {num_patches!r}")
        if patch_ids is None and key is None:
            raise ValueError("give key (new positions) or patch_ids")
        out, ids = [], []
        for i, f in enumerate(feats):
            b, h, w, c = f.shape
            flat = f.reshape(b, h * w, c)
            if patch_ids is not None:
                pid = patch_ids[i]
            else:
                perm = jax.random.permutation(jax.random.fold_in(key, i), h * w)
                pid = perm[: min(int(num_patches), h * w)]
            x = flat[:, pid]
            x = self.second[i](jax.nn.relu(self.first[i](x)))
            out.append(l2_normalize(x))
            ids.append(pid)
        return out, ids


@dataclasses.dataclass(frozen=True)
class ImagePool:
    """A pool of up to ``size`` generated images (CycleGAN's ``ImagePool``).

    The state is ``{"images": (size, *image_shape), "count": int32}``. For each
    image of a queried batch, in order: while the pool is not full the image is
    stored and returned; once full, with probability 1/2 a uniformly chosen stored
    image is returned and replaced by the new one, else the new image is returned.
    ``size = 0`` returns every batch unchanged.
    """

    size: int = 50

    def __post_init__(self):
        if isinstance(self.size, bool) or int(self.size) != self.size or self.size < 0:
            raise ValueError(f"pool size must be an integer >= 0; got {self.size!r}")

    def init(self, image_shape: Sequence[int], dtype=jnp.float32) -> dict:
        """An empty pool for images of ``image_shape`` (e.g. ``(H, W, C)``)."""
        return {
            "images": jnp.zeros((self.size, *image_shape), dtype),
            "count": jnp.zeros((), jnp.int32),
        }

    def query(self, state: dict, images: jax.Array, *, key: jax.Array):
        """``(images to show the discriminator (B, ...), new state)``."""
        if self.size == 0:
            return images, state

        def one(carry, xs):
            pool, count = carry
            image, k = xs
            k_swap, k_idx = jax.random.split(k)
            full = count >= self.size
            swap = full & (jax.random.uniform(k_swap) > 0.5)
            idx = jax.random.randint(k_idx, (), 0, self.size)
            slot = jnp.where(full, idx, jnp.minimum(count, self.size - 1))
            old = pool[slot]
            store = jnp.logical_or(~full, swap)
            pool = pool.at[slot].set(jnp.where(store, image, old))
            out = jnp.where(swap, old, image)
            return (pool, jnp.minimum(count + 1, self.size)), out

        keys = jax.random.split(key, images.shape[0])
        (pool, count), out = jax.lax.scan(
            one, (state["images"], state["count"]), (images, keys)
        )
        return out, {"images": pool, "count": count}
