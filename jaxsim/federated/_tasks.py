"""Federated tasks: what the sites compute in a round, behind one interface.

A task turns the global arrays of a round into a site's update (local training
on the site's data) and scores arrays on the site's held-out cases. State that
must stay at a site across rounds (a site-only network; Sim-FL's latents,
material codes, enhancer and rendered slices) is a flat array dictionary the
task returns and receives back; it is kept at the site and never put in a
message.

Registered tasks:

* ``"direct"`` -- Direct-FL: a U-Net trained by the strategy (FedAvg, FedProx,
  FedAdam) on the sites' real slices; at the end each site also fine-tunes the
  global network on its own slices and reports both.
* ``"local"`` -- the site-only baseline: each site trains its own network with
  the same local steps and optimiser, and shares nothing.
* ``"sim-fl"`` -- Federated Simulation (seed paper 004: shared GLO shape and
  material generators, a site-local SPADE enhancer, the U-Net trained by the
  strategy on the rendered data, local fine-tuning;
  :class:`jaxsim.federated._simfl.SimFLTask`).

A new task subclasses :class:`FederatedTask` and calls :func:`register_task`;
:class:`UnavailableTask` registers a name whose parts are missing (it raises
:class:`TaskUnavailableError`).
"""

from __future__ import annotations

import abc
import dataclasses

import numpy as np

from jaxsim.train import SliceData

from ._config import FederatedConfig
from ._local import build_network, evaluate_site, local_train
from ._sites import Site
from ._state import to_arrays

__all__ = [
    "FederatedTask",
    "LocalResult",
    "TaskUnavailableError",
    "get_task",
    "register_task",
    "task_names",
]


class TaskUnavailableError(ValueError):
    """A registered task whose parts this version of jaxsim does not have."""


@dataclasses.dataclass(frozen=True)
class LocalResult:
    """A site's result of one round's local update.

    Attributes:
        arrays: parameters to send (empty when the task shares nothing).
        num_examples: the site's weight (its training slices).
        metrics: scalar metrics (``loss``, ``seconds``).
        local_state: arrays that stay at the site until the next round.
    """

    arrays: dict
    num_examples: int
    metrics: dict
    local_state: dict


class FederatedTask(abc.ABC):
    """The site-side computation of a federated task.

    ``shares_arrays``: whether the sites send parameters for aggregation.
    """

    name: str = ""
    shares_arrays: bool = True

    @abc.abstractmethod
    def initial_arrays(self, config: FederatedConfig) -> dict[str, np.ndarray]:
        """The global arrays of round 1 (empty when nothing is shared)."""

    def network_arrays(self, arrays: dict) -> dict:
        """The segmentation network's part of the global arrays (exported as
        ``RUN_DIR/model``); all of them by default."""
        return arrays

    @abc.abstractmethod
    def local_update(
        self,
        config: FederatedConfig,
        site: Site,
        data: SliceData,
        arrays: dict,
        server_round: int,
        local_state: dict,
    ) -> LocalResult:
        """Arrays in, local training on the site's data, arrays out."""

    @abc.abstractmethod
    def evaluate(
        self,
        config: FederatedConfig,
        site: Site,
        data: SliceData,
        arrays: dict,
        server_round: int,
        local_state: dict,
        final: bool,
    ) -> dict[str, float]:
        """Scores on the site's held-out cases (``final``: the last round)."""


class DirectTask(FederatedTask):
    """Direct-FL: the strategy trains one U-Net on the sites' real slices."""

    name = "direct"

    def initial_arrays(self, config):
        return to_arrays(build_network(config))

    def local_update(self, config, site, data, arrays, server_round, local_state):
        mu = config.proximal_mu if config.strategy == "fedprox" else 0.0
        new, metrics = local_train(
            config, site, data, arrays, server_round=server_round,
            steps=config.local_steps, mu=mu,
        )  # fmt: skip
        return LocalResult(new, len(data), metrics, {})

    def evaluate(self, config, site, data, arrays, server_round, local_state, final):
        return scores_with_finetune(config, site, data, arrays, server_round, final)


def scores_with_finetune(config, site, data, arrays, server_round, final) -> dict:
    """The network ``arrays`` scored on the site's held-out cases and, in the
    last round, also after ``finetune_steps`` local steps on the site's real
    slices (``ft-`` scores)."""
    out = evaluate_site(config, site, arrays, distances=final)
    if final and config.finetune_steps:
        tuned, _ = local_train(
            config, site, data, arrays, server_round=server_round,
            steps=config.finetune_steps, purpose="finetune",
        )  # fmt: skip
        scores = evaluate_site(config, site, tuned, distances=final)
        out.update({f"ft-{k}": v for k, v in scores.items() if k != "num-examples"})
    return out


class LocalTask(FederatedTask):
    """Site-only training: each site's own network, nothing shared."""

    name = "local"
    shares_arrays = False

    def initial_arrays(self, config):
        return {}

    def local_update(self, config, site, data, arrays, server_round, local_state):
        start = local_state or to_arrays(build_network(config))
        new, metrics = local_train(
            config, site, data, start, server_round=server_round,
            steps=config.local_steps,
        )  # fmt: skip
        return LocalResult({}, len(data), metrics, new)

    def evaluate(self, config, site, data, arrays, server_round, local_state, final):
        if not local_state:
            raise ValueError(
                f"site {site.name!r} has no network of its own to evaluate (the "
                "local task evaluates after a training round)"
            )
        return evaluate_site(config, site, local_state, distances=final)


class UnavailableTask(FederatedTask):
    """A task whose building blocks are not in this version."""

    def __init__(self, name: str, needs: str):
        self.name, self.needs = name, needs

    def _refuse(self):
        raise TaskUnavailableError(
            f"federated task {self.name!r} is not available yet: it needs "
            f"{self.needs}; available tasks: {available_tasks()}"
        )

    def initial_arrays(self, config):
        self._refuse()

    def local_update(self, config, site, data, arrays, server_round, local_state):
        self._refuse()

    def evaluate(self, config, site, data, arrays, server_round, local_state, final):
        self._refuse()


_TASKS: dict[str, FederatedTask] = {}


def register_task(task: FederatedTask, *, replace: bool = False) -> None:
    """Add a task to the registry under ``task.name``.

    Raises:
        ValueError: the name is taken and ``replace`` is not set.
    """
    if not task.name:
        raise ValueError("a task needs a non-empty name")
    if task.name in _TASKS and not replace and _TASKS[task.name] is not task:
        raise ValueError(f"a federated task named {task.name!r} is registered already")
    _TASKS[task.name] = task


def task_names() -> tuple[str, ...]:
    """Every registered task name (available or not)."""
    return tuple(_TASKS)


def available_tasks() -> tuple[str, ...]:
    return tuple(n for n, t in _TASKS.items() if not isinstance(t, UnavailableTask))


def get_task(name: str) -> FederatedTask:
    """The registered task ``name``.

    Raises:
        ValueError: no such task.
        TaskUnavailableError: the task is registered but cannot run yet.
    """
    try:
        task = _TASKS[name]
    except KeyError:
        raise ValueError(f"task must be one of {task_names()}; got {name!r}") from None
    if isinstance(task, UnavailableTask):
        task._refuse()
    return task


register_task(DirectTask())
register_task(LocalTask())


def _register_simfl():
    from ._simfl import SimFLTask

    register_task(SimFLTask())


_register_simfl()
