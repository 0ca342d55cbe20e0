"""Flower apps: the ``ClientApp`` and ``ServerApp`` of jaxsim's federated tasks.

Needs the extra ``federated`` (``pip install "jaxsim-imaging[federated]"``);
importing this module imports ``flwr``. The apps are module-level objects, so
Flower's simulation engine ships them to its actors by reference (each actor
compiles the training step once, not once per message).

Messages (Flower Message API):

* server -> site, ``train``/``evaluate``: ``RecordDict`` with ``"arrays"`` (an
  ``ArrayRecord`` of the global parameters, one NumPy array per parameter path
  of the NNX state) and ``"config"`` (a ``ConfigRecord``: ``"federated"``, the
  run's settings as JSON; ``"server-round"``; ``"final"``; in simulation
  ``"sites"`` and ``"state-dir"``).
* site -> server, ``train``: ``"arrays"`` (the trained parameters; empty for the
  ``local`` task), ``"metrics"`` (a ``MetricRecord``: ``num-examples``, loss,
  seconds, peak memory) and ``"site"`` (a ``ConfigRecord`` with the site's name).
  ``evaluate``: ``"metrics"`` (Dice, HD95, ASSD per structure averaged over the
  site's held-out volumes) and ``"site"``.

No image, label map or per-case value is ever put in a message; a task's
site-local state stays in ``Context.state`` and on the site's own disk.

Which folder a site serves: the SuperNode's node config ``site-dir`` (a
deployment: ``flower-supernode --node-config "site-dir='/data/site'"``), else,
in simulation, entry ``partition-id`` of the ``sites`` list the server sends.
See ``docs/federated.md`` for ``flwr run`` and a SuperLink/SuperNode deployment.
"""

from __future__ import annotations

import os

# Loopback only: no usage reports from Flower or Ray (read when they import).
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
# CPU actors: keep Ray from rewriting the accelerator variables (and warning)
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
# A single-machine Ray cluster on 127.0.0.1 (Ray's own switch for loopback only;
# ``ray.init(_node_ip_address="127.0.0.1")`` is resolved back to the host's IP)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from flwr.app import (  # noqa: E402
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402

from ._aggregate import Update  # noqa: E402
from ._client import client_evaluate, client_train  # noqa: E402
from ._config import FederatedConfig  # noqa: E402
from ._server import Failure, run_rounds  # noqa: E402

__all__ = [
    "client_app",
    "server_app",
    "make_server_app",
    "FlowerTransport",
    "arrays_to_record",
    "record_to_arrays",
    "config_from_run_config",
    "run_flower_simulation",
]

#: ``Context.state`` keys of a site's local state (never sent).
LOCAL_STATE = "jaxsim.local-state"
LOCAL_ROUND = "jaxsim.local-round"


def arrays_to_record(arrays: dict) -> ArrayRecord:
    """``{key: numpy array}`` as an ``ArrayRecord`` (same keys and order)."""
    # np.ascontiguousarray would turn 0-d arrays into shape (1,)
    return ArrayRecord({k: Array(np.asarray(v, order="C")) for k, v in arrays.items()})


