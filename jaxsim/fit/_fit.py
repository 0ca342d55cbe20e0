"""Fit the simulation to a real image's per-class intensity distributions."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxsim.metrics import sample_distances
from jaxsim.mr import BSSFPSequence, default_tissue_properties, tissue_signals
from jaxsim.phantoms import TISSUES

from ._data import FitData, prepare_data
from ._model import N_BIAS, FitParameters, render
from ._noise import estimate_noise_sigma
from ._objective import (
    from_unconstrained,
    make_objective,
    make_prior,
    to_unconstrained,
)

__all__ = [
    "FitResult",
    "default_parameters",
    "fit_histograms",
    "class_signals",
    "plausibility",
]

#: A fitted PD, T1 or T2 this many prior standard deviations (in log units) from
#: the literature mean is reported as implausible. Fits of real ACDC cases with the
#: right labels reach about 4.5 (myocardial PD near 1.0); swapped labels 6-19.
PLAUSIBLE_Z = 6.0
#: Two classes whose literature signals differ by this factor must appear in the
#: image in the same order (in bSSFP, blood is far brighter than myocardium).
ORDER_RATIO = 1.5

_FD_STEP = 1e-2  # central-difference step of the Hessian, unconstrained units


def class_signals(params: FitParameters, sequence: BSSFPSequence) -> jax.Array:
    """Noise-free signal of each class (bias 1) in real intensity units, ``(n+1,)``."""
    seq = dataclasses.replace(sequence, flip=params.flip)
    return params.scale * jnp.abs(tissue_signals(params.tissue(), seq))


def default_parameters(
    data: FitData, sequence: BSSFPSequence | None = None, *, field: float = 1.5
) -> FitParameters:
    """The "before" simulation: the tissue table's defaults, fitted only in scale.

    Tissue PD/T1/T2 are the literature means at ``field`` (background: ``body``);
    the flip is the sequence's; the receiver scale is the least-squares match of the
    class signals to the real class medians; sigma is half the smallest class
    spread; partial-volume widths 1 mm in-plane, 2 mm through-plane; class
    heterogeneity 0.05; no bias field.
    """
    sequence = BSSFPSequence() if sequence is None else sequence
    props = default_tissue_properties(field)
    idx = jnp.asarray(
        [TISSUES.index(c) for c in data.classes] + [TISSUES.index("body")]
    )
    dtype = data.image.dtype
    pd, t1, t2 = (
        jnp.asarray(getattr(props, k)[idx], dtype) for k in ("pd", "t1", "t2")
    )
    unit = FitParameters(
        pd=pd,
        t1=t1,
        t2=t2,
        flip=jnp.asarray(sequence.flip, dtype),
        scale=jnp.asarray(1.0, dtype),
        sigma=jnp.asarray(1.0, dtype),
        pv_width=jnp.asarray(1.0, dtype),
        pv_width_z=jnp.asarray(2.0, dtype),
        texture=jnp.full(len(data.classes), 0.05, dtype),
        bias=jnp.zeros(N_BIAS, dtype),
    )
    s = class_signals(unit, sequence)[:-1]
    med = jnp.stack([r[r.shape[0] // 2] for r in data.real_sorted])
    scale = jnp.sum(med * s) / jnp.sum(s * s)
    sigma = 0.5 * jnp.min(data.real_scale)
    return dataclasses.replace(unit, scale=scale.astype(dtype), sigma=sigma)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit_histograms`.

    Attributes:
        parameters: MAP :class:`FitParameters` (``n_classes + 1`` tissue entries,
            the last the background).
        laplace_std: standard deviations from the Laplace approximation (inverse
            Hessian of the MAP objective in the unconstrained space, mapped to
            physical units by the delta method); same structure.
        restart_std: standard deviations over the restarts' end points.
        initial: the "before" parameters (:func:`default_parameters`).
        classes: fitted tissue names.
        objective: MAP objective at the optimum.
        restart_objectives: ``(restarts,)`` final objective of every restart.
        history: ``(steps, restarts)`` objective along the optimisation.
        clipped_eigenvalues: Hessian eigenvalues below a small positive floor,
            replaced by their magnitude (or the floor); 0 when the Hessian was
            positive definite.
        metrics: per class ``{"ks_before", "ks_after", "chi2_before", ...}`` between
            the real class intensities and a simulation with a fresh noise key.
        real: ``(nz, ny, nx)`` real crop; before/after: simulated crops.
        data: the prepared :class:`FitData`; sequence: the readout.
        seconds: wall time of the fit.
        warnings: what makes the fit implausible (see :func:`plausibility`); an
            empty tuple when nothing does.
    """

    parameters: FitParameters
    laplace_std: FitParameters
    restart_std: FitParameters
    initial: FitParameters
    classes: tuple[str, ...]
    objective: float
    restart_objectives: np.ndarray
    history: np.ndarray
    clipped_eigenvalues: int
    metrics: dict
    real: np.ndarray
    before: np.ndarray
    after: np.ndarray
    data: FitData
    sequence: BSSFPSequence
    seconds: float
    warnings: tuple[str, ...] = ()

    def signals(self) -> dict[str, float]:
        """Fitted noise-free signal per class, real intensity units."""
        s = np.asarray(class_signals(self.parameters, self.sequence))
        return {c: float(v) for c, v in zip(self.classes, s, strict=False)}

    def parameters_dict(self) -> dict:
        """JSON-ready fitted values with their uncertainties (SI units, rad, mm)."""
        p, lap, rs = self.parameters, self.laplace_std, self.restart_std
        tissues = {}
        for i, name in enumerate((*self.classes, "other")):
            tissues[name] = {
                k: {
                    "value": float(getattr(p, k)[i]),
                    "laplace_std": float(getattr(lap, k)[i]),
                    "restart_std": float(getattr(rs, k)[i]),
                }
                for k in ("pd", "t1", "t2")
            }
        for i, (name, value) in enumerate(self.signals().items()):
            tissues[name]["signal"] = value
            tissues[name]["texture"] = {
                "value": float(p.texture[i]),
                "laplace_std": float(lap.texture[i]),
                "restart_std": float(rs.texture[i]),
            }
        scalars = {
            k: {
                "value": float(getattr(p, k)),
                "laplace_std": float(getattr(lap, k)),
                "restart_std": float(getattr(rs, k)),
            }
            for k in ("flip", "scale", "sigma", "pv_width", "pv_width_z")
        }
        scalars["bias"] = {
            "value": np.asarray(p.bias).tolist(),
            "laplace_std": np.asarray(lap.bias).tolist(),
        }
        return {
            "tissues": tissues,
            **scalars,
            "objective": self.objective,
            "restart_objectives": self.restart_objectives.tolist(),
            "clipped_eigenvalues": self.clipped_eigenvalues,
        }


