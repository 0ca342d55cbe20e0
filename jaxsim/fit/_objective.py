"""The MAP objective: a distribution-matching likelihood plus literature priors.

Parameters are optimised unconstrained. PD, T1 and T2 go through the tissue
properties' bijection of :mod:`jaxsim.parameters` (the ranges of
:data:`jaxsim.mr.PROPERTY_RANGES`: every step is a physically valid tissue, T2 <= T1
included) and the flip through the sequence's (:data:`jaxsim.mr.SEQUENCE_RANGES`);
the fit's own positive quantities (scale, sigma, partial-volume widths, class
heterogeneity) are log-parameterised and the bias coefficients are raw. The
priors are Gaussian in the logs of the physical values (whatever the
optimiser's coordinates):

* PD, T1, T2 of every fitted class: ``log x ~ N(log mean, (std / mean)^2)`` with the
  mean and standard deviation of :func:`jaxsim.mr.default_tissue_properties` and
  :func:`jaxsim.mr.tissue_property_std` (one bSSFP contrast fixes only a
  combination of them; the prior fixes the rest);
* the background class: the ``body`` tissue's means, log standard deviation 0.5
  (it only stands for whatever borders the classes);
* flip (when fitted): log standard deviation 0.1 around the nominal flip;
* bias coefficients: ``N(0, 0.5^2)``; partial-volume widths: ``log w ~ N(log 1 mm,
  1)`` in-plane and ``N(log 2 mm, 1)`` through-plane; class heterogeneity:
  ``log h ~ N(log 0.05, 1.5^2)``; scale: flat;
* sigma: ``log sigma ~ N(log sigma_hat, r^2)`` around the estimate from the
  image's local second differences (:func:`jaxsim.fit.estimate_noise_sigma`,
  relative standard error ``r``, floored at 0.02) when one is given, else flat.
  The histograms alone do not identify the noise: heterogeneity, partial volume
  and bias widen them too, and the quantile match trades them against it.

The data term is the negative log-likelihood of the sorted-sample (quantile) pairs
of each class under independent Laplace errors of scale ``data.real_scale``:
``sum_k sum_i rho(sim_(i) - real_(i)) / s_k`` with ``rho`` a smoothed absolute value
(so the objective has a Hessian), i.e. ``n_k`` times a smoothed Wasserstein-1
distance in units of the class's spread. ``data_weight`` tempers it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.labels import TISSUES
from jaxsim.mr import (
    BSSFPSequence,
    TissueProperties,
    default_tissue_properties,
    tissue_property_std,
)
from jaxsim.parameters import (
    field_from_unconstrained,
    field_to_unconstrained,
)
from jaxsim.parameters import from_unconstrained as parameter_tree
from jaxsim.parameters import to_unconstrained as parameter_vector

from ._data import FitData
from ._model import N_BIAS, FitParameters, render

__all__ = ["Prior", "make_prior", "to_unconstrained", "from_unconstrained"]

_LOG = ("scale", "sigma", "pv_width", "pv_width_z", "texture")
_PRIOR_LOG = ("pd", "t1", "t2", "flip", "sigma", "pv_width", "pv_width_z", "texture")
_SIGMA_REL_FLOOR = 0.02  # floor of the noise estimate's relative standard error
_SMOOTH = 0.02  # rho's smoothing, in units of each class's spread


def to_unconstrained(params: FitParameters, *, fit_flip: bool) -> dict:
    """The optimiser's view: the shared bijections for tissue properties (and
    flip), logs of the fit's positive values, raw bias coefficients."""
    out = {"tissue": parameter_vector(params.tissue())}
    out.update({k: jnp.log(getattr(params, k)) for k in _LOG})
    out["bias"] = params.bias
    if fit_flip:
        out["flip"] = field_to_unconstrained(BSSFPSequence, "flip", params.flip)
    return out


def from_unconstrained(theta: dict, *, flip) -> FitParameters:
    """Inverse of :func:`to_unconstrained`; ``flip`` is used when not fitted."""
    n = theta["tissue"].shape[-1] // 3
    template = TissueProperties(*(jnp.zeros(n, theta["tissue"].dtype),) * 3)
    tissue = parameter_tree(theta["tissue"], template)
    values = {k: jnp.exp(theta[k]) for k in _LOG}
    if "flip" in theta:
        values["flip"] = field_from_unconstrained(BSSFPSequence, "flip", theta["flip"])
    else:
        values["flip"] = jnp.asarray(flip)
    return FitParameters(
        pd=tissue.pd, t1=tissue.t1, t2=tissue.t2, bias=theta["bias"], **values
    )


