"""The site side of a round, free of any transport: the in-process driver and
the Flower ``ClientApp`` both call these functions.

A site reads its folder once per process (cached), trains with the registered
task and keeps the task's site-local state in memory and, for resuming, on its
own disk (``state_dir``, an orbax checkpoint per round). Nothing but the
update's parameters, its weight and scalar metrics is returned for sending.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import jax
import numpy as np

from jaxsim.io import CheckpointStore
from jaxsim.train import SliceData

from ._aggregate import Update
from ._config import FederatedConfig
from ._local import preprocessing
from ._sites import Site, load_site
from ._tasks import get_task

__all__ = ["site_data", "client_train", "client_evaluate", "LocalStateStore"]

_SITES: dict[tuple, tuple[Site, SliceData]] = {}


def site_data(config: FederatedConfig, site_dir: str | os.PathLike):
    """``(Site, training SliceData)`` of a site folder under ``config`` (read
    and resampled once per process).

    Raises:
        SiteError: the site cannot take part (no cases, unreadable file, ...).
    """
    path = Path(site_dir).absolute()
    key = (
        str(path),
        config.data_spacing,
        tuple(sorted((config.label_map or {}).items())),
        config.test_fraction,
        config.seed,
        config.shape,
        config.spacing,
    )
    if key not in _SITES:
        site = load_site(
            path, spacing=config.data_spacing, label_map=config.label_map,
            test_fraction=config.test_fraction, seed=config.seed,
        )  # fmt: skip
        images, labels = site.slices(preprocessing(config))
        _SITES[key] = (site, SliceData(images, labels, kind="real"))
    return _SITES[key]


def peak_memory_mb() -> float:
    """This process's peak resident memory, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class LocalStateStore:
    """A site's own state across rounds, on the site's disk (orbax).

    Args:
        directory: the site's state folder (``None``: memory only).
    """

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = None if directory is None else Path(directory)

    def save(self, server_round: int, arrays: dict) -> None:
        if self.directory is None or not arrays:
            return
        keys = list(arrays)
        with CheckpointStore(self.directory, max_to_keep=2) as store:
            store.save(
                server_round,
                {f"{i:05d}": np.asarray(arrays[k]) for i, k in enumerate(keys)},
                {
                    "keys": keys,
                    "layout": [
                        [list(np.shape(arrays[k])), str(arrays[k].dtype)] for k in keys
                    ],
                },
            )

    def load(self, server_round: int) -> dict | None:
        """The state saved after ``server_round``, or ``None``."""
        if self.directory is None or not (self.directory / "checkpoints").exists():
            return None
        with CheckpointStore(self.directory, max_to_keep=2) as store:
            if server_round not in store.steps:
                return None
            meta = store.read_meta(server_round)
            like = {
                f"{i:05d}": jax.ShapeDtypeStruct(tuple(s), np.dtype(d))
                for i, (s, d) in enumerate(meta["layout"])
            }
            flat, _ = store.restore(like, server_round)
        return {k: np.asarray(flat[f"{i:05d}"]) for i, k in enumerate(meta["keys"])}


def _previous_state(memory, store: LocalStateStore, server_round: int):
    """The site-local state after round ``server_round - 1``: from memory, else
    from the site's disk; empty before round 1."""
    if memory is not None and memory[0] == server_round - 1:
        return memory[1]
    if server_round == 1:
        return {}
    saved = store.load(server_round - 1)
    return {} if saved is None else saved


def client_train(
    config: FederatedConfig,
    site_dir: str | os.PathLike,
    arrays: dict,
    server_round: int,
    *,
    memory=None,
    state_dir: str | os.PathLike | None = None,
) -> tuple[Update, tuple[int, dict]]:
    """One site's training round.

    Args:
        config: the run's settings.
        site_dir: the site's folder.
        arrays: the global parameters of the round (empty for tasks that
            share nothing).
        server_round: the round, from 1.
        memory: ``(round, local state)`` kept from the previous call, or ``None``.
        state_dir: the site's own folder for its local state across restarts.

    Returns:
        ``(update to send, (round, local state) to keep)``.
    """
    task = get_task(config.task)
    site, data = site_data(config, site_dir)
    store = LocalStateStore(state_dir)
    local = _previous_state(memory, store, server_round)
    if not local and server_round > 1 and not task.shares_arrays:
        raise RuntimeError(
            f"site {site.name!r}: its own network after round {server_round - 1} is "
            f"lost (no state in memory or in {state_dir}); start the run afresh"
        )
    result = task.local_update(config, site, data, arrays, server_round, local)
    store.save(server_round, result.local_state)
    metrics = {**result.metrics, "peak-rss-mb": peak_memory_mb()}
    update = Update(site.name, result.arrays, result.num_examples, metrics)
    return update, (server_round, result.local_state)


def client_evaluate(
    config: FederatedConfig,
    site_dir: str | os.PathLike,
    arrays: dict,
    server_round: int,
    *,
    memory=None,
    state_dir: str | os.PathLike | None = None,
    final: bool = False,
) -> tuple[str, dict[str, float]]:
    """One site's scores on its held-out cases after round ``server_round``:
    ``(site name, metrics)``."""
    task = get_task(config.task)
    site, data = site_data(config, site_dir)
    local = _previous_state(memory, LocalStateStore(state_dir), server_round + 1)
    metrics = task.evaluate(config, site, data, arrays, server_round, local, final)
    metrics["peak-rss-mb"] = peak_memory_mb()
    return site.name, metrics
