"""Argument checks shared by every layer (public home of the kernels' own).

Concrete values are checked eagerly (a ``ValueError`` naming the argument and the
allowed range); traced values yield masks the kernels turn into NaN; the opt-in
checked mode (:func:`checked`, :func:`checked_call`) raises the eager messages
under ``jit`` through ``jax.experimental.checkify``.
"""

from ._checks import check_finite as check_finite
from ._checks import check_finite_array as check_finite_array
from ._checks import check_range as check_range
from ._checks import check_relation as check_relation
from ._checks import checked as checked
from ._checks import checked_call as checked_call
from ._checks import is_concrete as is_concrete
from ._checks import nan_where_invalid as nan_where_invalid
