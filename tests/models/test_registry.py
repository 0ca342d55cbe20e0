"""Model registry and JSON configs: build by name, record, rebuild identically."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxsim.models import (
    MODELS,
    DynUNet,
    SegResNetVAE,
    UNet,
    build_model,
    build_model_from_config,
    count_params,
    model_config,
    plan_dynunet,
)

BUILDS = {
    "unet2d": dict(channels=[4, 8, 16], strides=[2, [1, 2]], num_res_units=1),
    "unet3d": dict(channels=[4, 8], strides=[[1, 2, 2]], norm="batch", dropout=0.2),
    "dynunet": dict(
        spatial_dims=3,
        kernel_size=[[1, 3, 3], 3, 3],
        strides=[1, [1, 2, 2], 2],
        filters=[4, 8, 8],
        deep_supervision=True,
    ),  # fmt: skip
    "segresnetvae": dict(
        spatial_dims=2,
        input_image_size=[16, 16],
        blocks_down=[1, 1],
        blocks_up=[1],
        vae_nz=4,
        vae_estimate_std=True,
    ),  # fmt: skip
}
CLASSES = {"unet2d": UNet, "unet3d": UNet, "dynunet": DynUNet}
CLASSES["segresnetvae"] = SegResNetVAE


def _host(x):
    """A state leaf as a NumPy array (PRNG keys as their key data)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def test_registry_names():
    assert set(MODELS) == {"unet2d", "unet3d", "dynunet", "segresnetvae"}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_config_round_trips_through_json(name):
    model = build_model(
        name, in_channels=2, out_channels=3, rngs=nnx.Rngs(7), **BUILDS[name]
    )
    assert isinstance(model, CLASSES[name])
    config = json.loads(json.dumps(model_config(model)))
    assert config["name"] == name
    assert config["in_channels"] == 2 and config["out_channels"] == 3
    rebuilt = build_model_from_config(config, rngs=nnx.Rngs(7))
    assert model_config(rebuilt) == config
    assert count_params(rebuilt) == count_params(model)
    a, b = nnx.state(model), nnx.state(rebuilt)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(_host(x), _host(y))
    # a different seed gives the same architecture with other weights
    other = build_model_from_config(config, rngs=nnx.Rngs(8))
    assert jax.tree.structure(nnx.state(other)) == jax.tree.structure(a)
    assert count_params(other) == count_params(model)


def test_dynunet_planned_from_spacing_records_the_plan():
    model = build_model(
        "dynunet", in_channels=1, out_channels=4, spatial_dims=3,
        spacing=[10.0, 1.5, 1.5], patch_size=[16, 160, 160], filters=[2] * 6,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    options = model_config(model)["options"]
    plan = plan_dynunet((10.0, 1.5, 1.5), (16, 160, 160))
    assert options["kernel_size"] == [list(k) for k in plan.kernel_size]
    assert options["strides"] == [list(s) for s in plan.strides]
    assert options["filters"] == [2] * 6  # explicit options win over the plan
    assert "spacing" not in options


def test_model_config_needs_a_registry_build():
    net = UNet(2, 1, 2, channels=(4, 8), strides=(2,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="build_model"):
        model_config(net)


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("vnet", {}, "unknown model 'vnet'"),
        ("unet2d", {"spatial_dims": 3}, "unet2d has spatial_dims=2"),
        ("dynunet", {"kernel_size": [3] * 3, "strides": [1, 2, 2]}, "spatial_dims"),
        (
            "dynunet",
            {"spatial_dims": 2, "spacing": [1.0, 1.0], "kernel_size": [3] * 3},
            "not both",
        ),
        ("dynunet", {"spatial_dims": 2, "spacing": [1.0, 1.0]}, "go together"),
        (
            "dynunet",
            {"spatial_dims": 3, "spacing": [1.0, 1.0], "patch_size": [64, 64]},
            "2 axes but spatial_dims=3",
        ),
    ],
)
def test_registry_errors(name, kw, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, in_channels=1, out_channels=2, rngs=nnx.Rngs(0), **kw)


def test_options_must_be_json_values():
    with pytest.raises(TypeError, match="JSON"):
        build_model(
            "unet2d", in_channels=1, out_channels=2, rngs=nnx.Rngs(0),
            channels=np.array([4, 8]), strides=[2],
        )  # fmt: skip


def test_config_version_is_checked():
    with pytest.raises(ValueError, match="version 99"):
        build_model_from_config(
            {"name": "unet2d", "in_channels": 1, "out_channels": 2,
             "spatial_dims": 2, "options": {}, "version": 99},
            rngs=nnx.Rngs(0),
        )  # fmt: skip
    with pytest.raises(ValueError, match="lacks"):
        build_model_from_config({"name": "unet2d"}, rngs=nnx.Rngs(0))
