"""Noise level from the image's local high-frequency residual.

The histogram widths of the classes do not pin the noise down: additive noise,
voxel heterogeneity, partial volume and the bias field all widen them, and the
sorted-sample match trades one for another. The noise is white, while the class
signal, the partial-volume mixing and the bias field are smooth, so the second
difference of neighbouring voxels of one class, ``x[i-1] - 2 x[i] + x[i+1]``
(variance ``6 sigma^2`` for white noise, linear trends removed), is dominated by
the noise. Per class (the background included), a robust variance of those second
differences along y and x is ``sigma^2`` plus that class's own voxel-scale
heterogeneity; the smallest over the classes, pooled with the classes that
agree with it within two standard errors, is the estimate. Voxels below
``4 sigma`` are left out (Rician, not Gaussian, at low SNR: air and lung), and
the estimate is refined once with that threshold.
"""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_noise_sigma"]

_MAD = 1.4826  # MAD -> standard deviation of a Gaussian
_MIN_TRIPLES = 200


def _second_differences(image, class_map, floor):
    """Per class, in-plane second differences of same-class triples above floor."""
    out = {}
    for axis in (1, 2):
        a = np.moveaxis(image, axis, -1)
        c = np.moveaxis(class_map, axis, -1)
        left, mid, right = a[..., :-2], a[..., 1:-1], a[..., 2:]
        same = (c[..., :-2] == c[..., 1:-1]) & (c[..., 1:-1] == c[..., 2:])
        bright = np.minimum(np.minimum(left, mid), right) > floor
        d = (left - 2 * mid + right)[same & bright]
        for k in np.unique(c[..., 1:-1][same & bright]):
            pick = c[..., 1:-1][same & bright] == k
            out.setdefault(int(k), []).append(d[pick])
    return {k: np.concatenate(v) for k, v in out.items()}


def _mad_sigma(d):
    return _MAD * np.median(np.abs(d - np.median(d))) / np.sqrt(6.0)


def _robust_sigma(image, class_map, floor):
    diffs = [
        d
        for d in _second_differences(image, class_map, floor).values()
        if d.size >= _MIN_TRIPLES
    ]
    if not diffs:
        return np.inf, 0
    est = np.array([_mad_sigma(d) for d in diffs])
    err = np.array([1.17 / np.sqrt(d.size) for d in diffs])
    # Pool every class consistent (within two standard errors) with the smallest,
    # so that a small class's chance low value does not decide alone.
    low = int(np.argmin(est))
    limit = est[low] * (1.0 + 2.0 * np.hypot(err, err[low]))
    pooled = np.concatenate(
        [d for d, e, m in zip(diffs, est, limit, strict=True) if e <= m]
    )
    return _mad_sigma(pooled), pooled.size


def estimate_noise_sigma(image, class_map) -> tuple[float, float]:
    """Noise standard deviation per real/imaginary component of a magnitude image.

    Args:
        image: ``(nz, ny, nx)`` magnitude image.
        class_map: ``(nz, ny, nx)`` integer class per voxel (background included).

    Returns:
        ``(sigma, rel_std)``: the estimate and its relative standard error
        (that of a MAD over the triples used, ``1.17 / sqrt(n)``); ``(nan, nan)``
        when no class has enough triples.
    """
    image = np.asarray(image, np.float64)
    class_map = np.asarray(class_map)
    sigma, count = _robust_sigma(image, class_map, -np.inf)
    if not np.isfinite(sigma):
        return float("nan"), float("nan")
    refined, n = _robust_sigma(image, class_map, 4.0 * sigma)
    if np.isfinite(refined):
        sigma, count = refined, n
    return float(sigma), float(1.17 / np.sqrt(count))
