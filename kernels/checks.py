"""Eager argument checks shared by every layer (public home of the kernels' own).

Checks run on concrete values and are skipped for tracers, so code stays
branch-free inside ``jit`` while a user calling it eagerly gets a clear error
naming the argument and the allowed range.
"""

from ._checks import check_finite as check_finite
from ._checks import check_finite_array as check_finite_array
from ._checks import check_range as check_range
from ._checks import is_concrete as is_concrete