def record_to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Inverse of :func:`arrays_to_record`."""
    return {k: a.numpy() for k, a in record.items()}


# ------------------------------------------------------------------------ site
def _site_dir(config: ConfigRecord, context: Context) -> str:
    if "site-dir" in context.node_config:
        return str(context.node_config["site-dir"])
    sites = [s for s in str(config.get("sites", "")).split(os.pathsep) if s]
    partition = context.node_config.get("partition-id")
    if partition is None or not 0 <= int(partition) < len(sites):
        raise ValueError(
            "this SuperNode has no site: give it --node-config \"site-dir='DIR'\" "
            f"(node config {dict(context.node_config)}, {len(sites)} sites sent)"
        )
    return sites[int(partition)]


def _state_dir(config: ConfigRecord, context: Context, site_dir: str):
    if "state-dir" in context.node_config:
        return str(context.node_config["state-dir"])
    root = config.get("state-dir")
    return None if not root else str(Path(str(root)) / Path(site_dir).name)


def _memory(context: Context):
    if LOCAL_ROUND not in context.state:
        return None
    rnd = int(context.state[LOCAL_ROUND]["round"])
    return rnd, record_to_arrays(context.state[LOCAL_STATE])


def _metrics(values: dict) -> MetricRecord:
    return MetricRecord({k: float(v) for k, v in values.items() if v is not None})


def train(msg: Message, context: Context) -> Message:
    """The ``ClientApp``'s train function: a site's local update."""
    cfg = msg.content["config"]
    config = FederatedConfig.loads(str(cfg["federated"]))
    site_dir = _site_dir(cfg, context)
    update, memory = client_train(
        config, site_dir, record_to_arrays(msg.content["arrays"]),
        int(cfg["server-round"]), memory=_memory(context),
        state_dir=_state_dir(cfg, context, site_dir),
    )  # fmt: skip
    context.state[LOCAL_STATE] = arrays_to_record(memory[1])
    context.state[LOCAL_ROUND] = ConfigRecord({"round": memory[0]})
    content = RecordDict(
        {
            "arrays": arrays_to_record(update.arrays),
            "metrics": _metrics(
                {"num-examples": update.num_examples, **update.metrics}
            ),
            "site": ConfigRecord({"name": update.site}),
        }
    )
    return Message(content, reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    """The ``ClientApp``'s evaluate function: scores on held-out cases."""
    cfg = msg.content["config"]
    config = FederatedConfig.loads(str(cfg["federated"]))
    site_dir = _site_dir(cfg, context)
    name, metrics = client_evaluate(
        config, site_dir, record_to_arrays(msg.content["arrays"]),
        int(cfg["server-round"]), memory=_memory(context),
        state_dir=_state_dir(cfg, context, site_dir), final=bool(cfg["final"]),
    )  # fmt: skip
    content = RecordDict(
        {"metrics": _metrics(metrics), "site": ConfigRecord({"name": name})}
    )
    return Message(content, reply_to=msg)


client_app = ClientApp()
client_app.train()(train)
client_app.evaluate()(evaluate)


# ---------------------------------------------------------------------- server
class FlowerTransport:
    """Reaches the sites through a Flower ``Grid``.

    Args:
        grid: the ``ServerApp``'s grid.
        sites: site folders sent to simulated nodes (``None`` in a deployment,
            where each SuperNode names its own).
        state_root: where simulated sites keep their local state.
        expected: nodes to wait for before the first round.
        timeout: seconds to wait for nodes and for each round's replies.
    """

    def __init__(
        self,
        grid: Grid,
        sites=None,
        state_root=None,
        expected: int = 1,
        timeout: float = 3600.0,
    ):
        self.grid = grid
        self.sites = None if sites is None else [str(Path(s).absolute()) for s in sites]
        self.state_root = (
            None if state_root is None else str(Path(state_root).absolute())
        )
        self.expected = int(expected)
        self.timeout = float(timeout)

    def _nodes(self) -> list[int]:
        deadline = time.monotonic() + min(self.timeout, 300.0)
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= self.expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not nodes:
            raise RuntimeError("no SuperNode connected to the SuperLink")
        return nodes

    def _send(self, kind, config, server_round, arrays, final=False):
        values = {
            "federated": config.dumps(),
            "server-round": server_round,
            "final": bool(final),
        }
        if self.sites is not None:
            values["sites"] = os.pathsep.join(self.sites)
        if self.state_root is not None:
            values["state-dir"] = self.state_root
        record = RecordDict(
            {"arrays": arrays_to_record(arrays), "config": ConfigRecord(values)}
        )
        messages = [
            Message(content=record, dst_node_id=n, message_type=kind)
            for n in self._nodes()
        ]
        return list(self.grid.send_and_receive(messages, timeout=self.timeout))

    @staticmethod
    def _failure(reply: Message) -> Failure:
        return Failure(f"node {reply.metadata.src_node_id}", str(reply.error.reason))

    def train(self, config, server_round, arrays):
        updates, failures = [], []
        for reply in self._send(MessageType.TRAIN, config, server_round, arrays):
            if reply.has_error():
                failures.append(self._failure(reply))
                continue
            metrics = dict(reply.content["metrics"])
            n = int(metrics.pop("num-examples"))
            site = str(reply.content["site"]["name"])
            updates.append(
                Update(site, record_to_arrays(reply.content["arrays"]), n, metrics)
            )
        return updates, failures

    def evaluate(self, config, server_round, arrays, final):
        scores, failures = [], []
        replies = self._send(MessageType.EVALUATE, config, server_round, arrays, final)
        for reply in replies:
            if reply.has_error():
                failures.append(self._failure(reply))
                continue
            metrics = dict(reply.content["metrics"])
            scores.append((str(reply.content["site"]["name"]), metrics))
        return scores, failures


