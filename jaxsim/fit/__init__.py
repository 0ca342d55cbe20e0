"""jaxsim.fit — fit simulator parameters to real images by gradient (layer 3).

Given a real image and its label map, :func:`fit_histograms` finds the tissue
(PD, T1, T2 per labelled class) and acquisition parameters (receiver scale, noise
sigma anchored to its estimate from the image's local differences, smooth bias
field, partial-volume width, optionally flip angle) whose
simulation, rendered on the real label map through the MR pipeline, matches the
real per-class intensity distributions; MAP with literature priors, several Adam
restarts, and Laplace / restart-spread uncertainties.

:func:`fit_twin` builds a patient twin: the phantom's heart pose relative to the
image stack, its LV/RV size parameters and a residual deformation
(:class:`jaxsim.phantoms.ResidualDeformation`) fitted to a real ACDC label map (ED,
and ES jointly) by soft Dice through the rasteriser. The returned subject and
geometry feed every simulator (``simulate_cine(key, twin.subject,
twin.geometry)`` images the patient's heart on the patient's grid).
"""

from ._data import FitData as FitData
from ._data import parse_label_spec as parse_label_spec
from ._data import prepare_data as prepare_data
from ._fit import FitResult as FitResult
from ._fit import class_signals as class_signals
from ._fit import default_parameters as default_parameters
from ._fit import fit_histograms as fit_histograms
from ._fit import plausibility as plausibility
from ._model import FitParameters as FitParameters
from ._model import bias_field as bias_field
from ._model import class_fractions as class_fractions
from ._model import render as render
from ._noise import estimate_noise_sigma as estimate_noise_sigma
from ._objective import make_objective as make_objective
from ._objective import make_prior as make_prior
from ._plot import plot_histograms as plot_histograms
from ._twin import FITTED_FIELDS as FITTED_FIELDS
from ._twin import STRUCTURES as STRUCTURES
from ._twin import TwinResult as TwinResult
from ._twin import fit_twin as fit_twin
from ._twin import posed_affine as posed_affine
from ._twin import rotation_matrix as rotation_matrix
from ._twin import twin_from_parameters as twin_from_parameters
from ._twin import twin_labels as twin_labels
from ._twin_init import initial_pose as initial_pose
from ._twin_init import initial_subject as initial_subject
from ._twin_init import label_moments as label_moments
from ._twin_plot import plot_twin as plot_twin
