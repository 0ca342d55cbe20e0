"""The Flower apps: the RecordDicts a site sends (privacy), aggregation against
Flower's own strategies, and (slow) the simulation engine against the
in-process driver. Skipped without the extra ``federated``."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import (  # noqa: E402
    ConfigRecord,
    Context,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)

from jaxsim.federated import (  # noqa: E402
    FederatedConfig,
    SiteError,
    Update,
    aggregate,
    build_network,
    flower,  # noqa: E402
    run_federated,
    site_data,
    to_arrays,
)


def _message(kind, content, node=7):
    meta = Metadata(
        run_id=1, message_id="m", src_node_id=0, dst_node_id=node,
        reply_to_message_id="", group_id="", created_at=time.time(), ttl=600.0,
        message_type=kind,
    )  # fmt: skip
    return Message(content=content, metadata=meta)


def _request(config, arrays, rnd=1, final=False):
    return RecordDict(
        {
            "arrays": flower.arrays_to_record(arrays),
            "config": ConfigRecord(
                {"federated": config.dumps(), "server-round": rnd, "final": final}
            ),
        }
    )


def _context(site_dir, state_dir=None):
    node = {"site-dir": str(site_dir)}
    if state_dir is not None:
        node["state-dir"] = str(state_dir)
    return Context(
        run_id=1, node_id=7, node_config=node, state=RecordDict(), run_config={}
    )


def _private_shapes(config, site_dir):
    """Shapes of everything private at a site: volumes, slices, the stack of
    training slices and a per-case latent table of any width."""
    site, data = site_data(config, site_dir)
    shapes = set()
    for case in site.train + site.test:
        shapes |= {case.image.shape, case.image.shape[1:], case.labels.shape}
    shapes |= {tuple(data.images.shape), tuple(data.images.shape[1:])}
    n_cases = len(site.train) + len(site.test)
    return shapes, {n_cases, len(site.train), len(data)}


def _sent_arrays(reply: Message):
    return [
        a.numpy() for rec in reply.content.array_records.values() for a in rec.values()
    ]


def test_direct_train_reply_holds_only_network_parameters(site_factory, tiny):
    config = tiny()
    folder = site_factory("A", [61, 62, 63, 64])  # 4 training volumes, 12 slices
    initial = to_arrays(build_network(config))
    msg = _message(MessageType.TRAIN, _request(config, initial))
    reply = flower.client_app(msg, _context(folder))
    assert not reply.has_error()
    content = reply.content
    assert set(content.keys()) == {"arrays", "metrics", "site"}
    sent = flower.record_to_arrays(content["arrays"])
    assert {k: v.shape for k, v in sent.items()} == {
        k: v.shape for k, v in initial.items()
    }
    shapes, counts = _private_shapes(config, folder)
    for arr in _sent_arrays(reply):
        assert arr.shape not in shapes
        assert arr.ndim < 2 or arr.shape[0] not in counts  # no per-case table
    metrics = content["metrics"]
    assert all(isinstance(v, int | float) for v in metrics.values())  # scalars only
    assert metrics["num-examples"] == 12
    assert dict(content["site"]) == {"name": "A"}


def test_local_task_keeps_its_network_at_the_site(site_factory, tiny, tmp_path):
    config = tiny(task="local")
    folder = site_factory("A", [61, 62, 63, 64])
    context = _context(folder, tmp_path / "state")
    reply = flower.client_app(
        _message(MessageType.TRAIN, _request(config, {})), context
    )
    assert not reply.has_error()
    assert _sent_arrays(reply) == []  # nothing leaves the site
    local = flower.record_to_arrays(context.state[flower.LOCAL_STATE])
    assert local and set(local) == set(to_arrays(build_network(config)))
    # the evaluation reply carries scores, no weights
    ev = flower.client_app(
        _message(MessageType.EVALUATE, _request(config, {}, final=True)), context
    )
    assert _sent_arrays(ev) == []
    assert set(ev.content.keys()) == {"metrics", "site"}
    assert 0.0 <= ev.content["metrics"]["dice-mean"] <= 1.0
    for value in ev.content["metrics"].values():
        assert isinstance(value, int | float)
    # the site's state survives a restart of its process on its own disk
    fresh = _context(folder, tmp_path / "state")
    again = flower.client_app(
        _message(MessageType.TRAIN, _request(config, {}, 2)), fresh
    )
    assert not again.has_error()


@pytest.mark.slow  # compiles the shape generator's rasteriser step
def test_sim_fl_reply_holds_only_the_shared_networks(site_factory, tiny):
    config = tiny(
        task="sim-fl", rounds=3, shape_rounds=1, material_rounds=1, shape_steps=2,
        enhancer_steps=0,  # 16 px slices: too small for an enhancer
        shape_options={"warm_steps": 2, "hidden": 24, "latent_dim": 5,
                       "grid_shape": [3, 3, 3], "supersample": [1, 1, 1]},
        material_options={"grid": 4, "width": 4, "latent_dim": 3},
    )  # fmt: skip
    folder = site_factory("A", [61, 62, 63, 64])  # 2 training patients
    initial = flower_task_arrays(config)
    context = _context(folder)
    reply = flower.client_app(_message(MessageType.TRAIN, _request(config, initial)),
                              context)  # fmt: skip
    assert not reply.has_error()
    sent = flower.record_to_arrays(reply.content["arrays"])
    assert {k: v.shape for k, v in sent.items()} == {
        k: v.shape for k, v in initial.items()
    }
    local = flower.record_to_arrays(context.state[flower.LOCAL_STATE])
    assert local["shape/latents"].shape == (2, 5)  # the site's latent table
    shapes, counts = _private_shapes(config, folder)
    for arr in _sent_arrays(reply):
        assert arr.shape not in shapes
        assert arr.ndim < 2 or arr.shape[0] not in counts | {2}  # no per-case table
        for value in local.values():
            assert not (arr.shape == value.shape and np.array_equal(arr, value))


def flower_task_arrays(config):
    from jaxsim.federated import get_task

    return get_task(config.task).initial_arrays(config)


def test_a_bad_site_raises_a_clear_error_in_the_client(tmp_path, tiny):
    (tmp_path / "empty").mkdir()
    config = tiny()
    msg = _message(
        MessageType.TRAIN, _request(config, to_arrays(build_network(config)))
    )
    with pytest.raises(SiteError, match="'empty' has no usable cases"):
        flower.client_app(msg, _context(tmp_path / "empty"))


def _replies(updates, current):
    out = []
    for u in updates:
        content = RecordDict(
            {
                "arrays": flower.arrays_to_record(u.arrays),
                "metrics": MetricRecord({"num-examples": u.num_examples}),
            }
        )
        out.append(_message(MessageType.TRAIN, content))
    return out


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "fedadam"])
def test_aggregation_equals_flowers_strategies(strategy):
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

    rng = np.random.default_rng(0)
    layout = {"a/kernel": (3, 3, 1, 4), "a/bias": (4,)}
    current = {k: rng.standard_normal(s).astype(np.float32) for k, s in layout.items()}
    config = FederatedConfig(strategy=strategy)
    reference = {
        "fedavg": lambda: FedAvg(),
        "fedprox": lambda: FedProx(proximal_mu=config.proximal_mu),
        "fedadam": lambda: FedAdam(
            eta=config.server_learning_rate,
            beta_1=config.beta_1,
            beta_2=config.beta_2,
            tau=config.tau,
        ),  # fmt: skip
    }[strategy]()
    reference.current_arrays = dict(current)
    ours, state = dict(current), {}
    for rnd in (1, 2):
        ups = [
            Update(
                name,
                {
                    k: rng.standard_normal(s).astype(np.float32)
                    for k, s in layout.items()
                },
                n,
                {},
            )  # fmt: skip
            for name, n in (("a", 6), ("b", 18), ("c", 50))
        ]
        ours, state = aggregate(config, rnd, ours, ups, state)
        theirs, _ = reference.aggregate_train(rnd, _replies(ups, current))
        theirs = flower.record_to_arrays(theirs)
        if strategy == "fedadam":
            reference.current_arrays = theirs
        for k in layout:
            np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6, atol=1e-7)


_ENGINE_RUN = """
import json, sys, numpy as np
from jaxsim.federated import FederatedConfig, run_federated
config = FederatedConfig.loads(sys.argv[1])
sites, out = json.loads(sys.argv[2]), sys.argv[3]
result = run_federated(config, sites, out, engine="flower", progress=False,
                       log=None, num_cpus=2)
