"""Fréchet distance between two sets of feature vectors (NumPy, float64).

``FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))``: the
2-Wasserstein distance between Gaussians fitted to the two sets (Heusel et al.
2017's FID when the features are Inception-v3's pool features). The trace of the
matrix square root is computed from the eigenvalues of the symmetric
``S_a^(1/2) S_b S_a^(1/2)``, which has the same spectrum as ``S_a S_b``, so no
general (complex) matrix square root is needed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frechet_distance", "gaussian_statistics"]


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, ``N - 1``) of
    ``features (N, D)``, float64.

    Raises:
        ValueError: not a finite ``(N, D)`` array with ``N >= 2``.
    """
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D); got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features must be finite; got NaN or inf")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Args:
        features_a, features_b: ``(N_a, D)`` and ``(N_b, D)`` feature vectors
            (any units; the distance is in those units squared).

    Returns:
        The distance, >= 0 (0 for identical statistics).

    Raises:
        ValueError: mismatched feature sizes, fewer than two vectors, or
            non-finite values.

    Example:
        >>> a = np.random.default_rng(0).normal(size=(500, 4))
        >>> round(frechet_distance(a, a + 1.0), 6)  # the mean shift: 4 x 1^2
        4.0
    """
    mu_a, s_a = gaussian_statistics(features_a)
    mu_b, s_b = gaussian_statistics(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(
            f"feature sizes differ: {mu_a.shape[0]} and {mu_b.shape[0]} dimensions"
        )
    root = _psd_sqrt(s_a)
    cross = np.linalg.eigvalsh(root @ s_b @ root)
    trace_sqrt = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    fd = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * trace_sqrt
    return float(max(fd, 0.0))
