"""Differentiable distances between samples and between images (JAX).

Used as fitting losses: they are smooth (or piecewise smooth) functions of the
sample values, so ``jax.grad`` flows through them to simulator parameters. The exact
reporting metrics (chi-squared, KL, KS on hard histograms) are in
:mod:`jaxsim.metrics`.

One-dimensional optimal transport between two samples is quantile matching: the
``p``-Wasserstein distance is ``(int_0^1 |F^-1(q) - G^-1(q)|^p dq)^(1/p)`` with the
empirical quantile functions, computed exactly from the sorted samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "quantile_pairs",
    "wasserstein_distance",
    "soft_histogram",
]


def quantile_pairs(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs and weights that integrate two empirical quantile functions.

    The quantile function of an ``n``-point sample is constant on ``(i/n, (i+1)/n]``;
    merging the breakpoints of both samples splits ``(0, 1]`` into intervals on
    which both are constant.

    Args:
        n, m: sample sizes (static), >= 1.

    Returns:
        ``(i, j, w)``: sorted-sample indices into the first and second sample and the
        interval lengths (summing to 1), NumPy arrays of length ``<= n + m - 1``.
    """
    if n < 1 or m < 1:
        raise ValueError(f"sample sizes must be >= 1; got n={n}, m={m}")
    # Exact rational breakpoints k/n and l/m on a common denominator n*m.
    cuts = np.union1d(np.arange(1, n + 1) * m, np.arange(1, m + 1) * n)
    lower = np.concatenate([[0], cuts[:-1]])
    mid = (lower + cuts) / 2.0  # interval midpoints, times n*m
    i = np.floor(mid / m).astype(np.int64)
    j = np.floor(mid / n).astype(np.int64)
    return i, j, (cuts - lower) / float(n * m)


def wasserstein_distance(x, y, *, p: float = 1.0, presorted: bool = False):
    """``p``-Wasserstein distance between two 1D samples (exact, differentiable).

    Args:
        x: ``(n,)`` sample (any shape, flattened), e.g. simulated intensities.
        y: ``(m,)`` sample; sizes may differ.
        p: order, >= 1 (1: earth mover's distance; 2: quadratic).
        presorted: both samples are already sorted ascending (skips the sorts).

    Returns:
        Scalar ``W_p``. Its gradient with respect to ``x`` is the gradient through
        the sort (the optimal transport plan of 1D samples).

    Example:
        >>> float(wasserstein_distance(jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0])))
        1.0
    """
    if not p >= 1:
        raise ValueError(f"p must be >= 1; got {p}")
    x, y = jnp.ravel(x), jnp.ravel(y)
    if not presorted:
        x, y = jnp.sort(x), jnp.sort(y)
    if x.shape == y.shape:
        d = jnp.abs(x - y)
        w = 1.0 / x.shape[0]
        return (jnp.sum(w * d**p)) ** (1.0 / p)
    i, j, w = quantile_pairs(x.shape[0], y.shape[0])
    d = jnp.abs(x[i] - y[j])
    return jnp.sum(jnp.asarray(w, x.dtype) * d**p) ** (1.0 / p)


def soft_histogram(x, edges, *, bandwidth, weights=None):
    """Differentiable histogram: each value spread over the bins by a Gaussian.

    The mass a value ``v`` puts in bin ``[e_k, e_{k+1})`` is
    ``Phi((e_{k+1} - v)/h) - Phi((e_k - v)/h)``, which tends to the hard bin
    indicator as ``bandwidth -> 0``.

    Args:
        x: values, any shape (flattened).
        edges: ``(n_bins + 1,)`` increasing bin edges.
        bandwidth: Gaussian standard deviation ``h`` (same unit as ``x``), > 0.
        weights: optional per-value weights, same shape as ``x``.

    Returns:
        ``(n_bins,)`` bin masses (sum ``<= sum(weights)``; mass outside the edges is
        dropped).
    """
    x = jnp.ravel(x)
    edges = jnp.asarray(edges)
    cdf = jax.scipy.stats.norm.cdf((edges[None, :] - x[:, None]) / bandwidth)
    mass = cdf[:, 1:] - cdf[:, :-1]
    if weights is not None:
        mass = mass * jnp.ravel(weights)[:, None]
    return jnp.sum(mass, axis=0)
