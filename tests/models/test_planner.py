"""nnU-Net topology planner: cases worked out by hand from the rules in
``jaxsim.models._planner`` (nnU-Net v2 ``get_pool_and_conv_props``, min edge 4)."""

from __future__ import annotations

import pytest
from flax import nnx

from jaxsim.models import DynUNet, count_params, plan_dynunet

# ACDC-like cine stack (z, y, x) = 10 x 1.5 x 1.5 mm, patch 16 x 160 x 160.
#   step 1: all sizes >= 8; finest 1.5, z 10/1.5 >= 2 -> pool y, x; kernel (1,3,3)
#           -> spacing (10, 3, 3), size (16, 80, 80)
#   step 2: finest 3, 10/3 >= 2 -> pool y, x; kernel (1,3,3) -> (10, 6, 6), (16, 40, 40)
#   step 3: finest 6, 10/6 < 2 -> pool all; kernel (3,3,3) -> (20, 12, 12), (8, 20, 20)
#   step 4: 8 >= 8, 20/12 < 2 -> pool all -> (40, 24, 24), (4, 10, 10)
#   step 5: z too small (4 < 8) -> pool y, x -> (40, 48, 48), (4, 5, 5)
#   step 6: nothing >= 8 -> stop. Bottleneck kernel (3,3,3).
ACDC_KERNELS = ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
ACDC_STRIDES = ((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))


def test_acdc_like_anisotropic_stack():
    plan = plan_dynunet((10.0, 1.5, 1.5), (16, 160, 160))
    assert plan.kernel_size == ACDC_KERNELS
    assert plan.strides == ACDC_STRIDES
    assert plan.num_pool_per_axis == (2, 5, 5)
    assert plan.shape_divisible_by == (4, 32, 32)
    assert plan.patch_size == (16, 160, 160)
    assert plan.filters == (32, 64, 128, 256, 320, 320)


def test_isotropic_1mm_128_cube():
    # 128 -> 64 -> 32 -> 16 -> 8 -> 4 (5 poolings on every axis), then 4 < 8 stops.
    plan = plan_dynunet((1.0, 1.0, 1.0), (128, 128, 128))
    assert plan.kernel_size == ((3, 3, 3),) * 6
    assert plan.strides == ((1, 1, 1),) + ((2, 2, 2),) * 5
    assert plan.num_pool_per_axis == (5, 5, 5)
    assert plan.filters == (32, 64, 128, 256, 320, 320)


def test_2d_256_square():
    # 256 -> 128 -> 64 -> 32 -> 16 -> 8 -> 4: 6 poolings, 7 stages; 2D cap 512.
    plan = plan_dynunet((1.25, 1.25), (256, 256))
    assert plan.strides == ((1, 1),) + ((2, 2),) * 6
    assert plan.kernel_size == ((3, 3),) * 7
    assert plan.filters == (32, 64, 128, 256, 512, 512, 512)
    assert plan.patch_size == (256, 256)


def test_patch_is_rounded_up_to_the_pooling_multiple():
    # 100 -> 50 -> 25 -> 13 -> 7 (ceil), 7 < 8 stops: 4 poolings, so 100 -> 112.
    plan = plan_dynunet((1.0, 1.0, 1.0), (100, 100, 100))
    assert plan.num_pool_per_axis == (4, 4, 4)
    assert plan.patch_size == (112, 112, 112)


def test_single_axis_pools_only_while_three_times_the_min_edge():
    # (10, 64): both pool -> (5, 32); then only x: 32 -> 16 -> 8; at 8 < 12 stop.
    plan = plan_dynunet((1.0, 1.0), (10, 64))
    assert plan.strides == ((1, 1), (2, 2), (1, 2), (1, 2))
    assert plan.num_pool_per_axis == (1, 3)
    assert plan.kernel_size == ((3, 3),) * 4


def test_coarse_axis_gets_kernel_1_until_spacings_are_comparable():
    # spacing (5, 1), patch (64, 64):
    #   x pools alone twice (5/1, 5/2 >= 2) with kernel (1, 3): spacing (5, 4)
    #   then 5/4 < 2: both pool, kernel (3, 3) -> (10, 8), size (32, 8)
    #   both pool again -> (20, 16), size (16, 4); then y alone (16 >= 12) -> 8
    #   y alone at 8 < 12 stops.
    plan = plan_dynunet((5.0, 1.0), (64, 64))
    assert plan.strides == ((1, 1), (1, 2), (1, 2), (2, 2), (2, 2), (2, 1))
    assert plan.kernel_size == ((1, 3), (1, 3), (3, 3), (3, 3), (3, 3), (3, 3))
    assert plan.num_pool_per_axis == (3, 4)
    assert plan.shape_divisible_by == (8, 16)


def test_plan_builds_the_monai_dynunet():
    # MONAI 1.6.1 DynUNet(3, 1, 4, ACDC_KERNELS, ACDC_STRIDES, ACDC_STRIDES[1:])
    # has 30_554_020 parameters (benchmarks/monai_peer.py counts).
    plan = plan_dynunet((10.0, 1.5, 1.5), (16, 160, 160))
    kw = plan.dynunet_kwargs()
    dims = kw.pop("spatial_dims")
    net = nnx.eval_shape(lambda: DynUNet(dims, 1, 4, **kw, rngs=nnx.Rngs(0)))
    assert count_params(net) == 30_554_020


def test_max_num_pool_and_feature_options():
    plan = plan_dynunet((1.0, 1.0), (256, 256), max_num_pool=3, base_features=16)
    assert plan.num_pool_per_axis == (3, 3)
    assert plan.filters == (16, 32, 64, 128)
    plan = plan_dynunet((1.0, 1.0, 1.0), (64, 64, 64), max_features=96)
    assert plan.filters == (32, 64, 96, 96, 96)


@pytest.mark.parametrize(
    ("spacing", "patch", "match"),
    [
        ((1.0,), (64,), "2 or 3 entries"),
        ((1.0, 1.0), (64, 64, 64), "2 or 3 entries"),
        ((1.0, 0.0), (64, 64), "positive"),
        ((1.0, 1.0), (64, -1), "positive"),
    ],
)
def test_bad_input_is_a_clear_error(spacing, patch, match):
    with pytest.raises(ValueError, match=match):
        plan_dynunet(spacing, patch)
