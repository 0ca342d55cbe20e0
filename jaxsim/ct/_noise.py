"""Detector physics: photon counts with quantum and electronic noise, log transform."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsim.kernels.checks import check_range

NOISE_MODELS = ("poisson", "gaussian", "none")


def detected_counts(
    transmission: jax.Array,
    *,
    key: jax.Array,
    i0: float,
    noise: str = "poisson",
    electronic_sigma: float = 0.0,
) -> jax.Array:
    """Noisy detector readings for a beam of ``i0`` photons per pixel and view.

    Args:
        transmission: spectrum-weighted transmitted fraction ``I/I0`` in [0, 1], any
            shape, float.
        key: PRNG key.
        i0: unattenuated photons per detector pixel per view (> 0).
        noise: ``"poisson"`` (photon counting), ``"gaussian"`` (its normal
            approximation, differentiable by reparameterisation) or ``"none"``.
        electronic_sigma: standard deviation of additive electronic noise, counts.

    Returns:
        Counts, same shape and dtype as ``transmission`` (may be <= 0 with electronic
        noise; :func:`log_transform` handles that).
    """
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise must be one of {NOISE_MODELS}; got {noise!r}")
    check_range("i0", i0, low=0.0, unit="photons")
    check_range("electronic_sigma", electronic_sigma, low=0.0, low_inclusive=True)
    mean = i0 * transmission
    k_quantum, k_elec = jax.random.split(key)
    if noise == "poisson":
        counts = jax.random.poisson(k_quantum, mean).astype(transmission.dtype)
    elif noise == "gaussian":
        eps = jax.random.normal(k_quantum, mean.shape, transmission.dtype)
        counts = mean + jnp.sqrt(mean) * eps
    else:
        counts = mean
    eps = jax.random.normal(k_elec, mean.shape, transmission.dtype)
    return counts + electronic_sigma * eps


def log_transform(counts: jax.Array, *, i0: float, floor: float = 0.5) -> jax.Array:
    """Line integrals ``-log(counts / i0)`` from detector counts.

    Counts below ``floor`` (photon starvation, or negative after electronic noise)
    are raised to ``floor`` before the logarithm, as scanners do, so the result is
    finite; the largest possible line integral is ``log(i0 / floor)``.

    Args:
        counts: detector readings, any shape, float.
        i0: the air-scan reading (photons per pixel per view).
        floor: smallest count used, > 0.

    Returns:
        Line integrals, same shape and dtype as ``counts`` (dimensionless).
    """
    check_range("floor", floor, low=0.0)
    check_range("i0", i0, low=0.0, unit="photons")
    return -jnp.log(jnp.maximum(counts, floor) / i0)
