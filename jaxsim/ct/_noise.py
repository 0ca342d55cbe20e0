"""Detector physics: photon counts with quantum and electronic noise, log transform.

Photon counting is Poisson, a discrete draw with no useful derivative: JAX would
return a zero gradient silently. So a Poisson draw refuses differentiation with an
error that names the differentiable alternatives: ``noise="gaussian"``, the
reparameterised normal approximation ``I0 T + sqrt(I0 T) eps`` (exact mean and
variance, accurate for the counts of CT, which are large), or ``noise="none"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsim.kernels.checks import check_range

NOISE_MODELS = ("poisson", "gaussian", "none")

POISSON_GRADIENT_ERROR = (
    "Poisson photon counts are a discrete draw and have no derivative (JAX would "
    "return zero silently): differentiate through noise='gaussian' (the "
    "reparameterised approximation I0*T + sqrt(I0*T)*eps) or noise='none', or "
    "wrap the mean counts in jax.lax.stop_gradient to treat the draw as constant"
)


@jax.custom_jvp
def _poisson(key, mean):
    return jax.random.poisson(key, mean).astype(mean.dtype)


@_poisson.defjvp
def _poisson_jvp(primals, tangents):
    raise ValueError(POISSON_GRADIENT_ERROR)


def _safe_sqrt(x):
    """``sqrt(x)`` for ``x >= 0`` with a finite (zero) derivative at 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def detected_counts(
    transmission: jax.Array,
    *,
    key: jax.Array,
    i0,
    noise: str = "poisson",
    electronic_sigma=0.0,
) -> jax.Array:
    """Noisy detector readings for a beam of ``i0`` photons per pixel and view.

    Args:
        transmission: spectrum-weighted transmitted fraction ``T = I/I0`` in
            [0, 1], any shape, float.
        key: PRNG key.
        i0: unattenuated photons per detector pixel per view (> 0); may be traced.
        noise: ``"poisson"`` (photon counting; raises under differentiation),
            ``"gaussian"`` (``I0 T + sqrt(I0 T) eps``, differentiable by
            reparameterisation) or ``"none"``.
        electronic_sigma: standard deviation of additive electronic noise, counts
            (>= 0); may be traced.

    Returns:
        Counts, same shape and dtype as ``transmission`` (may be <= 0 with electronic
        noise; :func:`log_transform` handles that).

    Raises:
        ValueError: unknown ``noise``, invalid concrete ``i0`` or
            ``electronic_sigma``; differentiating a Poisson draw.
    """
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise must be one of {NOISE_MODELS}; got {noise!r}")
    check_range("i0", i0, low=0.0, unit="photons")
    check_range("electronic_sigma", electronic_sigma, low=0.0, low_inclusive=True)
    dtype = transmission.dtype
    mean = jnp.asarray(i0, dtype) * transmission
    k_quantum, k_elec = jax.random.split(key)
    if noise == "poisson":
        counts = _poisson(k_quantum, mean)
    elif noise == "gaussian":
        eps = jax.random.normal(k_quantum, mean.shape, dtype)
        counts = mean + _safe_sqrt(mean) * eps
    else:
        counts = mean
    eps = jax.random.normal(k_elec, mean.shape, dtype)
    return counts + jnp.asarray(electronic_sigma, dtype) * eps


def log_transform(counts: jax.Array, *, i0, floor: float = 0.5) -> jax.Array:
    """Line integrals ``-log(counts / i0)`` from detector counts.

    Counts below ``floor`` (photon starvation, or negative after electronic noise)
    are raised to ``floor`` before the logarithm, as scanners do, so the result is
    finite; the largest possible line integral is ``log(i0 / floor)``.

    Args:
        counts: detector readings, any shape, float.
        i0: the air-scan reading (photons per pixel per view); may be traced.
        floor: smallest count used, > 0.

    Returns:
        Line integrals, same shape and dtype as ``counts`` (dimensionless).
    """
    check_range("floor", floor, low=0.0)
    check_range("i0", i0, low=0.0, unit="photons")
    dtype = counts.dtype
    return -jnp.log(jnp.maximum(counts, floor) / jnp.asarray(i0, dtype))
