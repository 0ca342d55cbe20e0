"""jaxsim.phantoms — open parametric 4D cardiac-torso anatomy (layer 1)."""

from ._labels import TISSUE_INDEX as TISSUE_INDEX
from ._labels import TISSUES as TISSUES
