"""Sim-FL (``task="sim-fl"``): settings, the server keeping untouched parameters,
the sites' case grouping, the three shared networks, and a whole tiny run
driven round by round (what travels, what stays at a site)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxsim.federated import (
    FederatedConfig,
    Update,
    aggregate,
    build_network,
    centralised_shape_glo,
    client_evaluate,
    client_train,
    from_arrays,
    get_task,
    load_site,
)
from jaxsim.federated._simfl import glo_cases, material_config, shape_config
from jaxsim.train import build_material_generator, build_shape_generator

from .conftest import SPACING

PREFIXES = ("shape/", "material/", "unet/")


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"rounds must exceed .* = 5 for sim-fl"):
        FederatedConfig(task="sim-fl", rounds=5)
    FederatedConfig(task="direct", rounds=5)  # the GLO stages concern sim-fl only
    FederatedConfig(task="sim-fl", rounds=3, shape_rounds=1, material_rounds=1)
    with pytest.raises(ValueError, match="shape_steps must be an integer >= 1"):
        FederatedConfig(shape_steps=0)
    with pytest.raises(ValueError, match="sim_subjects must be an integer >= 1"):
        FederatedConfig(sim_subjects=-2)
    with pytest.raises(ValueError, match="material_options must be a dict"):
        FederatedConfig(material_options=[("grid", 8)])
    with pytest.raises(ValueError, match="latent_dim"):
        shape_config(FederatedConfig(shape_options={"latent_dim": 0}))
    # a sim-fl run checks its generator and enhancer options up front
    with pytest.raises(ValueError, match="shape_options: .*latent_dim"):
        FederatedConfig(task="sim-fl", rounds=9, shape_options={"latent_dim": 0})
    with pytest.raises(ValueError, match="enhancer_options: .*'nfg'"):
        FederatedConfig(task="sim-fl", rounds=9, enhancer_options={"nfg": 8})
    # options survive the JSON the messages carry (lists become tuples again)
    config = FederatedConfig(
        task="sim-fl", rounds=9, shape_options={"grid_shape": [4, 4, 4]}
    )
    again = FederatedConfig.loads(config.dumps())
    assert again == config
    assert shape_config(again).grid_shape == (4, 4, 4)


def _arrays(rng, **shapes):
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam"])
def test_parameters_no_site_changed_stay_exact_with_their_moments(strategy):
    rng = np.random.default_rng(5)
    config = FederatedConfig(strategy=strategy, server_learning_rate=0.05)
    current = _arrays(rng, a=(3, 4), b=(5,))
    state = {}
    # round 1: both keys change, FedAdam's moments of b become non-zero
    ups = [Update(s, _arrays(rng, a=(3, 4), b=(5,)), w, {}) for s, w in
           (("s1", 1), ("s2", 2))]  # fmt: skip
    current, state = aggregate(config, 1, current, ups, state)
    # round 2: the sites return b exactly as received (weights 1 and 2: their
    # mean in float32 need not reproduce b bit for bit)
    ups = [
        Update(s, {"a": rng.standard_normal((3, 4)).astype(np.float32),
                   "b": current["b"].copy()}, w, {})
        for s, w in (("s1", 1), ("s2", 2))
    ]  # fmt: skip
    new, new_state = aggregate(config, 2, current, ups, state)
    assert np.array_equal(new["b"], current["b"]) and new["b"].dtype == np.float32
    mean_a = (ups[0].arrays["a"].astype(np.float64) + 2 * ups[1].arrays["a"]) / 3
    if strategy == "fedavg":
        np.testing.assert_allclose(new["a"], mean_a, rtol=1e-6, atol=1e-7)
        assert new_state == {}
    else:
        for m in ("m", "v"):
            assert np.array_equal(new_state[f"{m}/b"], state[f"{m}/b"])
        b1, b2, eta, tau = 0.9, 0.99, 0.05, 1e-3
        delta = mean_a - current["a"]
        m_a = b1 * state["m/a"] + (1 - b1) * delta
        v_a = b2 * state["v/a"] + (1 - b2) * delta**2
        step = eta * np.sqrt(1 - b2**3) / (1 - b1**3)
        ref = current["a"] + step * m_a / (np.sqrt(v_a) + tau)
        np.testing.assert_allclose(new["a"], ref, rtol=1e-5, atol=1e-6)


def test_cases_are_grouped_by_patient(site_factory):
    # patient 1: ED + ES; patient 2: ED + ES; a lone frame stands as its own case
    folder = site_factory("A", [1, 2])
    (folder / "patient002_frame02.h5").unlink()
    site = load_site(folder, spacing=SPACING, test_fraction=0.5)
    cases = glo_cases(site.train + site.test, site.phases)
    names = [c[0].name for c in cases]
    assert names == ["patient001", "patient002"]
    glo, ed, es = cases[0]
    assert ed.name == "patient001_frame01" and es.name == "patient001_frame02"
    assert np.array_equal(glo.labels_ed, ed.labels)
    assert np.array_equal(glo.labels_es, es.labels)
    glo, ed, es = cases[1]
    assert ed.name == "patient002_frame01" and es is None and glo.labels_es is None


def test_three_networks_travel_and_the_unet_is_exported():
    config = FederatedConfig(
        task="sim-fl", rounds=6,
        shape_options={"hidden": 8, "latent_dim": 4, "grid_shape": [3, 3, 3]},
        material_options={"grid": 4, "width": 4, "latent_dim": 3},
        model_options={"channels": [4, 4], "strides": [2], "num_res_units": 0},
    )  # fmt: skip
    task = get_task("sim-fl")
    arrays = task.initial_arrays(config)
    assert all(k.startswith(PREFIXES) for k in arrays)
    part = {p: {k[len(p) :]: v for k, v in arrays.items() if k.startswith(p)}
            for p in PREFIXES}  # fmt: skip
    assert all(part[p] for p in PREFIXES)
    # each part is exactly one network's parameters
    from_arrays(build_shape_generator(shape_config(config)), part["shape/"])
    from_arrays(build_material_generator(material_config(config)), part["material/"])
    from_arrays(build_network(config), part["unet/"])
    assert task.network_arrays(arrays).keys() == part["unet/"].keys()


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    return any(not np.array_equal(before[k], after[k]) for k in keys)


@pytest.mark.slow
def test_a_tiny_run_round_by_round(site_factory):
    """Two sites, one round per stage: which network each stage trains, what a
    site sends and keeps, the generator's held-out reconstruction, the U-Net's
    scores before and after fine-tuning."""
    config = FederatedConfig(
        task="sim-fl", rounds=3, shape_rounds=1, material_rounds=1,
        shape_steps=2, material_steps=2, invert_steps=2, enhancer_steps=2,
        sim_subjects=2, local_steps=2, finetune_steps=2, batch_size=2,
        shape=(32, 32), spacing=4.0, data_spacing=SPACING, tta=False,
        augment=False, learning_rate=1e-2,
        shape_options={"warm_steps": 3, "hidden": 8, "latent_dim": 4,
                       "grid_shape": [3, 3, 3], "supersample": [1, 1, 1]},
        material_options={"grid": 4, "width": 4, "latent_dim": 3,
                          "loss_spacing": 8.0, "crop_mm": 64.0},
        enhancer_options={"ngf": 4, "hidden": 4, "ndf": 4, "n_layers_d": 2,
                          "num_d": 1},
        model_options={"channels": [4, 4], "strides": [2], "num_res_units": 0},
    )  # fmt: skip
    sites = [site_factory("A", [1, 2], seed=0), site_factory("B", [3, 4], seed=7)]
    task = get_task("sim-fl")
    arrays = task.initial_arrays(config)
    layout = {k: (v.shape, v.dtype) for k, v in arrays.items()}
    memory = {s: None for s in sites}
    trained = {1: "shape/", 2: "material/", 3: "unet/"}
    for rnd in (1, 2, 3):
        updates = []
        for s in sites:
            update, memory[s] = client_train(config, s, arrays, rnd, memory=memory[s])
            # what travels: the three networks' parameters, nothing else
            assert {k: (v.shape, v.dtype) for k, v in update.arrays.items()} == layout
            assert set(update.metrics) >= {"loss", "seconds", "stage"}
            assert update.metrics["stage"] == rnd
            assert np.isfinite(update.metrics["loss"])
            for prefix in PREFIXES:
                moved = _changed(arrays, update.arrays, prefix)
                assert moved == (prefix == trained[rnd]), (rnd, prefix)
            local = memory[s][1]
            # what stays: latents and poses, codes, the enhancer, the renderings
            sent = [v for v in update.arrays.values() if v.size > 1]
            for key, value in local.items():
                if key.startswith(("enhancer/", "sim/", "shape/lat", "material/lat")):
                    assert not any(
                        v.shape == value.shape and np.array_equal(v, value)
                        for v in sent
                    ), key
            updates.append(update)
        new, _ = aggregate(config, rnd, arrays, updates)
        for prefix in PREFIXES:
            if prefix != trained[rnd]:  # untouched networks stay bit for bit
                assert not _changed(arrays, new, prefix)
        arrays = new
        if rnd == 1:
            local = memory[sites[0]][1]
            assert local["shape/latents"].shape == (1, 4)  # one training patient
            name, scores = client_evaluate(config, sites[0], arrays, 1,
                                           memory=memory[sites[0]])  # fmt: skip
            assert name == "A"
            for structure in ("LV", "MYO", "RV"):
                assert 0.0 <= scores[f"glo-dice-{structure}"] <= 1.0
            assert scores["glo-dice-LV"] > 0.1  # the discs are found, roughly
    local = memory[sites[1]][1]
    assert any(k.startswith("enhancer/") for k in local)
    images, labels = local["sim/images"], local["sim/labels"]
    assert images.shape[1:] == (32, 32) and images.shape == labels.shape
    assert np.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    assert set(np.unique(labels)) >= {0, 3}  # rendered hearts with their labels
    name, scores = client_evaluate(config, sites[1], arrays, 3,
                                   memory=memory[sites[1]], final=True)  # fmt: skip
    for key in ("dice-LV", "ft-dice-LV", "hd95-RV", "ft-dice-mean"):
        assert key in scores and np.isfinite(scores[key])
    assert scores["num-examples"] == 2
    # the centralised baseline of the shape stage, scored the same way
    central = centralised_shape_glo(config, sites)
    assert central["steps"] == 2 * 2  # shape_rounds * shape_steps * sites
    assert [r["site"] for r in central["rows"]] == ["A", "B"]
    for row in central["rows"]:
        assert row["method"] == "centralised-glo"
        assert 0.0 <= row["glo-dice-mean"] <= 1.0
