"""jaxsim.mr — MR acquisition physics (layer 2)."""

from ._tissues import FIELD_STRENGTHS as FIELD_STRENGTHS
from ._tissues import TissueProperties as TissueProperties
from ._tissues import default_tissue_properties as default_tissue_properties
from ._tissues import sample_tissue_properties as sample_tissue_properties
from ._tissues import tissue_property_std as tissue_property_std
