"""Server-side aggregation: FedAvg, FedProx and FedAdam on flat NumPy arrays.

Pure NumPy, so the in-process driver and the Flower ``ServerApp`` compute the
same global network bit for bit. The arithmetic follows Flower 1.41's strategies
(``flwr.serverapp.strategy``): FedAvg's weighted mean accumulates ``w_i / sum w``
times each site's arrays in reply order (sites are ordered by name here, so the
result does not depend on which site answered first); FedProx aggregates as
FedAvg (its proximal term acts in the sites' losses); FedAdam (Reddi et al.,
"Adaptive Federated Optimization", ICLR 2021) treats ``mean - current`` as a
pseudo-gradient with Adam moments ``m``, ``v`` and the step
``eta * sqrt(1 - beta_2^(t+1)) / (1 - beta_1^(t+1))``. A test compares each with
Flower's own strategy on the same replies. Parameters that every site returns
unchanged (a task stage that trains only part of the shared arrays, e.g. Sim-FL's
generators while the U-Net waits) stay exactly as they are, moments included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ._config import STRATEGIES, FederatedConfig
from ._state import check_arrays

__all__ = ["Update", "weighted_average", "aggregate"]


@dataclasses.dataclass(frozen=True)
class Update:
    """One site's answer to a training round.

    Attributes:
        site: the site's name.
        arrays: ``{key: array}`` of the trained parameters (empty for tasks
            that share nothing).
        num_examples: the weight of the site in the average (its training
            slices).
        metrics: scalar training metrics (``loss``, seconds, ...).
    """

    site: str
    arrays: dict
    num_examples: int
    metrics: dict


def weighted_average(
    arrays: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]
) -> dict[str, np.ndarray]:
    """``sum_i (w_i / sum w) * arrays_i`` key by key, accumulated in the given
    order, each key keeping its dtype.

    Raises:
        ValueError: no arrays, a weight that is not finite and > 0, or arrays
            with different keys or shapes.
    """
    if not arrays:
        raise ValueError("weighted_average needs at least one set of arrays")
    weights = [float(w) for w in weights]
    if len(weights) != len(arrays) or not all(
        np.isfinite(w) and w > 0 for w in weights
    ):
        raise ValueError(
            f"weights must be one finite value > 0 per site; got {weights}"
        )
    for a in arrays[1:]:
        check_arrays(a, arrays[0])
    total = sum(weights)
    out: dict[str, np.ndarray] = {}
    for a, w in zip(arrays, weights, strict=True):
        factor = w / total
        for k, v in a.items():
            v = np.asarray(v)
            if k in out:
                out[k] += v * factor
            else:
                out[k] = v * factor
    return {
        k: v.astype(np.asarray(arrays[0][k]).dtype, copy=False) for k, v in out.items()
    }


def aggregate(
    config: FederatedConfig,
    server_round: int,
    current: Mapping[str, np.ndarray],
    updates: Sequence[Update],
    server_state: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The next global parameters from the sites' updates.

    Args:
        config: the run's settings (``strategy`` and FedAdam's constants).
        server_round: the round number, from 1.
        current: the global parameters the sites started from.
        updates: the sites' updates (any order; sorted by site name here).
        server_state: FedAdam's moments ``{"m/KEY": ..., "v/KEY": ...}`` from the
            previous round (``None`` or empty at the first).

    Returns:
        ``(new global parameters, new server state)``.
    """
    if config.strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {STRATEGIES}; got {config.strategy!r}"
        )
    ordered = sorted(updates, key=lambda u: u.site)
    mean = weighted_average(
        [u.arrays for u in ordered], [u.num_examples for u in ordered]
    )
    # parameters that no site changed (a stage of a task that trains part of the
    # shared arrays) stay exactly as they are, with their FedAdam moments
    frozen = {
        k
        for k, x in current.items()
        if k in mean
        and all(np.array_equal(np.asarray(u.arrays[k]), np.asarray(x)) for u in ordered)
    }
    if config.strategy in ("fedavg", "fedprox"):
        return {k: (current[k] if k in frozen else v) for k, v in mean.items()}, {}
    state = dict(server_state or {})
    new, new_state = _fedadam(config, server_round, current, mean, state)
    for k in frozen:
        new[k] = current[k]
        for moment in ("m", "v"):
            if f"{moment}/{k}" in state:
                new_state[f"{moment}/{k}"] = state[f"{moment}/{k}"]
            else:
                new_state.pop(f"{moment}/{k}", None)
    return new, new_state


def _fedadam(config, server_round, current, mean, state):
    check_arrays(mean, current)
    b1, b2 = config.beta_1, config.beta_2
    new, out_state = {}, {}
    eta_norm = (
        config.server_learning_rate
        * np.sqrt(1 - np.power(b2, server_round + 1.0))
        / (1 - np.power(b1, server_round + 1.0))
    )
    for k, x in current.items():
        delta = mean[k] - x
        m = state.get(f"m/{k}", np.zeros_like(delta))
        v = state.get(f"v/{k}", np.zeros_like(delta))
        m = b1 * m + (1 - b1) * delta
        v = b2 * v + (1 - b2) * delta**2
        step = x + eta_norm * m / (np.sqrt(v) + config.tau)
        new[k] = step.astype(np.asarray(x).dtype)
        out_state[f"m/{k}"], out_state[f"v/{k}"] = m, v
    return new, out_state
