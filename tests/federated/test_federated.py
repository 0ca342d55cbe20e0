"""jaxsim.federated without Flower: state arrays, aggregation against float64
references, sites and their errors, the in-process driver, resume."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from jaxsim.federated import (
    FederatedConfig,
    SiteError,
    TaskUnavailableError,
    Update,
    aggregate,
    available_tasks,
    build_network,
    from_arrays,
    get_task,
    load_site,
    local_train,
    register_task,
    run_federated,
    site_data,
    split_acdc_sites,
    to_arrays,
    weighted_average,
)


def _random_arrays(rng, layout):
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in layout.items()}


LAYOUT = {"a/kernel": (3, 3, 1, 4), "a/bias": (4,), "b/slope": ()}


def test_network_arrays_round_trip_and_layout_check(tiny):
    config = tiny()
    a = build_network(config)
    b = build_network(config.replace(seed=1))
    arrays = to_arrays(a)
    assert all(v.dtype == np.float32 for v in arrays.values())
    assert any(not np.array_equal(arrays[k], v) for k, v in to_arrays(b).items())
    from_arrays(b, arrays)
    assert all(np.array_equal(arrays[k], v) for k, v in to_arrays(b).items())
    broken = dict(arrays)
    key = next(iter(broken))
    broken[key] = np.zeros((1, 2, 3), np.float32)
    with pytest.raises(ValueError, match=key):
        from_arrays(b, broken)
    with pytest.raises(ValueError, match="missing"):
        from_arrays(b, {k: v for k, v in arrays.items() if k != key})


def test_weighted_average_equals_float64_reference():
    rng = np.random.default_rng(0)
    sets = [_random_arrays(rng, LAYOUT) for _ in range(3)]
    weights = [10, 18, 50]
    got = weighted_average(sets, weights)
    for k in LAYOUT:
        ref = sum(
            np.float64(w) * s[k].astype(np.float64)
            for w, s in zip(weights, sets, strict=True)
        ) / sum(weights)
        np.testing.assert_allclose(got[k], ref, rtol=2e-6, atol=1e-7)
        assert got[k].dtype == np.float32
    same = weighted_average([sets[0]] * 3, [1, 2, 3])  # invariant: a fixed point
    for k in LAYOUT:
        np.testing.assert_allclose(same[k], sets[0][k], rtol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        weighted_average(sets, [1, 0, 1])
    with pytest.raises(ValueError, match="unexpected"):
        weighted_average([sets[0], {**sets[1], "extra": np.ones(2)}], [1, 1])


def test_aggregation_orders_sites_by_name():
    rng = np.random.default_rng(1)
    ups = [Update(n, _random_arrays(rng, LAYOUT), w, {}) for n, w in
           (("b", 3), ("a", 5), ("c", 7))]  # fmt: skip
    config = FederatedConfig()
    one, _ = aggregate(config, 1, ups[0].arrays, ups)
    two, _ = aggregate(config, 1, ups[0].arrays, ups[::-1])
    for k in LAYOUT:
        assert np.array_equal(one[k], two[k])  # bit for bit, whatever the order


def test_fedadam_equals_float64_reference_over_rounds():
    rng = np.random.default_rng(2)
    config = FederatedConfig(strategy="fedadam", server_learning_rate=0.05,
                             beta_1=0.8, beta_2=0.95, tau=1e-2)  # fmt: skip
    current = _random_arrays(rng, LAYOUT)
    ref = {k: v.astype(np.float64) for k, v in current.items()}
    m = {k: np.zeros_like(v) for k, v in ref.items()}
    v_ = {k: np.zeros_like(v) for k, v in ref.items()}
    state = {}
    for rnd in (1, 2, 3):
        ups = [Update(n, _random_arrays(rng, LAYOUT), w, {}) for n, w in
               (("s1", 2), ("s2", 6))]  # fmt: skip
        current, state = aggregate(config, rnd, current, ups, state)
        # Reddi et al. 2021, Algorithm 2 (FedAdam) with Adam's bias correction
        # folded into the step as Flower does
        a, b = (u.arrays for u in ups)
        mean = {k: (2 * a[k].astype(np.float64) + 6 * b[k].astype(np.float64)) / 8
                for k in ref}  # fmt: skip
        for k in ref:
            delta = mean[k] - ref[k]
            m[k] = 0.8 * m[k] + 0.2 * delta
            v_[k] = 0.95 * v_[k] + 0.05 * delta**2
            eta = 0.05 * np.sqrt(1 - 0.95 ** (rnd + 1)) / (1 - 0.8 ** (rnd + 1))
            ref[k] = ref[k] + eta * m[k] / (np.sqrt(v_[k]) + 1e-2)
        ref = {k: ref[k].astype(np.float32).astype(np.float64) for k in ref}
        for k in ref:
            np.testing.assert_allclose(current[k], ref[k], rtol=1e-5, atol=1e-6)
            assert current[k].dtype == np.float32


def test_split_acdc_sites_links_by_group_without_copying(site_factory, tmp_path):
    src = site_factory("acdc", [1, 25, 70])
    sites = split_acdc_sites(src, tmp_path / "split")
    assert sites == {
        "DCM": ["patient001"],
        "HCM": ["patient025"],
        "NOR": ["patient070"],
    }
    files = sorted((tmp_path / "split").rglob("*.h5"))
    assert len(files) == 6 and all(f.is_symlink() for f in files)
    assert all(f.resolve().parent == src.resolve() for f in files)
    manifest = json.loads((tmp_path / "split" / "manifest.json").read_text())
    assert manifest["sites"] == sites
    with pytest.raises(FileExistsError, match="manifest"):
        split_acdc_sites(src, tmp_path / "split")
    split_acdc_sites(src, tmp_path / "split", overwrite=True)


def test_load_site_splits_by_patient_and_by_case(site_factory):
    site = load_site(site_factory("A", [61, 62, 63, 64]), spacing=(10, 4, 4))
    train = {site.phases[c.name][0] for c in site.train}
    test = {site.phases[c.name][0] for c in site.test}
    assert site.split == "patient" and len(test) == 2 and not train & test
    single = load_site(site_factory("B", [5]), spacing=(10, 4, 4))
    assert single.split == "case"
    assert [c.name for c in single.test] == ["patient005_frame02"]
    assert [c.name for c in single.train] == ["patient005_frame01"]


def test_bad_sites_fail_with_errors_naming_them(site_factory, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiteError, match="'empty' has no usable cases"):
        load_site(tmp_path / "empty", spacing=(10, 4, 4))
    folder = site_factory("corrupt", [3, 4])
    (folder / "patient004_frame02.h5").write_bytes(b"not an HDF5 file")
    with pytest.raises(SiteError, match="'corrupt'.*patient004_frame02"):
        load_site(folder, spacing=(10, 4, 4))
    with pytest.raises(SiteError, match="at least 2"):
        load_site(folder / "patient003_frame01.h5", spacing=(10, 4, 4))


def test_an_unavailable_task_refuses_clearly(site_factory, tmp_path, tiny):
    from jaxsim.federated._tasks import _TASKS, UnavailableTask

    register_task(UnavailableTask("needs-more", "a generator this version lacks"))
    try:
        with pytest.raises(TaskUnavailableError, match="generator this version"):
            get_task("needs-more")
        with pytest.raises(TaskUnavailableError, match="available tasks"):
            run_federated(
                tiny(task="needs-more"), [site_factory("A", [1, 2])], tmp_path / "r"
            )
        assert not (tmp_path / "r").exists()
    finally:
        del _TASKS["needs-more"]
    with pytest.raises(ValueError, match="task must be one of"):
        get_task("nope")
    assert "sim-fl" in available_tasks()


def test_fedprox_term_keeps_the_update_near_the_global_network(site_factory, tiny):
    config = tiny(local_steps=4, learning_rate=3e-2)
    site, data = site_data(config, site_factory("A", [1, 2]))
    start = to_arrays(build_network(config))

    def distance(mu):
        new, _ = local_train(config, site, data, start, server_round=1, steps=4, mu=mu)
        return sum(float(np.sum((new[k] - start[k]) ** 2)) for k in start)

    assert distance(50.0) < 0.8 * distance(0.0)


def test_importing_the_package_does_not_import_flower():
    code = (
        "import sys, jaxsim.federated as f\n"
        "assert 'flwr' not in sys.modules and 'ray' not in sys.modules\n"
        "print(f.available_tasks())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('direct', 'local', 'sim-fl')"


def test_in_process_two_sites_two_rounds(site_factory, tmp_path, tiny):
    sites = [site_factory("A", [1, 2], seed=0), site_factory("B", [3, 4], seed=5)]
    config = tiny()
    result = run_federated(config, sites, tmp_path / "run", progress=False, log=None)
    rounds = result["rounds"]
    assert [(r["round"], r["site"]) for r in rounds] == [
        (1, "A"),
        (1, "B"),
        (2, "A"),
        (2, "B"),
    ]
    assert all(r["status"] == "ok" and np.isfinite(r["train-loss"]) for r in rounds)
    assert {r["train-slices"] for r in rounds} == {6}  # 2 training volumes x 3 slices
    table = result["table"]
    assert [(r["site"], r["method"]) for r in table] == [
        ("A", "direct"), ("A", "direct+finetune"),
        ("B", "direct"), ("B", "direct+finetune"),
    ]  # fmt: skip
    for r in table:
        assert 0.0 <= r["dice-mean"] <= 1.0 and "hd95-LV" in r
    initial = to_arrays(build_network(config))
    assert any(not np.allclose(result["arrays"][k], initial[k]) for k in initial)
    out = tmp_path / "run"
    for name in ("federated.json", "sites.csv", "sites.json", "sites.png"):
        assert (out / name).stat().st_size > 0
    saved = (out / "checkpoints").iterdir()
    assert sorted(p.name for p in saved if p.name.isdigit()) == ["1", "2"]
    # the global network is a training run that jaxsim segment reads
    from jaxsim.train import load_run

    model, prep, meta = load_run(out / "model")
    exported = to_arrays(model)
    assert all(np.array_equal(exported[k], v) for k, v in result["arrays"].items())
    assert prep.shape == (16, 16) and meta["data"]["sites"] == ["A", "B"]
    with pytest.raises(FileExistsError, match="holds a federated run"):
        run_federated(config, sites, out, progress=False, log=None)


def test_a_failing_site_does_not_stop_the_others(site_factory, tmp_path, tiny):
    good = site_factory("good", [1, 2])
    (tmp_path / "sites" / "empty").mkdir()
    corrupt = site_factory("corrupt", [3, 4])
    (corrupt / "patient003_frame01.h5").write_bytes(b"\0" * 64)
    config = tiny(rounds=1, finetune_steps=0)
    result = run_federated(
        config, [good, tmp_path / "sites" / "empty", corrupt], tmp_path / "run",
        progress=False, log=None,
    )  # fmt: skip
    status = {r["site"]: r for r in result["table"]}
    assert status["good"]["status"] == "ok"
    assert status["empty"]["status"] == "failed"
    assert (
        "SiteError" in status["empty"]["error"]
        and "'empty'" in status["empty"]["error"]
    )
    assert "patient003_frame01" in status["corrupt"]["error"]
    with pytest.raises(RuntimeError, match="every site failed"):
        run_federated(config, [tmp_path / "sites" / "empty"], tmp_path / "run2",
                      progress=False, log=None)  # fmt: skip


@pytest.mark.parametrize(
    "task", ["direct", pytest.param("local", marks=pytest.mark.integration)]
)
def test_resumed_run_equals_uninterrupted(site_factory, tmp_path, tiny, task):
    sites = [site_factory("A", [1, 2]), site_factory("B", [3, 4], seed=7)]
    config = tiny(task=task, strategy="fedadam" if task == "direct" else "fedavg",
                  finetune_steps=0)  # fmt: skip
    whole = run_federated(config, sites, tmp_path / "whole", progress=False, log=None)
    run_federated(config.replace(rounds=1), sites, tmp_path / "part", progress=False,
                  log=None)  # fmt: skip
    resumed = run_federated(config, sites, tmp_path / "part", resume=True,
                            progress=False, log=None)  # fmt: skip
    for k, v in whole["arrays"].items():
        assert np.array_equal(v, resumed["arrays"][k])
    keys = ("site", "train-loss", "dice-mean")
    assert [[r.get(k) for k in keys] for r in whole["rounds"]] == [
        [r.get(k) for k in keys] for r in resumed["rounds"]
    ]
    with pytest.raises(ValueError, match="configured differently"):
        run_federated(config.replace(local_steps=4), sites, tmp_path / "part",
                      resume=True, progress=False, log=None)  # fmt: skip


def test_local_task_shares_nothing_and_learns_alone(site_factory, tiny):
    config = tiny(task="local", local_steps=20, learning_rate=3e-2)
    task = get_task("local")
    site, data = site_data(config, site_factory("A", [1, 2]))
    assert task.initial_arrays(config) == {}
    first = task.local_update(config, site, data, {}, 1, {})
    assert first.arrays == {} and first.local_state
    second = task.local_update(config, site, data, {}, 2, first.local_state)
    assert second.metrics["loss"] < 0.9 * first.metrics["loss"]  # it learns
    model = from_arrays(build_network(config), second.local_state)
    assert isinstance(model, nnx.Module)


def test_updates_of_another_network_are_refused_not_averaged(tmp_path, tiny):
    from jaxsim.federated import Failure, run_rounds

    config = tiny(rounds=1, finetune_steps=0)
    initial = get_task("direct").initial_arrays(config)

    class Transport:  # one good site, one sending a truncated network
        def train(self, config, server_round, arrays):
            good = {k: v + 1.0 for k, v in arrays.items()}
            bad = dict(list(arrays.items())[:-1])
            return [Update("good", good, 4, {}), Update("bad", bad, 4, {})], []

        def evaluate(self, config, server_round, arrays, final):
            return [("good", {"dice-mean": 0.5, "num-examples": 1})], [
                Failure("bad", "no scores")
            ]

    result = run_rounds(config, tmp_path / "r", Transport(), progress=False, log=None)
    for k, v in initial.items():  # the mean of the good site alone
        np.testing.assert_allclose(result["arrays"][k], v + 1.0, rtol=1e-6)
    bad = [r for r in result["rounds"] if r["site"] == "bad"]
    assert any("update refused" in r["error"] and "missing" in r["error"] for r in bad)
