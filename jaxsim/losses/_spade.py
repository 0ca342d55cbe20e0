"""Losses of GauGAN (SPADE): the hinge GAN loss and discriminator feature matching.

Pure JAX (``jit``, ``grad`` work); the reference is NVlabs/SPADE's
``GANLoss(gan_mode="hinge")`` and the ``GAN_Feat`` term of its
``Pix2PixModel``. Both take either one score map or the output of a
multiscale discriminator: a list (one entry per discriminator) of lists of
features whose last entry is the score map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["feature_matching_loss", "hinge_gan_loss"]


def _score_maps(prediction) -> list:
    if isinstance(prediction, (list, tuple)):
        if not prediction:
            raise ValueError("prediction must not be an empty list")
        return [p[-1] if isinstance(p, (list, tuple)) else p for p in prediction]
    return [prediction]


def hinge_gan_loss(
    prediction, target_is_real: bool, *, for_discriminator: bool = True
) -> jax.Array:
    """Hinge GAN loss (Lim and Ye 2017; GauGAN's ``gan_mode="hinge"``).

    For the discriminator: ``mean(relu(1 - D(x)))`` on real images and
    ``mean(relu(1 + D(x)))`` on generated ones; for the generator:
    ``-mean(D(G(c)))``. A multiscale prediction contributes the loss of each
    discriminator's score map (the last entry of its feature list), averaged
    over the discriminators.

    Args:
        prediction: a score map of any shape, e.g. ``(B, h, w, 1)``, or a
            :class:`~jaxsim.models.MultiscaleDiscriminator` output (list of
            lists of features).
        target_is_real: the label the scores are pushed to (must be ``True``
            for the generator).
        for_discriminator: the discriminator's two-sided hinge, or the
            generator's linear loss.

    Returns:
        Scalar float.

    Raises:
        ValueError: ``for_discriminator=False`` with ``target_is_real=False``,
            or an empty list.
    """
    if not for_discriminator and not target_is_real:
        raise ValueError(
            "the generator's hinge loss pushes its images towards real: pass "
            "target_is_real=True"
        )
    total = 0.0
    maps = _score_maps(prediction)
    for p in maps:
        if not for_discriminator:
            total = total - jnp.mean(p)
        elif target_is_real:
            total = total + jnp.mean(jax.nn.relu(1.0 - p))
        else:
            total = total + jnp.mean(jax.nn.relu(1.0 + p))
    return total / len(maps)


def feature_matching_loss(fake_features, real_features) -> jax.Array:
    """GauGAN's discriminator feature matching (``GAN_Feat`` without its weight).

    ``sum_i sum_j mean|F_ij(fake) - F_ij(real)| / num_d`` over the
    discriminators ``i`` and their intermediate features ``j`` (every entry but
    the last, the score map). The real features are constants
    (``stop_gradient``), as the reference detaches them.

    Args:
        fake_features, real_features: multiscale discriminator outputs for the
            generated and the real image (lists of ``num_d`` lists of arrays of
            equal shapes).

    Returns:
        Scalar float (GauGAN multiplies it by ``lambda_feat = 10``).

    Raises:
        ValueError: the two outputs differ in structure or shapes, or hold no
            intermediate features.
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError(
            "fake_features and real_features must list the same (non-zero) number "
            f"of discriminators; got {len(fake_features)} and {len(real_features)}"
        )
    total, n_terms = 0.0, 0
    for fake, real in zip(fake_features, real_features, strict=True):
        if len(fake) != len(real):
            raise ValueError(
                "each discriminator must give as many features for fake as for real "
                f"images; got {len(fake)} and {len(real)}"
            )
        for f, r in zip(fake[:-1], real[:-1], strict=True):
            if f.shape != r.shape:
                raise ValueError(f"feature shapes differ: {f.shape} and {r.shape}")
            total = total + jnp.mean(jnp.abs(f - jax.lax.stop_gradient(r)))
            n_terms += 1
    if n_terms == 0:
        raise ValueError("the discriminators returned no intermediate features")
    return total / len(fake_features)
