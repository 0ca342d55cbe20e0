"""Losses: differentiable distribution distances and segmentation losses (JAX).

Distribution distances (fitting simulated intensities to real ones):
:func:`wasserstein_distance`, :func:`soft_histogram`, :func:`quantile_pairs`.

Segmentation losses, all pure JAX (``jit``, ``vmap`` and ``grad`` work), take
logits with a class axis and integer or one-hot targets. The class axis is last
by default, ``(batch, *spatial, classes)``, the layout of Flax convolutions;
``channel_axis=1`` takes MONAI/PyTorch's ``(batch, classes, *spatial)``:

* :func:`soft_dice_loss` — MONAI ``DiceLoss`` options and defaults;
* :func:`dice_ce_loss` — nnU-Net's ``DC_and_CE_loss``;
* :func:`focal_tversky_loss` — Abraham and Khan's Focal-Tversky (seed 000);
* :func:`shape_aware_loss`, :func:`dice_ce_shape_loss` — seed 003's boundary-aware
  shape loss and its training loss, from :func:`shape_information` and the
  distance maps :func:`signed_distance_map`, :func:`squared_distance_transform`;
* :func:`lsgan_loss`, :func:`l1_loss`, :func:`patch_nce_loss` — the losses of
  CycleGAN and CUT (unpaired translation);
* :func:`hinge_gan_loss`, :func:`feature_matching_loss` — GauGAN's (SPADE)
  adversarial and feature-matching losses;
* :func:`deep_supervision_loss` with :func:`deep_supervision_weights` and
  :func:`downsample_labels` — nnU-Net's deep supervision.

Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.zeros((2, 8, 8, 4))  # (batch, y, x, classes)
    >>> labels = jnp.zeros((2, 8, 8), jnp.int32)
    >>> loss = dice_ce_loss(logits, labels)
"""

from ._deep_supervision import deep_supervision_loss as deep_supervision_loss
from ._deep_supervision import deep_supervision_weights as deep_supervision_weights
from ._deep_supervision import downsample_labels as downsample_labels
from ._distribution import quantile_pairs as quantile_pairs
from ._distribution import soft_histogram as soft_histogram
from ._distribution import wasserstein_distance as wasserstein_distance
from ._edt import signed_distance_map as signed_distance_map
from ._edt import squared_distance_transform as squared_distance_transform
from ._overlap import dice_ce_loss as dice_ce_loss
from ._overlap import focal_tversky_loss as focal_tversky_loss
from ._overlap import soft_dice_loss as soft_dice_loss
from ._shape import dice_ce_shape_loss as dice_ce_shape_loss
from ._shape import shape_aware_loss as shape_aware_loss
from ._shape import shape_information as shape_information
from ._spade import feature_matching_loss as feature_matching_loss
from ._spade import hinge_gan_loss as hinge_gan_loss
from ._translation import NCE_NEGATIVES as NCE_NEGATIVES
from ._translation import l1_loss as l1_loss
from ._translation import lsgan_loss as lsgan_loss
from ._translation import patch_nce_loss as patch_nce_loss

__all__ = [
    "feature_matching_loss",
    "hinge_gan_loss",
    "l1_loss",
    "lsgan_loss",
    "patch_nce_loss",
    "NCE_NEGATIVES",
    "quantile_pairs",
    "wasserstein_distance",
    "soft_histogram",
    "soft_dice_loss",
    "dice_ce_loss",
    "focal_tversky_loss",
    "shape_information",
    "shape_aware_loss",
    "dice_ce_shape_loss",
    "signed_distance_map",
    "squared_distance_transform",
    "deep_supervision_weights",
    "downsample_labels",
    "deep_supervision_loss",
]
