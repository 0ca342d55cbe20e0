"""jaxsim.mr — MR acquisition physics (layer 2).

Simulators (:func:`simulate_cine`, :func:`simulate_cine_contrasts`,
:func:`simulate_tagged`) share one signature: ``key, subject, geometry`` and
keyword options ``cardiac_phases, tissue, sequence, acquisition`` (an
:class:`MRAcquisition`), ``field, supersample, return_coils``. Their jittable cores
(:func:`prepare_anatomy`, :func:`acquire_cine`, :func:`acquire_tagged`,
:func:`acquire_images`) let one anatomy serve many acquisitions.

Material maps (:class:`MaterialBox`, :func:`material_box`, :func:`sample_material`,
:func:`material_signals`): a ``(9, g, g, g)`` array of PD/T1/T2 log-modulations per
tissue group on a box attached to the heart, passed as ``material=`` to
:func:`simulate_cine` / :func:`acquire_cine` (an anatomy prepared with
``material_box=``); a zero map changes nothing.
"""

from ._acquisition import MRAcquisition as MRAcquisition
from ._acquisition import check_acquisition as check_acquisition
from ._anatomy import Anatomy as Anatomy
from ._anatomy import prepare_anatomy as prepare_anatomy
from ._anatomy import refine_in_plane as refine_in_plane
from ._cine import CineResult as CineResult
from ._cine import acquire_cine as acquire_cine
from ._cine import contrast_keys as contrast_keys
from ._cine import simulate_cine as simulate_cine
from ._cine import simulate_cine_contrasts as simulate_cine_contrasts
from ._cine_to_tagged import cine_to_tagged as cine_to_tagged
from ._coils import coil_layout as coil_layout
from ._coils import coil_sensitivities as coil_sensitivities
from ._coils import loop_field as loop_field
from ._fields import smooth_field as smooth_field
from ._kspace import cartesian_mask as cartesian_mask
from ._kspace import crop_kspace as crop_kspace
from ._kspace import fft2c as fft2c
from ._kspace import ifft2c as ifft2c
from ._kspace import tukey_window as tukey_window
from ._material import MATERIAL_CHANNELS as MATERIAL_CHANNELS
from ._material import MATERIAL_GROUPS as MATERIAL_GROUPS
from ._material import MATERIAL_PROPERTIES as MATERIAL_PROPERTIES
from ._material import MaterialBox as MaterialBox
from ._material import check_material as check_material
from ._material import check_material_bounds as check_material_bounds
from ._material import material_box as material_box
from ._material import material_change as material_change
from ._material import material_coordinates as material_coordinates
from ._material import material_signals as material_signals
from ._material import sample_material as sample_material
from ._presets import SEED2021_SEQUENCES as SEED2021_SEQUENCES
from ._presets import SEED2021_SNR as SEED2021_SNR
from ._presets import seed2021_contrasts as seed2021_contrasts
from ._receive import acquire_images as acquire_images
from ._receive import combine_coils as combine_coils
from ._sequence import SEQUENCE_RANGES as SEQUENCE_RANGES
from ._sequence import BSSFPSequence as BSSFPSequence
from ._sequence import check_sequence as check_sequence
from ._sequence import tissue_signals as tissue_signals
from ._tagging import TAGGING_RANGES as TAGGING_RANGES
from ._tagging import TaggingSequence as TaggingSequence
from ._tagging import acquire_tagged as acquire_tagged
from ._tagging import simulate_tagged as simulate_tagged
from ._tissues import FIELD_STRENGTHS as FIELD_STRENGTHS
from ._tissues import PROPERTY_RANGES as PROPERTY_RANGES
from ._tissues import TissueProperties as TissueProperties
from ._tissues import check_tissue as check_tissue
from ._tissues import default_tissue_properties as default_tissue_properties
from ._tissues import sample_tissue_properties as sample_tissue_properties
from ._tissues import tissue_property_std as tissue_property_std
