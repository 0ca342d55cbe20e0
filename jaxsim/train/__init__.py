"""jaxsim.train — training and inference of segmentation networks (layer 7).

Networks from :mod:`jaxsim.models` learn from batches that the simulator draws on
device (:func:`jaxsim.population.sample_batch`), from jaxsim databases, or from
folders of real labelled images; preprocessing is shared between training and
inference so a real image is seen the same way in both.
"""

from ._transforms import Augmentation as Augmentation
from ._transforms import augment as augment
from ._transforms import normalize as normalize
from ._transforms import resample_in_plane as resample_in_plane
from ._transforms import warp_in_plane as warp_in_plane
