"""jaxsim.train — training and inference of segmentation networks (layer 7).

Networks from :mod:`jaxsim.models` learn from batches that the simulator draws on
device (:func:`jaxsim.population.sample_batch`), from jaxsim databases, or from
folders of real labelled images; preprocessing is shared between training and
inference so a real image is seen the same way in both.
"""

from ._data import DatabaseData as DatabaseData
from ._data import Preprocessing as Preprocessing
from ._data import SimulatedData as SimulatedData
from ._data import SliceData as SliceData
from ._data import open_data as open_data
from ._data import slices_from_cases as slices_from_cases
from ._infer import largest_components as largest_components
from ._infer import segment_volume as segment_volume
from ._loop import TrainConfig as TrainConfig
from ._loop import Trainer as Trainer
from ._loop import TrainResult as TrainResult
from ._loop import dice_per_class as dice_per_class
from ._loop import fit as fit
from ._loop import make_optimizer as make_optimizer
from ._loop import predict_batches as predict_batches
from ._run import DEFAULT_MODEL_OPTIONS as DEFAULT_MODEL_OPTIONS
from ._run import TRAINABLE_MODELS as TRAINABLE_MODELS
from ._run import input_layout as input_layout
from ._run import load_run as load_run
from ._run import make_objective as make_objective
from ._run import model_options as model_options
from ._run import run_training as run_training
from ._sim2real import STRUCTURES as STRUCTURES
from ._sim2real import Sim2RealConfig as Sim2RealConfig
from ._sim2real import evaluate_cases as evaluate_cases
from ._sim2real import patient_phases as patient_phases
from ._sim2real import run_sim2real as run_sim2real
from ._sim2real import split_patients as split_patients
from ._transforms import Augmentation as Augmentation
from ._transforms import augment as augment
from ._transforms import normalize as normalize
from ._transforms import resample_in_plane as resample_in_plane
from ._transforms import warp_in_plane as warp_in_plane