class Prior:
    """Gaussian prior in the logs of the physical values (bias: raw), with means
    and standard deviations per field."""

    def __init__(self, mean: dict, std: dict):
        self.mean = mean
        self.std = std

    @staticmethod
    def _coordinates(params: FitParameters) -> dict:
        out = {k: jnp.log(getattr(params, k)) for k in _PRIOR_LOG}
        out["bias"] = params.bias
        return out

    def neg_log(self, params: FitParameters, *, fit_flip: bool = True):
        x = self._coordinates(params)
        total = 0.0
        for k, mu in self.mean.items():
            if k == "flip" and not fit_flip:
                continue
            z = (x[k] - mu) / self.std[k]
            total = total + 0.5 * jnp.sum(z * z)
        return total

    def sample(self, key, params: FitParameters, spread: float = 1.0) -> FitParameters:
        """``params`` with each prior coordinate perturbed by ``spread`` prior
        standard deviations (at most 0.7 in log units): restart points."""
        x = self._coordinates(params)
        for i, k in enumerate(sorted(self.mean)):
            noise = jax.random.normal(jax.random.fold_in(key, i), x[k].shape)
            x[k] = x[k] + spread * jnp.minimum(self.std[k], 0.7) * noise
        values = {k: jnp.exp(x[k]) for k in _PRIOR_LOG}
        values["scale"] = params.scale
        values["bias"] = x["bias"]
        return FitParameters(**values)


def make_prior(
    classes,
    *,
    field: float = 1.5,
    flip: float,
    sigma: float | None = None,
    sigma_rel_std: float = 0.02,
    dtype=None,
) -> Prior:
    """The prior of the module docstring for ``classes`` (tissue names).

    ``sigma``: the image-based noise estimate (``None``: a flat prior on sigma);
    ``sigma_rel_std``: its relative standard error.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    mean_t, std_t = default_tissue_properties(field), tissue_property_std(field)
    idx = [TISSUES.index(c) for c in classes] + [TISSUES.index("body")]
    mean, std = {}, {}
    for k in ("pd", "t1", "t2"):
        m = np.asarray(getattr(mean_t, k), np.float64)[idx]
        s = np.asarray(getattr(std_t, k), np.float64)[idx] / m
        s[-1] = 0.5
        mean[k] = jnp.asarray(np.log(m), dtype)
        std[k] = jnp.asarray(np.maximum(s, 1e-3), dtype)
    mean["flip"], std["flip"] = jnp.asarray(np.log(flip), dtype), 0.1
    mean["bias"], std["bias"] = jnp.zeros(N_BIAS, dtype), 0.5
    mean["pv_width"], std["pv_width"] = jnp.asarray(0.0, dtype), 1.0
    mean["pv_width_z"], std["pv_width_z"] = jnp.asarray(np.log(2.0), dtype), 1.0
    mean["texture"] = jnp.full(len(classes), np.log(0.05), dtype)
    std["texture"] = 1.5
    if sigma is not None and np.isfinite(sigma) and sigma > 0:
        mean["sigma"] = jnp.asarray(np.log(sigma), dtype)
        std["sigma"] = max(float(sigma_rel_std), _SIGMA_REL_FLOOR)
    return Prior(mean, std)


def data_term(params: FitParameters, data: FitData, sequence: BSSFPSequence, key):
    """Per-class smoothed W1 misfit (summed over sorted pairs, in class spreads)."""
    image = render(params, data, sequence, key=key)
    terms = []
    for k, sim in enumerate(data.class_values(image)):
        s = data.real_scale[k]
        d = (jnp.sort(sim) - data.real_sorted[k]) / s
        eps = _SMOOTH
        terms.append(jnp.sum(jnp.sqrt(d * d + eps * eps) - eps))
    return jnp.stack(terms)


def make_objective(
    data: FitData,
    sequence: BSSFPSequence,
    prior: Prior,
    *,
    key,
    data_weight: float = 1.0,
):
    """``theta -> negative log posterior`` (up to a constant), a pure function."""

    def objective(theta):
        params = from_unconstrained(theta, flip=sequence.flip)
        nll = jnp.sum(data_term(params, data, sequence, key))
        return data_weight * nll + prior.neg_log(params, fit_flip="flip" in theta)

    return objective
