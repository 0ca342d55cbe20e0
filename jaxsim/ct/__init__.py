"""jaxsim.ct — CT acquisition: materials, spectra, physics, noise, reconstruction.

Layer 2. Attenuation tables (ICRU-44 compositions, NIST/xraydb cross-sections) and
tube spectra (SpekPy) ship as data files generated offline by
``tools/make_ct_tables.py``; the projector and FDK live in :mod:`jaxsim.kernels`.
"""

from ._materials import attenuation as attenuation
from ._materials import blood_with_iodine as blood_with_iodine
from ._materials import density as density
from ._materials import energies as energies
from ._materials import iodine_attenuation as iodine_attenuation
from ._materials import material_names as material_names
from ._materials import monochromatic as monochromatic
from ._materials import spectrum as spectrum
from ._materials import spectrum_names as spectrum_names
from ._noise import NOISE_MODELS as NOISE_MODELS
from ._noise import detected_counts as detected_counts
from ._noise import log_transform as log_transform
from ._physics import DEFAULT_TISSUE_MATERIALS as DEFAULT_TISSUE_MATERIALS
from ._physics import basis_matrix as basis_matrix
from ._physics import transmission as transmission
from ._physics import water_correction as water_correction
from ._physics import water_reference as water_reference
from ._simulate import CTResult as CTResult
from ._simulate import nominal_hu as nominal_hu
from ._simulate import scanner_geometry as scanner_geometry
from ._simulate import simulate_ct as simulate_ct
from ._simulate import simulate_ct_from_fractions as simulate_ct_from_fractions
from ._simulate import to_hu as to_hu
