"""jaxsim.train — training and inference of segmentation networks (layer 7).

Networks from :mod:`jaxsim.models` learn from batches that the simulator draws on
device (:func:`jaxsim.population.sample_batch`), from jaxsim databases, or from
folders of real labelled images; preprocessing is shared between training and
inference so a real image is seen the same way in both.

Sim-to-real translation (CUT, FastCUT, CycleGAN): :func:`run_translation` trains
on unpaired simulated and real slices, :func:`translate_database` rewrites a
database with translated images (labels kept), and :func:`realism` measures
per-tissue KS, an in-project Fréchet distance and label preservation.

The SPADE (GauGAN) enhancer: :func:`run_enhancer` trains it on pairs of patient
twins' physics renderings and the patients' real images
(:func:`enhancer_pairs`), :func:`enhance` applies it (differentiable, for
``jit``-ed chains) and :func:`enhance_database` rewrites a database with
enhanced images (labels kept).
Material GLO: :func:`train_material_glo` learns a
:class:`~jaxsim.models.MaterialGLO` and one latent code per real case through the
MR simulator on patient twins; :func:`sample_materials` draws new material maps.
"""

from ._chain import SimulationChain as SimulationChain
from ._data import DatabaseData as DatabaseData
from ._data import Preprocessing as Preprocessing
from ._data import SimulatedData as SimulatedData
from ._data import SliceData as SliceData
from ._data import open_data as open_data
from ._data import slices_from_cases as slices_from_cases
from ._enhance import ENHANCER_FORMAT as ENHANCER_FORMAT
from ._enhance import ENHANCER_REFERENCE_SIZES as ENHANCER_REFERENCE_SIZES
from ._enhance import EnhancerConfig as EnhancerConfig
from ._enhance import EnhancerTrainer as EnhancerTrainer
from ._enhance import build_enhancer as build_enhancer
from ._enhance import enhance as enhance
from ._enhance import enhancer_condition as enhancer_condition
from ._enhance_apply import enhance_database as enhance_database
from ._enhance_apply import enhance_volume as enhance_volume
from ._enhance_data import EnhancerPairs as EnhancerPairs
from ._enhance_data import TwinCase as TwinCase
from ._enhance_data import enhancer_pairs as enhancer_pairs
from ._enhance_data import find_twins as find_twins
from ._enhance_data import match_cases as match_cases
from ._enhance_run import EnhancerResult as EnhancerResult
from ._enhance_run import enhance_batch as enhance_batch
from ._enhance_run import load_enhancer as load_enhancer
from ._enhance_run import run_enhancer as run_enhancer
from ._glo_data import CaseStack as CaseStack
from ._glo_data import GLOCase as GLOCase
from ._glo_data import stack_cases as stack_cases
from ._glo_material import MaterialCase as MaterialCase
from ._glo_material import MaterialGLOConfig as MaterialGLOConfig
from ._glo_material import MaterialGLOResult as MaterialGLOResult
from ._glo_material import MaterialGLOTrainer as MaterialGLOTrainer
from ._glo_material import build_material_generator as build_material_generator
from ._glo_material import fitted_gain as fitted_gain
from ._glo_material import latent_gaussian as latent_gaussian
from ._glo_material import load_material_cases as load_material_cases
from ._glo_material import load_material_glo as load_material_glo
from ._glo_material import sample_materials as sample_materials
from ._glo_material import train_material_glo as train_material_glo
from ._glo_sample import fit_latent_gaussian as fit_latent_gaussian
from ._glo_sample import generated_design as generated_design
from ._glo_sample import glo_reconstruction as glo_reconstruction
from ._glo_sample import load_shape_glo as load_shape_glo
from ._glo_sample import sample_shapes as sample_shapes
from ._glo_sample import shape_model_checksum as shape_model_checksum
from ._glo_shape import ShapeGLOConfig as ShapeGLOConfig
from ._glo_shape import ShapeGLOTrainer as ShapeGLOTrainer
from ._glo_shape import build_shape_generator as build_shape_generator
from ._glo_shape import masked_soft_dice as masked_soft_dice
from ._glo_shape import project_to_ball as project_to_ball
from ._glo_shape import train_shape_glo as train_shape_glo
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
from ._transformed import TransformedData as TransformedData
from ._transforms import Augmentation as Augmentation
from ._transforms import augment as augment
from ._transforms import normalize as normalize
from ._transforms import resample_in_plane as resample_in_plane
from ._transforms import warp_in_plane as warp_in_plane
from ._translate import TRANSLATION_METHODS as TRANSLATION_METHODS
from ._translate import TranslationConfig as TranslationConfig
from ._translate import TranslationResult as TranslationResult
from ._translate import TranslationTrainer as TranslationTrainer
from ._translate import load_translator as load_translator
from ._translate import run_translation as run_translation
from ._translate import to_unit_range as to_unit_range
from ._translate_apply import slice_scale as slice_scale
from ._translate_apply import translate_database as translate_database
from ._translate_apply import translate_volume as translate_volume
from ._translate_measures import database_slices as database_slices
from ._translate_measures import label_preservation as label_preservation
from ._translate_measures import real_slices as real_slices
from ._translate_measures import realism as realism
from ._translate_measures import segmentation_features as segmentation_features
from ._translate_measures import tissue_ks as tissue_ks
from ._translate_steps import linear_decay_schedule as linear_decay_schedule
