"""The server side: the round loop, aggregation, checkpoints and resume.

One loop serves every engine: it asks a *transport* to run the sites' training
and evaluation of a round -- the in-process driver calls the site functions
directly, the Flower ``ServerApp`` sends messages through its ``Grid`` -- then
aggregates, scores and checkpoints. The global network (and FedAdam's moments)
is saved with orbax after every round, so an interrupted run resumes at the next
round and reaches the result of one that never stopped.

A site that fails (no cases, a corrupt file, an error in training) is reported
in the round's rows with its error; the round goes on with the others. A round
in which every site fails stops the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Protocol

import jax
import numpy as np

from jaxsim.io import CheckpointStore, atomic_path

from ._aggregate import Update, aggregate
from ._client import peak_memory_mb
from ._config import FederatedConfig
from ._local import export_network
from ._report import write_report
from ._tasks import get_task

__all__ = ["Transport", "Failure", "run_rounds", "RUN_FORMAT"]

RUN_FORMAT = "jaxsim-federated"


@dataclasses.dataclass(frozen=True)
class Failure:
    """A site that did not answer a round: who (site name or node) and why."""

    site: str
    reason: str


class Transport(Protocol):
    """How the server reaches the sites for one round."""

    def train(
        self, config: FederatedConfig, server_round: int, arrays: dict
    ) -> tuple[list[Update], list[Failure]]: ...

    def evaluate(
        self, config: FederatedConfig, server_round: int, arrays: dict, final: bool
    ) -> tuple[list[tuple[str, dict]], list[Failure]]: ...


def _pack(arrays: dict, prefix: str) -> tuple[dict, list[str]]:
    keys = list(arrays)
    return {f"{prefix}{i:05d}": np.asarray(arrays[k]) for i, k in enumerate(keys)}, keys


def _layout(arrays: dict) -> list:
    return [[list(np.shape(v)), str(np.asarray(v).dtype)] for v in arrays.values()]


def _save(store, server_round, arrays, server_state, meta):
    g, g_keys = _pack(arrays, "g")
    s, s_keys = _pack(server_state, "s")
    state = {"round": np.asarray(server_round, np.int64), **g, **s}
    store.save(
        server_round,
        state,
        {
            **meta,
            "round": server_round,
            "global_keys": g_keys,
            "global_layout": _layout(arrays),
            "server_keys": s_keys,
            "server_layout": _layout(server_state),
        },
    )


def _restore(store):
    meta = store.read_meta()
    like = {"round": jax.ShapeDtypeStruct((), np.int64)}
    for prefix, keys, layout in (
        ("g", meta["global_keys"], meta["global_layout"]),
        ("s", meta["server_keys"], meta["server_layout"]),
    ):
        for i, (shape, dtype) in enumerate(layout):
            like[f"{prefix}{i:05d}"] = jax.ShapeDtypeStruct(
                tuple(shape), np.dtype(dtype)
            )
        del keys
    flat, meta = store.restore(like)
    arrays = {
        k: np.asarray(flat[f"g{i:05d}"]) for i, k in enumerate(meta["global_keys"])
    }
    server_state = {
        k: np.asarray(flat[f"s{i:05d}"]) for i, k in enumerate(meta["server_keys"])
    }
    return int(flat["round"]), arrays, server_state, meta


def _check_run_dir(out: Path, config: FederatedConfig, resume: bool, overwrite: bool):
    marker = out / "federated.json"
    if marker.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{out} holds a federated run; resume it or choose another folder "
            "(overwrite=True starts afresh)"
        )
    if resume and marker.exists():
        saved = FederatedConfig.from_json(json.loads(marker.read_text())["config"])
        if saved.replace(rounds=config.rounds) != config:
            raise ValueError(
                f"the run in {out} was configured differently; resume it with its "
                "own options (only the number of rounds may change)"
            )
    if overwrite and not resume:
        import shutil

        for name in ("checkpoints", "sites"):
            shutil.rmtree(out / name, ignore_errors=True)


def run_rounds(
    config: FederatedConfig,
    out: str | os.PathLike,
    transport: Transport,
    *,
    sites: list[str] | None = None,
    engine: str = "inprocess",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> dict:
    """Run ``config.rounds`` federated rounds through ``transport`` into ``out``.

    ``out`` receives ``federated.json`` (configuration, sites, every round's
    per-site rows, timings), ``checkpoints/`` (orbax: the global network after
    each round, FedAdam's moments, the history), ``sites.csv``/``sites.json``
    (the per-site table of the last round), ``sites.png`` and, for tasks that
    share a network, ``model/`` (the global network as a training run folder:
    ``jaxsim segment --model OUT/model``).

    Args:
        config: the run's settings.
        out: the run folder.
        transport: reaches the sites.
        sites: site folders (recorded in ``federated.json``).
        engine: recorded name of the engine.
        resume: continue from the last checkpoint in ``out``.
        overwrite: start afresh in a folder that holds a run.
        progress: a progress bar over rounds.
        log: where per-round lines go (``None``: nowhere).

    Returns:
        ``{"config", "sites", "rounds": [per-site rows], "round_seconds",
        "table": [final per-site rows], "arrays": final global parameters}``.

    Raises:
        FileExistsError: ``out`` holds a run and neither flag is set.
        RuntimeError: every site failed in a round.
    """
    from tqdm.auto import tqdm

    task = get_task(config.task)
    out = Path(out)
    _check_run_dir(out, config, resume, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda *_: None)
    history: list[dict] = []
    round_seconds: list[float] = []
    server_state: dict = {}
    start = 0
    with CheckpointStore(out, max_to_keep=2) as store:
        if resume and store.latest is not None:
            start, arrays, server_state, meta = _restore(store)
            history = list(meta["history"])
            round_seconds = list(meta["round_seconds"])
        else:
            arrays = task.initial_arrays(config)
        header = {
            "format": RUN_FORMAT,
            "config": config.to_json(),
            "sites": [str(s) for s in (sites or [])],
            "engine": engine,
        }
        _write_json(out / "federated.json", {**header, "rounds": history})
        bar = tqdm(
            total=config.rounds, initial=min(start, config.rounds), desc="rounds",
            unit="round", disable=not progress,
        )  # fmt: skip
        for rnd in range(start + 1, config.rounds + 1):
            t0 = time.perf_counter()
            final = rnd == config.rounds
            updates, failures = transport.train(config, rnd, arrays)
            updates, refused = _acceptable(updates, arrays, task.shares_arrays)
            failures = failures + refused
            if not updates:
                reasons = "; ".join(f"{f.site}: {f.reason}" for f in failures)
                raise RuntimeError(f"every site failed in round {rnd}: {reasons}")
            if task.shares_arrays:
                arrays, server_state = aggregate(
                    config, rnd, arrays, updates, server_state
                )
            scores, eval_failures = transport.evaluate(config, rnd, arrays, final)
            seconds = time.perf_counter() - t0
            rows = _round_rows(config, rnd, updates, scores, failures + eval_failures)
            history += rows
            round_seconds.append(seconds)
            _save(store, rnd, arrays, server_state,
                  {"history": history, "round_seconds": round_seconds,
                   "config": config.to_json()})  # fmt: skip
            _write_json(out / "federated.json", {**header, "rounds": history,
                        "round_seconds": round_seconds,
                        "server_peak_rss_mb": peak_memory_mb()})  # fmt: skip
            bar.update(1)
            log(_round_line(rnd, config.rounds, rows, seconds))
        bar.close()
    table = write_report(out, config, history)
    if task.shares_arrays:
        names = sorted({r["site"] for r in history if r["status"] == "ok"})
        export_network(config, task.network_arrays(arrays), out / "model", sites=names)
    return {
        **header,
        "rounds": history,
        "round_seconds": round_seconds,
        "table": table,
        "arrays": arrays,
    }


def _acceptable(updates, arrays, shares: bool):
    """Updates that can be aggregated, and failures for the others (arrays of
    another network, a weight below 1): one bad site does not spoil the round."""
    from ._state import check_arrays

    good, bad = [], []
    for u in updates:
        try:
            if shares:
                check_arrays(u.arrays, arrays)
            elif u.arrays:
                raise ValueError("the task shares nothing, yet arrays were sent")
            if not u.num_examples >= 1:
                raise ValueError(f"num-examples must be >= 1; got {u.num_examples}")
        except ValueError as err:
            bad.append(Failure(u.site, f"update refused: {err}"))
            continue
        good.append(u)
    return good, bad


def _round_rows(config, rnd, updates, scores, failures) -> list[dict]:
    by_site: dict[str, dict] = {}
    for u in updates:
        by_site.setdefault(u.site, {}).update(
            {"train-slices": u.num_examples,
             **{f"train-{k}": v for k, v in u.metrics.items()}}
        )  # fmt: skip
    for site, metrics in scores:
        metrics = dict(metrics)
        metrics["test-volumes"] = metrics.pop("num-examples", None)
        by_site.setdefault(site, {}).update(metrics)
    rows = []
    for site in sorted(by_site):
        rows.append({"round": rnd, "task": config.task, "site": site,
                     "status": "ok", **by_site[site]})  # fmt: skip
    first: dict[str, str] = {}
    for f in failures:  # a site failing to train fails to evaluate too: say it once
        first.setdefault(f.site, f.reason)
    for site, reason in first.items():
        if site in by_site:  # trained, then failed to evaluate (or the reverse)
            row = next(r for r in rows if r["site"] == site)
            row.update(status="failed", error=reason)
            continue
        rows.append({"round": rnd, "task": config.task, "site": site,
                     "status": "failed", "error": reason})  # fmt: skip
    return rows


def _round_line(rnd, rounds, rows, seconds) -> str:
    parts = []
    for r in rows:
        if r["status"] != "ok":
            parts.append(f"{r['site']} failed")
        elif "dice-mean" in r:
            parts.append(f"{r['site']} Dice {r['dice-mean']:.3f}")
    return f"round {rnd}/{rounds} ({seconds:.1f} s): " + ", ".join(parts)


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path, overwrite=True, what="federated results") as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")