np.savez(out + "/arrays.npz", **result["arrays"])
"""


@pytest.mark.slow
def test_flower_engine_equals_in_process_driver(site_factory, tmp_path, tiny):
    import json
    import subprocess
    import sys

    sites = [site_factory("A", [1, 2]), site_factory("B", [3, 4], seed=5)]
    config = tiny(finetune_steps=0)
    out = tmp_path / "flower"
    # a process of its own: Ray's workers and file handles end with it
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE_RUN, config.dumps(),
         json.dumps([str(s) for s in sites]), str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    engine = dict(np.load(out / "arrays.npz"))
    rounds = json.loads((out / "federated.json").read_text())["rounds"]
    assert json.loads((out / "federated.json").read_text())["engine"] == "flower"
    local = run_federated(config, sites, tmp_path / "inproc", progress=False, log=None)
    for k, v in local["arrays"].items():
        np.testing.assert_allclose(engine[k], v, rtol=1e-5, atol=1e-6)
    for a, b in zip(rounds, local["rounds"], strict=True):
        assert a["site"] == b["site"]
        np.testing.assert_allclose(a["train-loss"], b["train-loss"], rtol=1e-4)
        np.testing.assert_allclose(a["dice-mean"], b["dice-mean"], atol=1e-6)
    assert seconds < 900


def test_run_config_of_flwr_run_gives_the_settings():
    config, options = flower.config_from_run_config(
        {"task": "local", "rounds": 4, "local-steps": 7, "strategy": "fedprox",
         "proximal-mu": 0.5, "shape": "32 48", "data-spacing": "10 1.5 1.5",
         "model-options": '{"channels": [4, 8], "strides": [2]}',
         "label-map": '{"1": 1, "2": 2, "3": 3}', "out": "/tmp/x",
         "sites": "a:b:c", "resume": True}
    )  # fmt: skip
    assert config == FederatedConfig(
        task="local", rounds=4, local_steps=7, strategy="fedprox", proximal_mu=0.5,
        shape=(32, 48), data_spacing=(10, 1.5, 1.5),
        model_options={"channels": [4, 8], "strides": [2]},
        label_map={1: 1, 2: 2, 3: 3},
    )  # fmt: skip
    assert options == {"out": "/tmp/x", "sites": ["a", "b", "c"], "num_sites": 3,
                       "resume": True, "overwrite": False}  # fmt: skip
    with pytest.raises(ValueError, match="rounds"):
        flower.config_from_run_config({"rounds": 0})
    config, _ = flower.config_from_run_config(
        {"task": "sim-fl", "rounds": 9, "shape-rounds": 2, "enhancer-steps": 0,
         "sim-subjects": 5, "shape-options": '{"latent_dim": 4}',
         "enhancer-options": '{"ngf": 8}'}
    )  # fmt: skip
    assert config == FederatedConfig(
        task="sim-fl", rounds=9, shape_rounds=2, enhancer_steps=0, sim_subjects=5,
        shape_options={"latent_dim": 4}, enhancer_options={"ngf": 8},
    )  # fmt: skip


@pytest.mark.slow
def test_flower_engine_goes_on_without_a_failing_site(site_factory, tmp_path, tiny):
    import json
    import subprocess
    import sys

    good = site_factory("good", [1, 2])
    (tmp_path / "sites" / "empty").mkdir()
    out = tmp_path / "flower"
    config = tiny(rounds=1, finetune_steps=0)
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE_RUN, config.dumps(),
         json.dumps([str(good), str(tmp_path / "sites" / "empty")]), str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((out / "sites.json").read_text())
    ok = [r for r in table if r["status"] == "ok"]
    failed = [r for r in table if r["status"] == "failed"]
    assert [r["site"] for r in ok] == ["good"]
    assert failed and all("'empty' has no usable cases" in r["error"] for r in failed)
