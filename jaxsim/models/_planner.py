"""nnU-Net's network-topology planner: kernels and strides from spacing and patch.

Implements ``get_pool_and_conv_props`` of nnU-Net v2
(``nnunetv2/experiment_planning/experiment_planners/network_topology.py``),
which the default experiment planner calls with
``min_feature_map_size = featuremap_min_edge_length = 4`` and no cap on the
number of poolings. One pooling step at a time:

1. Axes whose current size is at least ``2 * min_feature_map_size`` may pool.
2. Of those, only axes whose current spacing is less than twice the smallest
   current spacing among them pool (anisotropy: a much coarser axis waits until
   pooling the fine axes has made spacings comparable).
3. If a single axis is left it pools only while its size is at least
   ``3 * min_feature_map_size``; with none left planning stops.
4. The conv kernel of the stage is 3 along every axis whose current spacing is
   less than twice the smallest current spacing, 1 elsewhere; once 3 an axis
   stays 3.
5. Pooling axes get stride 2 (spacing doubles, size ``ceil(size / 2)``), the
   others 1.

The first stage has stride 1 and the bottleneck kernel is 3 on every axis. The
patch size is then rounded up to a multiple of ``2**num_pool`` per axis.

One deliberate difference: step 4 in nnU-Net's code indexes the list of
spacings of the size-valid axes with the full axis index
(``spacings_of_axes[d]``). Where every axis is still large enough to pool (the
usual case, and every case in the tests) the two agree; where an axis has
already stopped for size while another still has kernel 1, nnU-Net reads the
wrong axis's spacing or raises ``IndexError``. Here the axis's own current
spacing is used, which is what the rule means.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class DynUNetPlan:
    """A planned nnU-Net topology; ``DynUNet(**plan.dynunet_kwargs(), ...)`` builds it.

    Attributes:
        kernel_size: per stage, per axis (``[..., z, y, x]`` order as the spacing).
        strides: per stage, per axis; the first is all ones.
        filters: features per stage.
        patch_size: the patch rounded up to a multiple of ``shape_divisible_by``.
        num_pool_per_axis: poolings per axis.
        shape_divisible_by: ``2**num_pool_per_axis`` (input sizes must divide).
    """

    kernel_size: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    filters: tuple[int, ...]
    patch_size: tuple[int, ...]
    num_pool_per_axis: tuple[int, ...]
    shape_divisible_by: tuple[int, ...]

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    def dynunet_kwargs(self) -> dict:
        """Keyword arguments of :class:`DynUNet` for this plan (JSON-friendly)."""
        return {
            "spatial_dims": self.spatial_dims,
            "kernel_size": [list(k) for k in self.kernel_size],
            "strides": [list(s) for s in self.strides],
            "upsample_kernel_size": [list(s) for s in self.strides[1:]],
            "filters": list(self.filters),
        }


def plan_dynunet(
    spacing: Sequence[float],
    patch_size: Sequence[int],
    *,
    min_feature_map_size: int = 4,
    max_num_pool: int | None = None,
    base_features: int = 32,
    max_features: int | None = None,
) -> DynUNetPlan:
    """Plan kernels, strides and features with nnU-Net's rules (module docstring).

    Args:
        spacing: voxel spacing in mm per axis, 2 or 3 entries, ``[..., z, y, x]``.
        patch_size: training patch size in voxels, same axes.
        min_feature_map_size: smallest bottleneck edge (nnU-Net: 4).
        max_num_pool: cap on poolings per axis (``None``: no cap, as nnU-Net).
        base_features: features of the first stage (nnU-Net: 32).
        max_features: feature cap (``None``: 320 in 3D, 512 in 2D as nnU-Net).

    Returns:
        The :class:`DynUNetPlan`.

    Raises:
        ValueError: for 2 or 3 entries not given, non-positive spacing or sizes.

    Example:
        >>> plan = plan_dynunet((10.0, 1.5, 1.5), (16, 160, 160))
        >>> plan.strides[:3]
        ((1, 1, 1), (1, 2, 2), (1, 2, 2))
    """
    spacing = tuple(float(s) for s in spacing)
    size = tuple(int(p) for p in patch_size)
    dim = len(spacing)
    if dim not in (2, 3) or len(size) != dim:
        raise ValueError(
            f"spacing and patch_size need 2 or 3 entries each, got spacing={spacing} "
            f"and patch_size={tuple(patch_size)}"
        )
    if min(spacing) <= 0 or min(size) <= 0:
        raise ValueError(
            f"spacing and patch_size must be positive, got {spacing}, {size}"
        )
    if min_feature_map_size < 1:
        raise ValueError(
            f"min_feature_map_size must be >= 1, got {min_feature_map_size}"
        )
    cap = math.inf if max_num_pool is None else int(max_num_pool)
    current_spacing, current_size = list(spacing), list(size)
    strides, kernels = [(1,) * dim], []
    num_pool, kernel = [0] * dim, [1] * dim
    while True:
        valid = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if not valid:
            break
        finest = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / finest < 2]
        valid = [i for i in valid if num_pool[i] < cap]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if not valid:
            break
        smallest = min(current_spacing)
        for d in range(dim):
            if kernel[d] != 3 and current_spacing[d] / smallest < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v] = 2
            num_pool[v] += 1
            current_spacing[v] *= 2
            current_size[v] = math.ceil(current_size[v] / 2)
        strides.append(tuple(stride))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)
    divisible = tuple(2**n for n in num_pool)
    padded = tuple(math.ceil(s / m) * m for s, m in zip(size, divisible, strict=True))
    cap_f = (320 if dim == 3 else 512) if max_features is None else int(max_features)
    filters = tuple(min(base_features * 2**i, cap_f) for i in range(len(strides)))
    return DynUNetPlan(
        kernel_size=tuple(kernels),
        strides=tuple(strides),
        filters=filters,
        patch_size=padded,
        num_pool_per_axis=tuple(num_pool),
        shape_divisible_by=divisible,
    )
