"""jaxsim.io — files: NIfTI, HDF5 population databases, nnU-Net export.

The only part of jaxsim that imports h5py and nibabel.
"""

from ._database import FORMAT as FORMAT
from ._database import RECORD_COLUMNS as RECORD_COLUMNS
from ._database import Database as Database
from ._database import generate_database as generate_database
from ._database import merge_databases as merge_databases
from ._files import atomic_path as atomic_path
from ._files import check_writable as check_writable
from ._nifti import load_nifti as load_nifti
from ._nifti import read_image_label_h5 as read_image_label_h5
from ._nifti import save_nifti as save_nifti
from ._nnunet import ACDC_LABELS as ACDC_LABELS
from ._nnunet import export_nnunet as export_nnunet
from ._projections import load_projections as load_projections
from ._projections import save_projections as save_projections
