"""Bijections between parameter pytrees and unconstrained real vectors.

Fitting and generators optimise or predict unconstrained numbers; the simulators
need valid physical values. Each parameter pytree (a :class:`~jaxsim.phantoms.Subject`,
:class:`~jaxsim.mr.TissueProperties`, a sequence, CT materials) registers a
:class:`ParameterSpec`: its fields in decoding order, each with the range that
validation enforces (from the module's one table of ranges), so that

* :func:`from_unconstrained` maps *any* real vector to a valid pytree, and
* :func:`to_unconstrained` is its inverse on valid pytrees.

Per field, with bounds ``(low, high)``: both finite -> ``low + (high - low)
sigmoid(u)``; only ``low`` -> ``low + exp(u)``; only ``high`` -> ``high - exp(u)``;
neither -> ``u``. A bound may depend on fields decoded before it (``esv < edv``,
``te <= tr``, ``t2 <= t1``): it is then a function of the dict of those values.
Fields that are data rather than parameters (a subject's ``sex``, a sequence's
static counts) are carried over from a template.

Leading batch axes are allowed: a field of event rank ``r`` (0 for a scalar, 1 for
a per-tissue vector) contributes ``prod(shape[-r:])`` entries to the last axis of
the vector.

Example:
    >>> s = default_subject("female")
    >>> u = to_unconstrained(s)
    >>> t = from_unconstrained(u + 0.3, s)   # another valid subject
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FieldBounds",
    "ParameterSpec",
    "register_parameters",
    "parameter_spec",
    "to_unconstrained",
    "from_unconstrained",
    "unconstrained_size",
    "field_slices",
    "field_to_unconstrained",
    "field_from_unconstrained",
]

Bound = float | Callable[[dict], jax.Array] | None


@dataclasses.dataclass(frozen=True)
class FieldBounds:
    """One field of a parameter pytree and its allowed interval.

    Attributes:
        name: attribute name on the pytree.
        low, high: the bounds: a number, ``None`` (unbounded), or a function of the
            dict of already decoded fields (e.g. ``lambda v: v["edv"]``).
        event_ndim: rank of one item of the field (0 scalar, 1 vector); axes before
            it are batch axes.
    """

    name: str
    low: Bound = None
    high: Bound = None
    event_ndim: int = 0


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """How a pytree class maps to an unconstrained vector.

    Attributes:
        fields: the learnable fields in decoding order.
        data: other fields, taken unchanged from the template.
    """

    fields: tuple[FieldBounds, ...]
    data: tuple[str, ...] = ()


_REGISTRY: dict[type, ParameterSpec] = {}

# Keeps sigmoid outputs strictly inside the interval in float32 (|u| < ~16).
_EDGE = 1e-6


def register_parameters(cls: type, spec: ParameterSpec) -> None:
    """Register (or replace) the :class:`ParameterSpec` of a pytree class."""
    names = [f.name for f in spec.fields] + list(spec.data)
    if len(set(names)) != len(names):
        raise ValueError(f"spec of {cls.__name__} names a field twice: {names}")
    _REGISTRY[cls] = spec


def parameter_spec(tree_or_cls) -> ParameterSpec:
    """The registered spec of a pytree (or its class)."""
    cls = tree_or_cls if isinstance(tree_or_cls, type) else type(tree_or_cls)
    if cls not in _REGISTRY:
        raise TypeError(
            f"{cls.__name__} has no registered parameter bijection; registered: "
            f"{sorted(c.__name__ for c in _REGISTRY)}"
        )
    return _REGISTRY[cls]


def _bound(bound: Bound, values: dict, dtype):
    if bound is None:
        return None
    if callable(bound):
        return jnp.asarray(bound(values), dtype)
    return jnp.asarray(bound, dtype)


def _forward(u, low, high):
    if low is not None and high is not None:
        t = jnp.clip(jax.nn.sigmoid(u), _EDGE, 1.0 - _EDGE)
        return low + (high - low) * t
    if low is not None:
        return low + jnp.exp(u)
    if high is not None:
        return high - jnp.exp(u)
    return u


def _inverse(x, low, high):
    if low is not None and high is not None:
        t = jnp.clip((x - low) / (high - low), _EDGE, 1.0 - _EDGE)
        return jnp.log(t) - jnp.log1p(-t)
    tiny = jnp.finfo(jnp.result_type(x)).tiny
    if low is not None:
        return jnp.log(jnp.maximum(x - low, tiny))
    if high is not None:
        return jnp.log(jnp.maximum(high - x, tiny))
    return x


def _event_shape(value, f: FieldBounds) -> tuple[int, ...]:
    shape = jnp.shape(value)
    return tuple(shape[len(shape) - f.event_ndim :]) if f.event_ndim else ()


def _batch_shape(value, f: FieldBounds) -> tuple[int, ...]:
    shape = jnp.shape(value)
    return tuple(shape[: len(shape) - f.event_ndim])


def field_slices(template) -> dict[str, slice]:
    """Where each learnable field sits on the vector's last axis."""
    spec, out, start = parameter_spec(template), {}, 0
    for f in spec.fields:
        n = math.prod(_event_shape(getattr(template, f.name), f))
        out[f.name] = slice(start, start + n)
        start += n
    return out


