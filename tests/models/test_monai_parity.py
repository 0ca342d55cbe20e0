"""Same weights, same outputs as MONAI.

``data/monai_reference.npz`` was written by ``benchmarks/monai_peer.py export``
(MONAI 1.6.1, PyTorch 2.13.0+cpu, its own virtual environment): small MONAI
networks with every parameter perturbed away from its initial value, an input and
MONAI's outputs. Here each MONAI parameter is mapped by name onto the jaxsim
network of the same configuration and the outputs are compared. This checks the
wiring the parameter counts cannot: concatenation order, the final bare
convolution, padding and output padding, the sub-pixel transposed convolution,
the per-level kernels of DynUNet's decoder, linear upsampling, GroupNorm and the
VAE branch (its flattening order included).
"""

from __future__ import annotations

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsim.models import DynUNet, SegResNetVAE, UNet

DATA = Path(__file__).resolve().parent / "data" / "monai_reference.npz"
call = nnx.jit(lambda model, x: model(x))


def _case(name):
    ref = np.load(DATA)
    prefix = f"{name}/param/"
    params = {k[len(prefix) :]: ref[k] for k in ref.files if k.startswith(prefix)}
    x = np.moveaxis(ref[f"{name}/x"], 1, -1)  # channel-first -> channel-last
    extra = {k.split("/", 1)[1]: ref[k] for k in ref.files if k.startswith(name + "/")}
    return params, x, extra


def _conv_weight(w):  # (O, I, *k) -> (*k, I, O)
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def _transposed_weight(w):  # (I, O, *k) -> (*k, I, O)
    return np.transpose(w, (*range(2, w.ndim), 0, 1))


def _load(model, mapping):
    """Set each jaxsim parameter from ``mapping``: path tuple -> array."""
    state = nnx.state(model, nnx.Param)
    flat = dict(nnx.to_flat_state(state))
    assert set(flat) == set(mapping), sorted(set(flat) ^ set(mapping), key=str)[:10]
    for path, value in mapping.items():
        var = flat[path]
        assert var.shape == value.shape, (path, var.shape, value.shape)
        var[...] = jnp.asarray(value)
    nnx.update(model, state)


# ------------------------------------------------------------------ UNet
def _unit_path(rest):
    """MONAI Convolution / ResidualUnit parameter name -> jaxsim path suffix."""
    unit = r"conv\.unit(\d+)\."
    table = [
        (unit + r"conv\.(weight|bias)", lambda m: ("units", int(m[1]), "conv")),
        (unit + r"adn\.A\.weight", lambda m: ("units", int(m[1]), "act")),
        (unit + r"adn\.N\.(weight|bias)", lambda m: ("units", int(m[1]), "norm")),
        (r"residual\.(weight|bias)", lambda m: ("residual",)),
        (r"conv\.(weight|bias)", lambda m: ("conv",)),
        (r"adn\.A\.weight", lambda m: ("act",)),
        (r"adn\.N\.(weight|bias)", lambda m: ("norm",)),
    ]  # fmt: skip
    for pattern, head in table:
        m = re.fullmatch(pattern, rest)
        if m:
            return head(m)
    raise KeyError(rest)


def _leaf(path_head, torch_name):
    kind = torch_name.rsplit(".", 1)[1]
    if path_head[-1] == "act":
        return (*path_head, "slope")
    if path_head[-1] == "norm":
        return (*path_head, "scale" if kind == "weight" else "bias")
    return (*path_head, "kernel" if kind == "weight" else "bias")


