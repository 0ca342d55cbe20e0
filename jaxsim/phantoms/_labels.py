"""Tissue classes of the phantom (defined in :mod:`jaxsim.labels`)."""

from jaxsim.labels import TISSUE_INDEX as TISSUE_INDEX
from jaxsim.labels import TISSUES as TISSUES
