"""jaxsim.io — files: NIfTI, HDF5 population databases, nnU-Net export.

The only part of jaxsim that imports h5py and nibabel.
"""

from ._cases import CaseFiles as CaseFiles
from ._cases import LabelledCase as LabelledCase
from ._cases import find_cases as find_cases
from ._cases import is_population_database as is_population_database
from ._cases import load_case as load_case
from ._cases import load_cases as load_cases
from ._check import check_database as check_database
from ._checkpoint import CheckpointStore as CheckpointStore
from ._database import Database as Database
from ._errors import CorruptDatabaseError as CorruptDatabaseError
from ._errors import Interrupted as Interrupted
from ._errors import OptionError as OptionError
from ._errors import OptionMessage as OptionMessage
from ._errors import OutputExistsError as OutputExistsError
from ._errors import WriteError as WriteError
from ._files import atomic_path as atomic_path
from ._files import check_writable as check_writable
from ._files import write_hook as write_hook
from ._merge import merge_databases as merge_databases
from ._nifti import load_nifti as load_nifti
from ._nifti import read_image_label_h5 as read_image_label_h5
from ._nifti import save_nifti as save_nifti
from ._nnunet import ACDC_LABELS as ACDC_LABELS
from ._nnunet import export_nnunet as export_nnunet
from ._projections import load_projections as load_projections
from ._projections import save_projections as save_projections
from ._rewrite import map_database as map_database
from ._schema import FORMAT as FORMAT
from ._schema import FORMAT_VERSION as FORMAT_VERSION
from ._schema import RECORD_COLUMNS as RECORD_COLUMNS
from ._side import check_side_outputs as check_side_outputs
from ._side import write_statistics as write_statistics
from ._writer import MAX_SEED as MAX_SEED
from ._writer import check_seed as check_seed
from ._writer import check_shard as check_shard
from ._writer import generate_database as generate_database
from ._writer import subject_table as subject_table
