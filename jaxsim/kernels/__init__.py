"""jaxsim.kernels — pure imaging physics on arrays (layer 0).

Every kernel is a function of arrays that jit, vmap and grad can transform; it imports
only jax and numpy. Units follow the project convention: lengths in mm, times in
seconds, angles in radians, off-resonance in Hz.
"""

from ._bssfp import bssfp_signal as bssfp_signal
from ._bssfp import mrxcat_bssfp_signal as mrxcat_bssfp_signal
from ._bssfp_transient import MAX_PULSE_INDEX as MAX_PULSE_INDEX
from ._bssfp_transient import bssfp_transient as bssfp_transient
from ._conebeam_geometry import ConeBeamGeometry as ConeBeamGeometry
from ._conebeam_geometry import VolumeGeometry as VolumeGeometry
from ._conebeam_ops import cone_beam_backproject as cone_beam_backproject
from ._conebeam_ops import cone_beam_project as cone_beam_project
from ._fdk import fdk as fdk
from ._spamm import spamm_mz as spamm_mz
from ._spamm import spamm_pattern as spamm_pattern
from ._spoiled_gre import spoiled_gre_signal as spoiled_gre_signal
from ._tag_fading import tag_fading as tag_fading
