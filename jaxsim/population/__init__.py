"""jaxsim.population — virtual population designs and their simulation (layer 4).

Writing databases to disk is :mod:`jaxsim.io`'s job (``jaxsim.io.generate_database``).
"""

from ._design import PRESETS as PRESETS
from ._design import PopulationDesign as PopulationDesign
from ._design import Preset as Preset
from ._design import SubjectSource as SubjectSource
from ._design import parse_shard as parse_shard
from ._generate import LabelSet as LabelSet
from ._generate import simulate_label_set as simulate_label_set
from ._sampler import MAX_CLUTTER as MAX_CLUTTER
from ._sampler import PATHOLOGIES as PATHOLOGIES
from ._sampler import TRABECULAR_BAND as TRABECULAR_BAND
from ._sampler import Batch as Batch
from ._sampler import SamplerSpec as SamplerSpec
from ._sampler import check_spec as check_spec
from ._sampler import kth_largest as kth_largest
from ._sampler import sample_batch as sample_batch
