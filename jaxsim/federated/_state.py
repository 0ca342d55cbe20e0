"""Network state as flat dictionaries of NumPy arrays: what travels between the
server and the sites.

A network is split with ``nnx.split(model, nnx.Param, ...)``; its parameters are
flattened to ``{"path/to/leaf": numpy array}`` (the keys of an ``ArrayRecord``)
and written back by path. Everything else a network holds (dropout RNG state,
batch statistics) stays where it is: only parameters are averaged.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["to_arrays", "from_arrays", "check_arrays", "array_layout"]


def _key(path) -> str:
    return "/".join(str(p) for p in path)


def to_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
    """The network's parameters as ``{"a/b/kernel": array}`` (host NumPy arrays,
    their own dtype, float32 by default), ordered by path."""
    _, params, _ = nnx.split(model, nnx.Param, ...)
    flat = nnx.to_flat_state(params)
    return {_key(path): np.asarray(jax.device_get(v.get_value())) for path, v in flat}


def array_layout(arrays: Mapping[str, np.ndarray]) -> dict[str, tuple]:
    """``{key: (shape, dtype name)}`` of a flat array dictionary."""
    return {
        k: (tuple(np.shape(v)), str(np.asarray(v).dtype)) for k, v in arrays.items()
    }


def check_arrays(arrays: Mapping[str, np.ndarray], like: Mapping[str, np.ndarray]):
    """Raise ``ValueError`` unless ``arrays`` has exactly the keys, shapes and
    dtypes of ``like`` (a message from another network, or a truncated one)."""
    got, want = array_layout(arrays), array_layout(like)
    if got == want:
        return
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    raise ValueError(
        "arrays do not match the network: "
        f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
        f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}, "
        + ", ".join(f"{k} is {got[k]} not {want[k]}" for k in wrong[:3])
    )


def from_arrays(model: nnx.Module, arrays: Mapping[str, np.ndarray]) -> nnx.Module:
    """Write ``arrays`` (from :func:`to_arrays`) into ``model``'s parameters, in
    place; returns the model.

    Raises:
        ValueError: keys, shapes or dtypes differ from the network's.
    """
    check_arrays(arrays, to_arrays(model))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    flat = nnx.to_flat_state(params)
    for path, variable in flat:
        variable.set_value(jnp.asarray(arrays[_key(path)]))
    nnx.update(model, nnx.from_flat_state(flat))
    return model
