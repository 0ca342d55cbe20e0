"""Model registry: build a network by name, record and replay its constructor config."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from ._dynunet import DynUNet
from ._planner import plan_dynunet
from ._segresnet import SegResNetVAE
from ._unet import UNet

CONFIG_VERSION = 1


def _dynunet(*, spatial_dims, in_channels, out_channels, rngs, **kw):
    if "spacing" in kw or "patch_size" in kw:
        if "kernel_size" in kw or "strides" in kw:
            raise ValueError(
                "dynunet: give either spacing and patch_size (planned) or "
                "kernel_size and strides, not both"
            )
        try:
            spacing, patch = kw.pop("spacing"), kw.pop("patch_size")
        except KeyError as err:
            raise ValueError("dynunet: spacing and patch_size go together") from err
        plan = plan_dynunet(spacing, patch).dynunet_kwargs()
        if plan.pop("spatial_dims") != spatial_dims:
            raise ValueError(
                f"dynunet: spacing has {len(spacing)} axes but "
                f"spatial_dims={spatial_dims}"
            )
        kw = {**plan, **kw}
    return DynUNet(spatial_dims, in_channels, out_channels, rngs=rngs, **kw), kw


MODELS: dict[str, tuple[Callable[..., Any], int | None]] = {
    "unet2d": (UNet, 2),
    "unet3d": (UNet, 3),
    "dynunet": (DynUNet, None),
    "segresnetvae": (SegResNetVAE, None),
}


def _jsonable(value):
    """Tuples to lists, recursively, and a check that the value survives JSON."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"model options must be JSON values (numbers, strings, lists), got {value!r}"
    )


def build_model(
    name: str,
    *,
    in_channels: int,
    out_channels: int,
    spatial_dims: int | None = None,
    rngs: nnx.Rngs,
    **options: Any,
) -> nnx.Module:
    """Build a segmentation network by registry name and record its config.

    Names: ``"unet2d"``, ``"unet3d"`` (:class:`UNet`; ``spatial_dims`` is implied),
    ``"dynunet"`` (:class:`DynUNet`; pass ``kernel_size`` and ``strides``, or
    ``spacing`` and ``patch_size`` to plan them with :func:`plan_dynunet`) and
    ``"segresnetvae"`` (:class:`SegResNetVAE`; needs ``input_image_size``).

    Args:
        name: registry name.
        in_channels, out_channels: channel counts.
        spatial_dims: 2 or 3; optional for ``unet2d``/``unet3d`` (must agree).
        rngs: ``nnx.Rngs`` for initialisation (and dropout / VAE noise).
        **options: the network's keyword arguments (JSON values only).

    Returns:
        The network; :func:`model_config` returns the config it was built from.

    Raises:
        ValueError: unknown name, or a ``spatial_dims`` that contradicts it.
        TypeError: an option that is not a JSON value.

    Example:
        >>> net = build_model("unet2d", in_channels=1, out_channels=4,
        ...                   rngs=nnx.Rngs(0), channels=[8, 16], strides=[2])
        >>> model_config(net)["name"]
        'unet2d'
    """
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    cls, fixed = MODELS[key]
    if fixed is not None:
        if spatial_dims not in (None, fixed):
            raise ValueError(
                f"{key} has spatial_dims={fixed}, got spatial_dims={spatial_dims}"
            )
        spatial_dims = fixed
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3 for {key}, got {spatial_dims!r}")
    options = _jsonable(dict(options))
    if key == "dynunet":
        model, options = _dynunet(
            spatial_dims=spatial_dims, in_channels=in_channels,
            out_channels=out_channels, rngs=rngs, **options,
        )  # fmt: skip
    else:
        model = cls(spatial_dims, in_channels, out_channels, rngs=rngs, **options)
    config = {
        "name": key,
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "spatial_dims": int(spatial_dims),
        "options": _jsonable(options),
        "version": CONFIG_VERSION,
    }
    model.config_json = json.dumps(config, sort_keys=True)
    return model


def model_config(model: nnx.Module) -> dict:
    """The JSON-serialisable config a model was built from by :func:`build_model`.

    ``{"name", "in_channels", "out_channels", "spatial_dims", "options",
    "version"}``; ``build_model_from_config(model_config(m), rngs=...)`` rebuilds
    the same architecture (same parameter shapes; same values for the same seed).

    Raises:
        ValueError: the model was not built by :func:`build_model`.
    """
    text = getattr(model, "config_json", None)
    if text is None:
        raise ValueError(
            f"{type(model).__name__} has no recorded config: build it with "
            "jaxsim.models.build_model to record one"
        )
    return json.loads(text)


def build_model_from_config(config: Mapping[str, Any], *, rngs: nnx.Rngs) -> nnx.Module:
    """Rebuild a network from :func:`model_config` output (e.g. read from JSON).

    Raises:
        ValueError: missing keys or a config version this code does not know.
    """
    missing = {"name", "in_channels", "out_channels", "spatial_dims"} - set(config)
    if missing:
        raise ValueError(f"model config lacks {sorted(missing)}: {dict(config)}")
    version = config.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ValueError(
            f"model config version {version} unknown (this code: {CONFIG_VERSION})"
        )
    return build_model(
        config["name"],
        in_channels=config["in_channels"],
        out_channels=config["out_channels"],
        spatial_dims=config["spatial_dims"],
        rngs=rngs,
        **dict(config.get("options", {})),
    )


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param``; batch-norm statistics excluded).

    Works on abstract models from ``nnx.eval_shape`` too.
    """
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return sum(math.prod(x.shape) for x in leaves)
