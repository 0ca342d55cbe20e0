"""jaxsim.phantoms — open parametric 4D cardiac-torso anatomy (layer 1).

An open, analytic and differentiable substitute for XCAT: each organ is a smooth
implicit shape in world millimetres (RAS+), placed by the parameters of a
:class:`Subject`; :func:`tissue_fractions` rasterises the anatomy on any oriented
grid (:class:`jaxsim.geometry.ImageGeometry`) with soft, supersampled boundaries.
A :class:`ResidualDeformation` (``Subject.deformation``) bends the heart into shapes
beyond the analytic family, smoothly, invertibly and without changing any volume.
"""

from jaxsim.geometry import ImageGeometry as ImageGeometry

from ._deformation import end_diastolic_positions as end_diastolic_positions
from ._heart import HeartPose as HeartPose
from ._heart import heart_pose as heart_pose
from ._labels import TISSUE_INDEX as TISSUE_INDEX
from ._labels import TISSUES as TISSUES
from ._motion import end_systolic_phase as end_systolic_phase
from ._motion import lv_shape as lv_shape
from ._motion import lv_volumes as lv_volumes
from ._motion import volume_curve as volume_curve
from ._planning import axial_geometry as axial_geometry
from ._planning import four_chamber_geometry as four_chamber_geometry
from ._planning import lv_long_axis as lv_long_axis
from ._planning import short_axis_geometry as short_axis_geometry
from ._planning import two_chamber_geometry as two_chamber_geometry
from ._population import sample_subjects as sample_subjects
from ._raster import DEFAULT_SUPERSAMPLE as DEFAULT_SUPERSAMPLE
from ._raster import label_map as label_map
from ._raster import tissue_fractions as tissue_fractions
from ._residual import ResidualDeformation as ResidualDeformation
from ._residual import deform_points as deform_points
from ._residual import deformation_box as deformation_box
from ._residual import displacement_grid as displacement_grid
from ._residual import residual_deformation as residual_deformation
from ._residual import velocity_grid as velocity_grid
from ._subject import ES_PHASE_RANGE as ES_PHASE_RANGE
from ._subject import FIELD_SPECS as FIELD_SPECS
from ._subject import FieldSpec as FieldSpec
from ._subject import Subject as Subject
from ._subject import check_subject as check_subject
from ._subject import default_subject as default_subject
