"""jaxsim.io — files: NIfTI, HDF5 population databases, nnU-Net export.

The only part of jaxsim that imports h5py and nibabel.
"""

from ._files import atomic_path as atomic_path
from ._files import check_writable as check_writable
from ._nifti import load_nifti as load_nifti
from ._nifti import read_image_label_h5 as read_image_label_h5
from ._nifti import save_nifti as save_nifti