def unconstrained_size(template) -> int:
    """Length of the unconstrained vector of pytrees shaped like ``template``."""
    slices = field_slices(template)
    return max((s.stop for s in slices.values()), default=0)


def to_unconstrained(params) -> jax.Array:
    """The unconstrained vector ``(..., n)`` of a valid parameter pytree.

    Args:
        params: a registered pytree (leading batch axes allowed, shared by all
            learnable fields).

    Returns:
        ``(*batch, unconstrained_size(params))`` float array.
    """
    spec = parameter_spec(params)
    values = {f.name: jnp.asarray(getattr(params, f.name)) for f in spec.fields}
    dtype = jnp.result_type(float, *values.values())
    pieces = []
    for f in spec.fields:
        x = values[f.name].astype(dtype)
        low = _bound(f.low, values, dtype)
        high = _bound(f.high, values, dtype)
        u = _inverse(x, low, high)
        pieces.append(u.reshape(*_batch_shape(x, f), -1))
    batch = jnp.broadcast_shapes(*(p.shape[:-1] for p in pieces))
    return jnp.concatenate(
        [jnp.broadcast_to(p, (*batch, p.shape[-1])) for p in pieces], axis=-1
    )


def from_unconstrained(vector, template):
    """The valid pytree encoded by ``vector``.

    Args:
        vector: ``(..., n)`` real array, ``n = unconstrained_size(template)``;
            leading axes are batch axes.
        template: a pytree of the registered class whose field shapes (per item)
            and data fields (e.g. ``sex``, static counts) the result takes.

    Returns:
        A pytree like ``template`` whose learnable fields have the vector's batch
        axes (data fields are broadcast to them); every value lies inside its
        field's interval.
    """
    spec = parameter_spec(template)
    vector = jnp.asarray(vector)
    size = unconstrained_size(template)
    if vector.shape[-1:] != (size,):
        raise ValueError(
            f"vector must have a last axis of {size} for {type(template).__name__}; "
            f"got shape {vector.shape}"
        )
    dtype = jnp.result_type(float, vector)
    vector = vector.astype(dtype)
    batch = vector.shape[:-1]
    values: dict = {}
    for f, sl in zip(spec.fields, field_slices(template).values(), strict=True):
        event = _event_shape(getattr(template, f.name), f)
        u = vector[..., sl].reshape(*batch, *event)
        low = _bound(f.low, values, dtype)
        high = _bound(f.high, values, dtype)
        values[f.name] = _forward(u, low, high)
    for name in spec.data:  # data leaves follow the vector's batch axes
        value = getattr(template, name)
        if not isinstance(value, (jax.Array, np.ndarray, float, int)):
            continue  # static metadata (names), not an array leaf
        shape = jnp.shape(value)
        if batch and shape[: len(batch)] != batch:
            values[name] = jnp.broadcast_to(value, (*batch, *shape))
    return dataclasses.replace(template, **values)


def _field(cls, name: str) -> FieldBounds:
    for f in parameter_spec(cls).fields:
        if f.name == name:
            return f
    raise ValueError(f"{cls.__name__} has no learnable field {name!r}")


def field_to_unconstrained(cls, name: str, value, values: dict | None = None):
    """One field's unconstrained value (elementwise), e.g. a fitted flip angle.

    Args:
        cls: the registered pytree class.
        name: the field.
        value: its physical value(s).
        values: other fields' values its bounds depend on (if any).
    """
    f = _field(cls, name)
    value = jnp.asarray(value)
    dtype = jnp.result_type(float, value)
    low, high = (_bound(b, values or {}, dtype) for b in (f.low, f.high))
    return _inverse(value.astype(dtype), low, high)


def field_from_unconstrained(cls, name: str, u, values: dict | None = None):
    """Inverse of :func:`field_to_unconstrained`: always inside the interval."""
    f = _field(cls, name)
    u = jnp.asarray(u)
    dtype = jnp.result_type(float, u)
    low, high = (_bound(b, values or {}, dtype) for b in (f.low, f.high))
    return _forward(u.astype(dtype), low, high)