def make_server_app(
    config: FederatedConfig,
    sites,
    out,
    *,
    resume=False,
    overwrite=False,
    progress=True,
    log=print,
    results=None,
):
    """A ``ServerApp`` that runs ``config`` over ``sites`` into ``out`` (the
    simulation engine's server; ``results``, a dict, receives the results)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        transport = FlowerTransport(
            grid, sites, Path(out) / "sites", expected=len(sites)
        )
        result = run_rounds(
            config, out, transport, sites=[str(Path(s).absolute()) for s in sites],
            engine="flower", resume=resume, overwrite=overwrite, progress=progress,
            log=log,
        )  # fmt: skip
        if results is not None:
            results.update(result)

    return app


_SCALARS = {"task", "strategy", "rounds", "local-steps", "batch-size", "learning-rate",
            "proximal-mu", "server-learning-rate", "beta-1", "beta-2", "tau",
            "finetune-steps", "model", "spacing", "loss", "augment", "test-fraction",
            "tta", "seed", "shape-rounds", "shape-steps", "material-rounds",
            "material-steps", "invert-steps", "enhancer-steps",
            "sim-subjects"}  # fmt: skip


def config_from_run_config(run_config: dict) -> tuple[FederatedConfig, dict]:
    """The run's settings from a Flower run configuration (``flwr run``,
    ``[tool.flwr.app.config]``): the scalar fields by their hyphenated names,
    ``shape`` and ``data-spacing`` as space-separated numbers, ``model-options``,
    ``label-map`` and sim-fl's ``shape-options``, ``material-options`` and
    ``enhancer-options`` as JSON; plus ``out``, ``sites`` (folders separated by
    ``os.pathsep``; empty in a deployment), ``num-sites``, ``resume``.

    Returns:
        ``(config, {"out", "sites", "num_sites", "resume", "overwrite"})``.
    """
    fields = {}
    for key, value in run_config.items():
        if key in _SCALARS:
            fields[key.replace("-", "_")] = value
    if run_config.get("shape"):
        fields["shape"] = tuple(int(v) for v in str(run_config["shape"]).split())
    if run_config.get("data-spacing"):
        fields["data_spacing"] = tuple(
            float(v) for v in str(run_config["data-spacing"]).split()
        )
    for key in ("model-options", "label-map", "shape-options", "material-options",
                "enhancer-options"):  # fmt: skip
        if run_config.get(key):
            fields[key.replace("-", "_")] = json.loads(str(run_config[key]))
    sites = [s for s in str(run_config.get("sites", "")).split(os.pathsep) if s]
    options = {
        "out": str(run_config.get("out", "federated_run")),
        "sites": sites,
        "num_sites": int(run_config.get("num-sites", len(sites) or 1)),
        "resume": bool(run_config.get("resume", False)),
        "overwrite": bool(run_config.get("overwrite", False)),
    }
    return FederatedConfig(**fields), options


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    """The ``ServerApp`` of ``flwr run``: settings from the run configuration."""
    config, options = config_from_run_config(dict(context.run_config))
    transport = FlowerTransport(
        grid, options["sites"] or None,
        Path(options["out"]) / "sites" if options["sites"] else None,
        expected=options["num_sites"],
    )  # fmt: skip
    run_rounds(
        config, options["out"], transport, sites=options["sites"], engine="flower",
        resume=options["resume"], overwrite=options["overwrite"],
    )  # fmt: skip


def run_flower_simulation(config: FederatedConfig, sites, out, *, resume=False,
                          overwrite=False, progress=True, log=print,
                          num_cpus=None) -> dict:  # fmt: skip
    """Run on Flower's simulation engine (Ray) on this machine: one virtual
    SuperNode per site, loopback only, no runtime package installation.

    Returns:
        The results of :func:`jaxsim.federated.run_rounds`.
    """
    from flwr.simulation import run_simulation

    flwr_log = logging.getLogger("flwr")
    flwr_log.propagate = False  # Flower prints through its own handler, once
    if not progress:
        flwr_log.setLevel(logging.WARNING)
    results: dict = {}
    server = make_server_app(
        config, sites, out, resume=resume, overwrite=overwrite, progress=progress,
        log=log, results=results,
    )  # fmt: skip
    cpus = int(num_cpus or os.cpu_count() or 1)
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False},
    }
    with warnings.catch_warnings():
        # Ray starts its processes by fork + exec, which JAX's warning about
        # fork in a multithreaded process does not apply to
        warnings.filterwarnings(
            "ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning
        )
        run_simulation(
            server_app=server, client_app=client_app, num_supernodes=len(sites),
            backend_config=backend_config,
        )  # fmt: skip
    if not results:
        raise RuntimeError(
            "the Flower simulation ended without results (see the log above)"
        )
    return results
