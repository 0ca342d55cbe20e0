"""jaxsim.mr — MR acquisition physics (layer 2)."""

from ._cine import CineResult as CineResult
from ._cine import acquire_cine as acquire_cine
from ._cine import refine_in_plane as refine_in_plane
from ._cine import simulate_cine as simulate_cine
from ._cine import simulate_cine_contrasts as simulate_cine_contrasts
from ._coils import coil_layout as coil_layout
from ._coils import coil_sensitivities as coil_sensitivities
from ._coils import loop_field as loop_field
from ._kspace import cartesian_mask as cartesian_mask
from ._kspace import crop_kspace as crop_kspace
from ._kspace import fft2c as fft2c
from ._kspace import ifft2c as ifft2c
from ._kspace import tukey_window as tukey_window
from ._presets import SEED2021_SEQUENCES as SEED2021_SEQUENCES
from ._presets import SEED2021_SNR as SEED2021_SNR
from ._presets import seed2021_contrasts as seed2021_contrasts
from ._sequence import BSSFPSequence as BSSFPSequence
from ._sequence import tissue_signals as tissue_signals
from ._tagging import TaggingSequence as TaggingSequence
from ._tagging import acquire_tagged as acquire_tagged
from ._tagging import simulate_tagged as simulate_tagged
from ._tissues import FIELD_STRENGTHS as FIELD_STRENGTHS
from ._tissues import TissueProperties as TissueProperties
from ._tissues import default_tissue_properties as default_tissue_properties
from ._tissues import sample_tissue_properties as sample_tissue_properties
from ._tissues import tissue_property_std as tissue_property_std
