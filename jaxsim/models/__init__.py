"""Segmentation and translation networks in Flax NNX, 2D and 3D from one definition.

Structured like MONAI: layers (``_layers``) -> blocks (``_blocks``) -> nets.
Arrays are channel-last: ``(B, Y, X, C)`` in 2D and ``(B, Z, Y, X, C)`` in 3D.

* :class:`UNet` -- MONAI ``UNet`` (residual units, strided / transposed convs).
* :class:`DynUNet` -- nnU-Net's plain conv U-Net (MONAI ``DynUNet``) with deep
  supervision; :func:`plan_dynunet` plans its kernels and strides.
* :class:`SegResNetVAE` -- SegResNet with the VAE regulariser.
* :class:`ResnetGenerator`, :class:`PatchDiscriminator`, :class:`PatchSampleMLP`,
  :class:`ImagePool` -- CycleGAN and CUT (unpaired sim-to-real translation);
  parameter counts equal the PyTorch references'.
* :class:`SPADEGenerator`, :class:`MultiscaleDiscriminator`, :class:`SPADE`,
  :class:`SPADEResBlock`, :class:`SpectralConv` -- SPADE / GauGAN (the
  enhancer of physics renderings); parameter counts equal NVlabs/SPADE's.
* :class:`MaterialGLO` -- latent code -> bounded 3D material map (GLO, seed 004).
* :func:`build_model`, :func:`model_config`, :func:`build_model_from_config` --
  registry and JSON-serialisable constructor configs.

Parameter counts equal MONAI 1.6.1's for the same configurations; each network
initialises its weights as its reference does (see the class docstrings).
Models are constructed in training mode (dropout on, batch statistics); switch
with ``model.eval()`` / ``model.train()`` or ``nnx.view``.
"""

from ._dynunet import DynUNet as DynUNet
from ._dynunet import deep_supervision_weights as deep_supervision_weights
from ._dynunet import default_filters as default_filters
from ._glo import SHAPE_FIELDS as SHAPE_FIELDS
from ._glo import ShapeGLO as ShapeGLO
from ._material_glo import DEFAULT_MAX_LOG as DEFAULT_MAX_LOG
from ._material_glo import MaterialGLO as MaterialGLO
from ._patchnce import ImagePool as ImagePool
from ._patchnce import PatchSampleMLP as PatchSampleMLP
from ._patchnce import l2_normalize as l2_normalize
from ._planner import DynUNetPlan as DynUNetPlan
from ._planner import plan_dynunet as plan_dynunet
from ._registry import MODELS as MODELS
from ._registry import build_model as build_model
from ._registry import build_model_from_config as build_model_from_config
from ._registry import count_params as count_params
from ._registry import model_config as model_config
from ._segresnet import SegResNetVAE as SegResNetVAE
from ._spade import SPADE as SPADE
from ._spade import UPSAMPLING_LAYERS as UPSAMPLING_LAYERS
from ._spade import MultiscaleDiscriminator as MultiscaleDiscriminator
from ._spade import SPADEGenerator as SPADEGenerator
from ._spade import SPADEResBlock as SPADEResBlock
from ._spade import SpectralConv as SpectralConv
from ._spade import SpectralVector as SpectralVector
from ._spade import avg_pool_3x3 as avg_pool_3x3
from ._spade import resize_nearest as resize_nearest
from ._translation import PatchDiscriminator as PatchDiscriminator
from ._translation import ResnetGenerator as ResnetGenerator
from ._translation import blur_downsample as blur_downsample
from ._translation import blur_upsample as blur_upsample
from ._translation import patchgan_output_size as patchgan_output_size
from ._unet import UNet as UNet
