"""Entry points: a federated run in process (no Ray, no Flower) or on Flower's
simulation engine, with the same site and server functions.

The in-process driver visits the sites one after another in one Python process
and hands their updates to the same round loop as the Flower ``ServerApp``;
for the same seed both reach the same global network (a test checks it).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._client import client_evaluate, client_train
from ._config import FederatedConfig
from ._server import Failure, run_rounds
from ._tasks import get_task

__all__ = ["InProcessTransport", "run_federated", "ENGINES"]

#: ``"flower"``: Flower's simulation engine (Ray actors; needs the extra
#: ``federated``); ``"inprocess"``: one process, no Ray.
ENGINES = ("flower", "inprocess")


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class InProcessTransport:
    """Reaches the sites by calling :func:`client_train` and
    :func:`client_evaluate` in this process.

    Args:
        sites: the site folders.
        state_root: folder under which each site keeps its local state
            (``state_root/<site name>``); ``None``: memory only.
    """

    def __init__(self, sites, state_root: str | os.PathLike | None = None):
        self.sites = [Path(s) for s in sites]
        self.state_root = None if state_root is None else Path(state_root)
        self._memory: dict[Path, tuple[int, dict]] = {}

    def _state_dir(self, site: Path):
        return None if self.state_root is None else self.state_root / site.name

    def train(self, config, server_round, arrays):
        updates, failures = [], []
        for site in self.sites:
            try:
                update, memory = client_train(
                    config, site, arrays, server_round,
                    memory=self._memory.get(site), state_dir=self._state_dir(site),
                )  # fmt: skip
            except Exception as err:  # a failing site must not stop the others
                failures.append(Failure(site.name, _reason(err)))
                continue
            self._memory[site] = memory
            updates.append(update)
        return updates, failures

    def evaluate(self, config, server_round, arrays, final):
        scores, failures = [], []
        for site in self.sites:
            try:
                scores.append(
                    client_evaluate(
                        config,
                        site,
                        arrays,
                        server_round,
                        memory=self._memory.get(site),
                        state_dir=self._state_dir(site),
                        final=final,
                    )  # fmt: skip
                )
            except Exception as err:
                failures.append(Failure(site.name, _reason(err)))
        return scores, failures


def _check_sites(sites) -> list[Path]:
    sites = [Path(s) for s in sites]
    if not sites:
        raise ValueError("sites must name at least one site folder")
    names = [s.name for s in sites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(
            f"site folder names must differ (they name the sites); {dupes} repeat"
        )
    return sites


def run_federated(
    config: FederatedConfig,
    sites,
    out: str | os.PathLike,
    *,
    engine: str = "inprocess",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
    num_cpus: int | None = None,
) -> dict:
    """Run a federated task over site folders into ``out``.

    Args:
        config: the run's settings (``config.task``, ``config.strategy``, ...).
        sites: the site folders (each read by :func:`jaxsim.io.find_cases`;
            their folder names name the sites).
        out: the run folder (see :func:`run_rounds` for its contents; each
            site's local state goes to ``out/sites/<name>``).
        engine: ``"inprocess"`` or ``"flower"`` (Flower's simulation engine on
            this machine, loopback only, no runtime package installation).
        resume: continue an interrupted run from its last round.
        overwrite: start afresh in a folder holding a run.
        progress: progress bar over rounds.
        log: per-round lines (``None``: silent).
        num_cpus: CPUs given to the Flower engine (default: all).

    Returns:
        The results of :func:`run_rounds`.

    Raises:
        ValueError: no sites, repeated site names, unknown engine.
        TaskUnavailableError: a registered task that cannot run yet.
        ImportError: ``engine="flower"`` without the extra ``federated``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")
    get_task(config.task)
    sites = _check_sites(sites)
    out = Path(out)
    if engine == "flower":
        try:
            from .flower import run_flower_simulation
        except ImportError as err:
            raise ImportError(
                f"engine 'flower' needs Flower ({err}); install the extra: pip "
                "install 'jaxsim-imaging[federated]', or use engine 'inprocess'"
            ) from err

        return run_flower_simulation(
            config, sites, out, resume=resume, overwrite=overwrite,
            progress=progress, log=log, num_cpus=num_cpus,
        )  # fmt: skip
    transport = InProcessTransport(sites, out / "sites")
    return run_rounds(
        config, out, transport, sites=[str(s.absolute()) for s in sites],
        engine=engine, resume=resume, overwrite=overwrite, progress=progress, log=log,
    )  # fmt: skip
