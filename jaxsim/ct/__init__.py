"""jaxsim.ct — CT acquisition: materials, spectra, physics, noise, reconstruction.

Layer 2. Attenuation tables (ICRU-44 compositions, NIST/xraydb cross-sections) and
tube spectra (SpekPy) ship as data files generated offline by
``tools/make_ct_tables.py``; the projector and FDK live in :mod:`jaxsim.kernels`.

:func:`simulate_ct` scans a virtual subject; a :class:`CTAcquisition` holds the scan
(static counts and modes, traced magnitudes) and :class:`CTMaterials` what each
tissue is made of (learnable, with a bijection in :mod:`jaxsim.parameters`).
"""

from ._acquisition import ACQUISITION_RANGES as ACQUISITION_RANGES
from ._acquisition import FILTERS as FILTERS
from ._acquisition import MAX_VIEWS as MAX_VIEWS
from ._acquisition import CTAcquisition as CTAcquisition
from ._acquisition import check_acquisition as check_acquisition
from ._acquisition import scanner_geometry as scanner_geometry
from ._hu import hu_statistics as hu_statistics
from ._hu import nominal_hu as nominal_hu
from ._materials import attenuation as attenuation
from ._materials import blood_with_iodine as blood_with_iodine
from ._materials import density as density
from ._materials import energies as energies
from ._materials import iodine_attenuation as iodine_attenuation
from ._materials import material_names as material_names
from ._materials import monochromatic as monochromatic
from ._materials import spectrum as spectrum
from ._materials import spectrum_names as spectrum_names
from ._memory import CTMemoryPlan as CTMemoryPlan
from ._memory import available_memory as available_memory
from ._memory import format_bytes as format_bytes
from ._noise import NOISE_MODELS as NOISE_MODELS
from ._noise import detected_counts as detected_counts
from ._noise import log_transform as log_transform
from ._physics import transmission as transmission
from ._physics import water_correction as water_correction
from ._physics import water_reference as water_reference
from ._simulate import DEFAULT_SHAPE as DEFAULT_SHAPE
from ._simulate import DEFAULT_SPACING as DEFAULT_SPACING
from ._simulate import CTResult as CTResult
from ._simulate import plan_ct as plan_ct
from ._simulate import simulate_ct as simulate_ct
from ._simulate import simulate_ct_from_fractions as simulate_ct_from_fractions
from ._simulate import to_hu as to_hu
from ._tissue_materials import DEFAULT_TISSUE_MATERIALS as DEFAULT_TISSUE_MATERIALS
from ._tissue_materials import MATERIAL_RANGES as MATERIAL_RANGES
from ._tissue_materials import CTMaterials as CTMaterials
from ._tissue_materials import check_materials as check_materials
from ._tissue_materials import default_ct_materials as default_ct_materials