def plausibility(
    params: FitParameters,
    data: FitData,
    sequence: BSSFPSequence,
    prior,
    *,
    field: float = 1.5,
) -> tuple[str, ...]:
    """What the physics says cannot be right about a fit, as messages.

    Two checks, both against the literature the priors come from:

    * the order of the classes in the image: where the literature properties give
      one class a signal ``ORDER_RATIO`` times another's (LV blood against
      myocardium in bSSFP), the real class medians must agree; swapped or wrong
      labels break it;
    * each fitted PD, T1 and T2 within ``PLAUSIBLE_Z`` prior standard deviations
      (log units) of its literature mean.

    Returns:
        A tuple of one-line messages (empty if nothing is implausible).
    """
    out = []
    expected = np.asarray(
        class_signals(default_parameters(data, sequence, field=field), sequence)
    )[:-1]
    medians = [float(r[r.shape[0] // 2]) for r in data.real_sorted]
    values = dict(zip(data.classes, data.label_values, strict=True))
    for i, a in enumerate(data.classes):
        for j, b in enumerate(data.classes):
            if expected[i] >= ORDER_RATIO * expected[j] and medians[i] <= medians[j]:
                out.append(
                    f"class {a} (label {values[a]}) is not brighter than {b} "
                    f"(label {values[b]}) in the image (medians {medians[i]:.4g} "
                    f"and {medians[j]:.4g}), but its literature signal is "
                    f"{expected[i] / expected[j]:.1f} times larger in this "
                    "sequence: are the labels swapped or wrong?"
                )
    units = {"pd": "", "t1": " s", "t2": " s"}
    for k, unit in units.items():
        x = np.log(np.asarray(getattr(params, k), np.float64))[:-1]
        mean = np.asarray(prior.mean[k], np.float64)[:-1]
        std = np.asarray(prior.std[k], np.float64)
        std = np.full(len(x), float(std)) if std.ndim == 0 else std[:-1]
        z = (x - mean) / std
        for c, name in enumerate(data.classes):
            if abs(z[c]) > PLAUSIBLE_Z:
                out.append(
                    f"fitted {k} of {name} = {np.exp(x[c]):.4g}{unit} lies "
                    f"{abs(z[c]):.1f} prior standard deviations from the literature "
                    f"value {np.exp(mean[c]):.4g}{unit}: physically implausible"
                )
    return tuple(out)


def _hessian_fd(grad, theta, step):
    """Central differences of the exact gradient (reuses the compiled gradient)."""
    vec, unravel = ravel_pytree(theta)
    base = np.asarray(vec, np.float64)
    rows = []
    for i in range(base.size):
        e = np.zeros_like(base)
        e[i] = step
        plus = ravel_pytree(grad(unravel(jnp.asarray(base + e, vec.dtype))))[0]
        minus = ravel_pytree(grad(unravel(jnp.asarray(base - e, vec.dtype))))[0]
        rows.append((np.asarray(plus, np.float64) - np.asarray(minus)) / (2 * step))
    return np.stack(rows)


def _laplace(hess, theta, flip):
    """Posterior std of the physical parameters from the Hessian at ``theta``.

    The covariance in the optimiser's coordinates is the inverse Hessian; the
    physical covariance follows by the delta method through the Jacobian of the
    bijection (:func:`from_unconstrained`).
    """
    vec, unravel = ravel_pytree(theta)
    hess = np.asarray(0.5 * (hess + hess.T), np.float64)
    lam, vecs = np.linalg.eigh(hess)
    # The objective is only piecewise smooth (sorting, a fixed noise draw), so a
    # few eigenvalues can come out negative: use their magnitude (the curvature
    # scale, as saddle-free Newton does) and floor the smallest.
    floor = max(np.abs(lam).max(), 1.0) * 1e-8
    clipped = int(np.sum(lam < floor))
    cov = (vecs / np.maximum(np.abs(lam), floor)) @ vecs.T
    value = from_unconstrained(theta, flip=flip)
    flat_value, unravel_value = ravel_pytree(value)
    jac = jax.jacfwd(
        lambda v: ravel_pytree(from_unconstrained(unravel(v), flip=flip))[0]
    )(vec)
    jac = np.asarray(jac, np.float64)
    std = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, cov, jac), 0.0))
    return unravel_value(jnp.asarray(std, flat_value.dtype)), clipped


