"""Metrics (NumPy): intensity-sample distances, segmentation metrics, clinical indices.

Intensity samples (seed 001's judges of simulated against real images):
:func:`ks_distance`, :func:`chi2_distance`, :func:`kl_divergence`,
:func:`sample_distances`. Feature sets: :func:`frechet_distance` (with
:func:`gaussian_statistics`), the Fréchet distance behind FID.

Segmentation, per label on integer label maps ``(ny, nx)`` or ``(nz, ny, nx)``
(dicts keyed by label value, background excluded): :func:`dice_score`,
:func:`iou`, :func:`hausdorff_distance` (HD95 by default),
:func:`average_surface_distance`, and the distances behind them,
:func:`surface_distances`. The surface distances follow DeepMind's
surface-distance (area-weighted surfels on the voxel-corner grid) by default, or
MONAI's boundary voxels with ``convention="monai"``; ``docs/metrics.md`` compares
the two.

Reports: :func:`score_structures` (Dice, HD95, ASSD per named structure) and
:func:`mean_sd` over cases.

Clinical indices: :func:`label_volumes`, :func:`cardiac_indices` (LV/RV EDV, ESV,
EF, LV mass) from label maps of a :class:`jaxsim.labels.LabelScheme`.
"""

from ._clinical import MYOCARDIAL_DENSITY as MYOCARDIAL_DENSITY
from ._clinical import CardiacIndices as CardiacIndices
from ._clinical import cardiac_indices as cardiac_indices
from ._clinical import label_volumes as label_volumes
from ._distribution import chi2_distance as chi2_distance
from ._distribution import kl_divergence as kl_divergence
from ._distribution import ks_distance as ks_distance
from ._distribution import sample_distances as sample_distances
from ._frechet import frechet_distance as frechet_distance
from ._frechet import gaussian_statistics as gaussian_statistics
from ._report import SCORE_FIELDS as SCORE_FIELDS
from ._report import mean_sd as mean_sd
from ._report import score_structures as score_structures
from ._segmentation import SurfaceDistances as SurfaceDistances
from ._segmentation import average_surface_distance as average_surface_distance
from ._segmentation import dice_score as dice_score
from ._segmentation import hausdorff_distance as hausdorff_distance
from ._segmentation import iou as iou
from ._segmentation import surface_distances as surface_distances

__all__ = [
    "frechet_distance",
    "gaussian_statistics",
    "chi2_distance",
    "kl_divergence",
    "ks_distance",
    "sample_distances",
    "dice_score",
    "iou",
    "SurfaceDistances",
    "surface_distances",
    "hausdorff_distance",
    "average_surface_distance",
    "SCORE_FIELDS",
    "score_structures",
    "mean_sd",
    "MYOCARDIAL_DENSITY",
    "CardiacIndices",
    "label_volumes",
    "cardiac_indices",
]
from ._plausibility import MIN_COMPONENT as MIN_COMPONENT
from ._plausibility import PLAUSIBLE_RANGES as PLAUSIBLE_RANGES
from ._plausibility import component_sizes as component_sizes
from ._plausibility import connected_components as connected_components
from ._plausibility import lv_enclosed as lv_enclosed
from ._plausibility import mid_ventricular_slices as mid_ventricular_slices
from ._plausibility import plausibility_checks as plausibility_checks
from ._plausibility import shape_measures as shape_measures
from ._plausibility import shape_plausibility as shape_plausibility
from ._plausibility import wall_thickness as wall_thickness
