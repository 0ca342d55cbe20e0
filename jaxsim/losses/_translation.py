"""Losses of unpaired image translation: LSGAN, L1 (cycle, identity), PatchNCE.

Pure JAX (``jit``, ``grad`` work); the reference implementations are CycleGAN's
``GANLoss(gan_mode="lsgan")`` and CUT's ``PatchNCELoss``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["l1_loss", "lsgan_loss", "patch_nce_loss", "NCE_NEGATIVES"]

#: Where PatchNCE draws its negatives from.
NCE_NEGATIVES = ("image", "batch")


def lsgan_loss(prediction: jax.Array, target_is_real: bool) -> jax.Array:
    """Least-squares GAN loss: ``mean((D(x) - t)^2)``, ``t = 1`` for real, 0 for fake.

    Args:
        prediction: discriminator scores, any shape (e.g. a PatchGAN map
            ``(B, h, w, 1)``), float.
        target_is_real: the label the scores are pushed to.

    Returns:
        Scalar float, the mean over every score.
    """
    target = 1.0 if target_is_real else 0.0
    return jnp.mean(jnp.square(prediction - target))


def l1_loss(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference (the cycle-consistency and identity loss).

    Raises:
        ValueError: ``a`` and ``b`` differ in shape.
    """
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(f"a and b must have one shape; got {a.shape} and {b.shape}")
    return jnp.mean(jnp.abs(a - b))


def patch_nce_loss(
    query: jax.Array,
    keys: jax.Array,
    *,
    temperature: float = 0.07,
    negatives: str = "image",
) -> jax.Array:
    """PatchNCE (InfoNCE over patches of the same image), per patch.

    For image ``b`` and patch ``i`` the logits are ``q_i . k_i`` (the positive)
    followed by ``q_i . k_j`` for every patch ``j`` of the same image, with
    ``j = i`` set to -10 (CUT's masked diagonal), all divided by ``temperature``;
    the loss is the cross-entropy with the positive as the class. The keys are
    not differentiated (``stop_gradient``), as in the reference. With
    ``negatives="batch"`` the negatives of a patch are every other patch of every
    image in the batch (CUT's ``--nce_includes_all_negatives_from_minibatch``,
    its single-image-translation setting); with one image per batch both are the
    same.

    Args:
        query: ``(B, P, D)`` projected features of the translated image
            (normally unit-norm rows).
        keys: ``(B, P, D)`` projected features of the source at the same
            positions (the contrastive "keys"; not a PRNG key).
        temperature: ``tau > 0`` (0.07 in CUT).
        negatives: ``"image"`` (same-image negatives, CUT's default) or
            ``"batch"`` (every patch of the batch).

    Returns:
        ``(B, P)`` float losses (CUT averages them, and over layers).

    Raises:
        ValueError: mismatched shapes, ``temperature <= 0`` or an unknown
            ``negatives``.
    """
    if query.ndim != 3 or query.shape != keys.shape:
        raise ValueError(
            f"query and keys must both be (B, P, D); got {query.shape} and {keys.shape}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if negatives not in NCE_NEGATIVES:
        raise ValueError(f"negatives must be one of {NCE_NEGATIVES}; got {negatives!r}")
    if negatives == "batch":
        b, p, d = query.shape
        loss = patch_nce_loss(
            query.reshape(1, b * p, d),
            keys.reshape(1, b * p, d),
            temperature=temperature,
        )
        return loss.reshape(b, p)
    keys = jax.lax.stop_gradient(keys)
    positive = jnp.sum(query * keys, axis=-1, keepdims=True)  # (B, P, 1)
    negative = jnp.einsum("bpd,bqd->bpq", query, keys)
    eye = jnp.eye(query.shape[1], dtype=bool)
    negative = jnp.where(eye, -10.0, negative)
    logits = jnp.concatenate([positive, negative], axis=-1) / temperature
    return -jax.nn.log_softmax(logits, axis=-1)[..., 0]