def _log_steps(theta, flip):
    """Per coordinate, ``1 / |d log x / d u|`` at ``theta``: multiplying the
    optimiser's steps by it makes a step of ``lr`` change every physical value by
    about ``lr`` relatively, whichever bijection it goes through (Adam's steps
    are about ``lr`` per coordinate; bounded coordinates would otherwise move their
    values slower than log coordinates do)."""
    vec, unravel = ravel_pytree(theta)
    value, unravel_value = ravel_pytree(from_unconstrained(theta, flip=flip))

    def log_value(v):
        p = from_unconstrained(unravel(v), flip=flip)
        return jnp.log(jnp.abs(ravel_pytree(p)[0]) + 1e-30)

    jac = jax.jacfwd(log_value)(vec)  # (n_values, n_coords)
    # each coordinate's own value: the largest entry of its column
    slope = jnp.max(jnp.abs(jac), axis=0)
    factors = jnp.where(slope > 0, 1.0 / jnp.maximum(slope, 1e-6), 1.0)
    factors = jnp.where(jnp.isfinite(factors), jnp.clip(factors, 0.1, 10.0), 1.0)
    theta_like = unravel(factors.astype(vec.dtype))
    theta_like["bias"] = jnp.ones_like(theta_like["bias"])  # raw coordinates
    return theta_like