def unet_mapping(params, n_levels, res_units):
    out = {}
    for name, value in params.items():
        rest = name[len("model.") :]
        level = 0
        while rest.startswith("1.submodule."):
            rest, level = rest[len("1.submodule.") :], level + 1
        transposed = False
        if level == n_levels:
            head = ("bottom", *_unit_path(rest))
        elif rest.startswith("0."):
            head = ("down", level, *_unit_path(rest[2:]))
        else:  # "2.": the up layer of this level
            rest = rest[2:]
            if res_units > 0:
                index, rest = int(rest[0]), rest[2:]
            else:
                index = 0
            transposed = index == 0 and rest == "conv.weight"
            head = ("up", level, index, *_unit_path(rest))
        path = _leaf(head, name)
        if path[-1] == "slope":
            value = value.reshape(())
        elif path[-1] == "kernel":
            value = _transposed_weight(value) if transposed else _conv_weight(value)
        out[path] = value
    return out


def test_unet_2d_residual_units_match_monai():
    params, x, ref = _case("unet2d_res2")
    model = UNet(
        2, 2, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=2,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    _load(model, unet_mapping(params, 2, 2))
    model.eval()
    out = call(model, jnp.asarray(x))
    np.testing.assert_allclose(
        out, np.moveaxis(ref["out"], 1, -1), rtol=1e-4, atol=1e-5
    )


def test_unet_3d_batch_norm_leaky_relu_match_monai():
    params, x, ref = _case("unet3d_res0_batch_leaky")
    model = UNet(
        3, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0,
        norm="batch", act="leakyrelu", rngs=nnx.Rngs(0),
    )  # fmt: skip
    _load(model, unet_mapping(params, 2, 0))
    out = call(model, jnp.asarray(x))  # training mode: batch statistics
    np.testing.assert_allclose(
        out, np.moveaxis(ref["out"], 1, -1), rtol=1e-4, atol=1e-5
    )


# ------------------------------------------------------------------ DynUNet
def dynunet_mapping(params, n_stages):
    out = {}
    for name, value in params.items():
        parts = name.split(".")
        if parts[0] == "input_block":
            head, rest = ("encoder", 0), parts[1:]
        elif parts[0] == "downsamples":
            head, rest = ("encoder", int(parts[1]) + 1), parts[2:]
        elif parts[0] == "bottleneck":
            head, rest = ("encoder", n_stages - 1), parts[1:]
        elif parts[0] == "upsamples":  # upsamples[0] is the deepest level
            head, rest = ("decoder", n_stages - 2 - int(parts[1])), parts[2:]
        elif parts[0] == "output_block":
            head, rest = ("output_block",), parts[1:]
        elif parts[0] == "deep_supervision_heads":
            head, rest = ("heads", int(parts[1])), parts[2:]
        else:
            raise KeyError(name)
        rest = [p for p in rest if p != "conv"] if rest[-2] == "conv" else rest
        *modules, kind = rest
        if modules and modules[-1].startswith("norm"):
            leaf = "scale" if kind == "weight" else "bias"
        else:
            leaf = "kernel" if kind == "weight" else "bias"
            modules = modules or []
        path = (*head, *modules, leaf)
        if head[0] in ("output_block", "heads"):
            path = (*head, "conv", leaf)
        if leaf == "kernel":
            transposed = "transp_conv" in modules
            value = _transposed_weight(value) if transposed else _conv_weight(value)
        out[path] = value
    return out


def test_dynunet_with_deep_supervision_matches_monai():
    params, x, ref = _case("dynunet3d_ds")
    model = DynUNet(
        3, 1, 3, kernel_size=[[1, 3, 3], 3, 3], strides=[1, [1, 2, 2], 2],
        filters=(4, 8, 16), deep_supervision=True, deep_supr_num=1,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    _load(model, dynunet_mapping(params, 3))
    logits, head = call(model, jnp.asarray(x))
    stacked = np.moveaxis(ref["out"], 2, -1)  # (B, 2, *S, C)
    np.testing.assert_allclose(logits, stacked[:, 0], rtol=1e-4, atol=1e-5)
    # MONAI upsamples the head (nearest) to full size; every second voxel of the
    # pooled axes (y, x here) is the head at its own resolution
    np.testing.assert_allclose(head, stacked[:, 1, :, ::2, ::2], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ SegResNetVAE
def segresnet_mapping(params, fc_size, smallest=16):
    out = {}
    n_fc = int(np.prod(fc_size))
    # torch flattens (C, *S), jaxsim (*S, C): feature index c * n + s vs s * C + c
    perm = np.arange(smallest * n_fc).reshape(smallest, n_fc).T.reshape(-1)
    for name, value in params.items():
        parts = name.split(".")
        kind = parts[-1]
        if parts[0] == "convInit":
            path = ("conv_init", "kernel")
        elif parts[0] in ("down_layers", "up_layers"):
            i, j = int(parts[1]), int(parts[2])
            if parts[0] == "down_layers":
                head = ("down", i, j - 1 if i == 0 else j)
            else:
                head = ("up_blocks", i, j)
            module = parts[3]
            if module.startswith("norm"):
                leaf = "scale" if kind == "weight" else "bias"
            else:
                leaf = "kernel"
            path = (*head, module, leaf)
        elif parts[0] == "up_samples":
            path = ("up_convs", int(parts[1]), "kernel")
        elif parts[0] in ("conv_final", "vae_conv_final"):
            head = parts[0]
            if parts[1] == "0":
                path = (head, "norm", "scale" if kind == "weight" else "bias")
            else:
                path = (head, "conv", "kernel" if kind == "weight" else "bias")
        elif parts[0] == "vae_down":
            module = {
                "0": "vae_down_norm1",
                "2": "vae_down_conv",
                "3": "vae_down_norm2",
            }
            module = module[parts[1]]
            if "norm" in module:
                path = (module, "scale" if kind == "weight" else "bias")
            else:
                path = (module, "kernel" if kind == "weight" else "bias")
        elif parts[0] == "vae_fc_up_sample":
            if parts[1] == "0":
                path = ("vae_up_conv", "kernel")
            else:
                path = ("vae_up_norm", "scale" if kind == "weight" else "bias")
        elif parts[0] in ("vae_fc1", "vae_fc2"):
            if kind == "weight":
                value = value.T[perm]
            path = (parts[0], "kernel" if kind == "weight" else "bias")
        elif parts[0] == "vae_fc3":
            value = value.T[:, perm] if kind == "weight" else value[perm]
            path = (parts[0], "kernel" if kind == "weight" else "bias")
        else:
            raise KeyError(name)
        if path[-1] == "kernel" and value.ndim > 2:
            value = _conv_weight(value)
        out[path] = value
    return out


def _fix_preconv(params):
    """MONAI's pre-conv of level i > 0 is ``down_layers.i.0.conv.weight``."""
    fixed = {}
    for name, value in params.items():
        m = re.fullmatch(r"down_layers\.(\d+)\.0\.conv\.weight", name)
        fixed[f"PRECONV.{m[1]}" if m else name] = value
    return fixed


def test_segresnetvae_matches_monai():
    params, x, ref = _case("segresnetvae2d")
    model = SegResNetVAE(
        2, 1, 2, input_image_size=(16, 16), vae_default_std=0.0, vae_nz=8,
        blocks_down=(1, 2), blocks_up=(1,), rngs=nnx.Rngs(0),
    )  # fmt: skip
    params = _fix_preconv(params)
    pre = {k: v for k, v in params.items() if k.startswith("PRECONV.")}
    mapping = segresnet_mapping(
        {k: v for k, v in params.items() if not k.startswith("PRECONV.")},
        model.fc_size,
    )
    for key, value in pre.items():
        mapping[("down", int(key.split(".")[1]), 0, "kernel")] = _conv_weight(value)
    _load(model, mapping)
    logits, vae_loss = call(model, jnp.asarray(x))
    np.testing.assert_allclose(
        logits, np.moveaxis(ref["out"], 1, -1), rtol=1e-4, atol=1e-5
    )
    assert float(vae_loss) == pytest.approx(float(ref["vae_loss"]), rel=1e-4)
