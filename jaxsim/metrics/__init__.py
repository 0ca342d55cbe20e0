"""Metrics (NumPy): distances between intensity samples; segmentation metrics.

Intensity samples (seed 001's judges of simulated against real images):
:func:`ks_distance`, :func:`chi2_distance`, :func:`kl_divergence`,
:func:`sample_distances`.
"""

from ._distribution import chi2_distance as chi2_distance
from ._distribution import kl_divergence as kl_divergence
from ._distribution import ks_distance as ks_distance
from ._distribution import sample_distances as sample_distances

__all__ = [
    "chi2_distance",
    "kl_divergence",
    "ks_distance",
    "sample_distances",
]