def _scale_updates(factors):
    """An optax transformation multiplying updates by a fixed tree of factors."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u, f: u * f, updates, factors), state

    return optax.GradientTransformation(init, update)


def _optimiser(objective, steps, learning_rate, factors):
    """One jitted Adam step ``(theta, state) -> (loss, grad, theta, state)``."""
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1)
    opt = optax.chain(optax.adam(schedule), _scale_updates(factors))

    @jax.jit
    def step(theta, state):
        loss, grad = jax.value_and_grad(objective)(theta)
        upd, state = opt.update(grad, state, theta)
        return loss, grad, optax.apply_updates(theta, upd), state

    return opt, step


def _optimise(opt, step, starts, steps, progress):
    """Run every restart (sequentially: vmap over restarts is slower on CPU)."""
    history = np.empty((steps, len(starts)))
    final, ends = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps * len(starts), desc="fit", unit="step")
    for r, theta in enumerate(starts):
        state = opt.init(theta)
        for i in range(steps):
            loss, _, theta, state = step(theta, state)
            history[i, r] = float(loss)
            if bar is not None:
                bar.update(1)
                if i % 20 == 0:
                    bar.set_postfix(restart=r + 1, objective=f"{float(loss):.5g}")
        final.append(float(step(theta, state)[0]))
        ends.append(theta)
    if bar is not None:
        bar.close()
    return ends, np.asarray(final), history


def fit_histograms(
    image,
    labels,
    *,
    key,
    classes: dict[str, int] | None = None,
    spacing=(10.0, 1.5, 1.5),
    sequence: BSSFPSequence | None = None,
    field: float = 1.5,
    fit_flip: bool = False,
    restarts: int = 2,
    steps: int = 200,
    learning_rate: float = 0.05,
    data_weight: float = 1.0,
    margin: int = 8,
    hessian: str = "fd",
    noise: str = "image",
    progress: bool = False,
) -> FitResult:
    """Fit tissue and acquisition parameters to a real image's class histograms.

    The simulation (:func:`jaxsim.fit.render`) is rendered on the real label map;
    the MAP objective (module :mod:`jaxsim.fit._objective`) matches each class's
    simulated intensity distribution to the real one by sorted-sample (quantile)
    matching, with literature priors on PD/T1/T2. ``restarts`` Adam runs (the first
    from the defaults, the others perturbed by the prior) are run together with
    ``vmap``; the best is kept, and its uncertainty comes from the Laplace
    approximation and from the restarts' spread.

    Args:
        image: ``(nz, ny, nx)`` real magnitude image (any linear scale).
        labels: integer label map of the same shape.
        key: PRNG key (noise realisation, restarts).
        classes: tissue name -> label value (default ACDC: RV 1, MYO 2, LV 3).
        spacing: ``(sz, sy, sx)`` mm.
        sequence: bSSFP readout (default TR 3.1 ms, TE 1.55 ms, flip 60 deg).
        field: 1.5 or 3 (tesla) for the priors.
        fit_flip: also fit the flip angle (prior: 10 percent around nominal).
        restarts: number of optimiser runs, >= 1.
        steps: Adam steps per run, >= 1.
        learning_rate: Adam peak learning rate (cosine decay to a tenth), > 0.
        data_weight: tempering of the data term, > 0.
        margin: in-plane voxels around the labels kept in the crop.
        hessian: ``"fd"``, central differences (step 0.01) of the exact gradient,
            which reuses the compiled gradient; or ``"exact"``, ``jax.hessian``
            (a second compilation). The objective is only piecewise smooth in
            the sorted samples, so both are local curvature estimates.
        noise: ``"image"``, anchor the noise sigma to its estimate from the image's
            local second differences (:func:`estimate_noise_sigma`) by a prior of
            the estimate's standard error (the optimisation also starts there);
            ``"fit"``, a flat prior (sigma from the histograms alone, which trade
            it against heterogeneity and partial volume).
        progress: show a tqdm progress bar over the steps.

    Returns:
        :class:`FitResult`.

    Raises:
        ValueError: for invalid inputs (see :func:`prepare_data`) or options.
    """
    t0 = time.perf_counter()
    for name, value, ok in (
        ("restarts", restarts, int(restarts) == restarts and restarts >= 1),
        ("steps", steps, int(steps) == steps and steps >= 1),
        ("learning_rate", learning_rate, learning_rate > 0),
        ("data_weight", data_weight, data_weight > 0),
    ):
        if not ok:
            raise ValueError(
                f"{name} must be positive (an integer for counts); got {value}"
            )
    if hessian not in ("fd", "exact"):
        raise ValueError(f"hessian must be 'fd' or 'exact'; got {hessian!r}")
    if noise not in ("image", "fit"):
        raise ValueError(f"noise must be 'image' or 'fit'; got {noise!r}")
    sequence = BSSFPSequence() if sequence is None else sequence
    tissue_signals(default_tissue_properties(field), sequence)  # eager checks
    data = prepare_data(image, labels, classes=classes, spacing=spacing, margin=margin)
    k_noise, k_start, k_eval = jax.random.split(key, 3)
    initial = default_parameters(data, sequence, field=field)
    sigma_hat, sigma_rel = (
        estimate_noise_sigma(data.image, data.class_map)
        if noise == "image"
        else (None, 0.0)
    )
    prior = make_prior(
        data.classes,
        field=field,
        flip=float(sequence.flip),
        sigma=sigma_hat,
        sigma_rel_std=sigma_rel,
    )
    objective = make_objective(
        data, sequence, prior, key=k_noise, data_weight=data_weight
    )
    if sigma_hat is not None and np.isfinite(sigma_hat) and sigma_hat > 0:
        start = dataclasses.replace(
            initial, sigma=jnp.asarray(sigma_hat, initial.sigma.dtype)
        )
    else:
        start = initial
    starts = [start] + [
        prior.sample(jax.random.fold_in(k_start, r), start) for r in range(1, restarts)
    ]
    starts = [to_unconstrained(p, fit_flip=fit_flip) for p in starts]
    factors = _log_steps(starts[0], sequence.flip)
    opt, step = _optimiser(objective, steps, learning_rate, factors)
    ends, final, history = _optimise(opt, step, starts, steps, progress)
    best = int(np.nanargmin(final))
    theta_best = ends[best]
    params = from_unconstrained(theta_best, flip=sequence.flip)
    if hessian == "exact":
        vec, unravel = ravel_pytree(theta_best)
        hess = jax.hessian(lambda v: objective(unravel(v)))(vec)
    else:
        state = opt.init(theta_best)
        hess = _hessian_fd(lambda t: step(t, state)[1], theta_best, _FD_STEP)
    laplace_std, clipped = _laplace(hess, theta_best, sequence.flip)
    every = jax.tree_util.tree_map(
        lambda *a: jnp.stack(a),
        *(from_unconstrained(t, flip=sequence.flip) for t in ends),
    )
    ddof = 1 if restarts > 1 else 0
    restart_std = jax.tree_util.tree_map(lambda a: jnp.std(a, axis=0, ddof=ddof), every)
    evaluate = jax.jit(lambda p: render(p, data, sequence, key=k_eval))
    before, after = np.asarray(evaluate(initial)), np.asarray(evaluate(params))
    metrics = {}
    class_map = np.asarray(data.class_map)
    for k, name in enumerate(data.classes):
        inside = class_map == k
        real, b, a = (np.asarray(x)[inside] for x in (data.image, before, after))
        mb = sample_distances(np.asarray(real), np.asarray(b))
        ma = sample_distances(np.asarray(real), np.asarray(a))
        metrics[name] = {
            f"{m}_{when}": v[m]
            for m in ("ks", "chi2", "kl")
            for when, v in (("before", mb), ("after", ma))
        }
    warnings = plausibility(params, data, sequence, prior, field=field)
    return FitResult(
        parameters=params,
        laplace_std=laplace_std,
        restart_std=restart_std,
        initial=initial,
        classes=data.classes,
        objective=float(final[best]),
        restart_objectives=final,
        history=history,
        clipped_eigenvalues=clipped,
        metrics=metrics,
        real=np.asarray(data.image),
        before=before,
        after=after,
        data=data,
        sequence=sequence,
        seconds=time.perf_counter() - t0,
        warnings=warnings,
    )
