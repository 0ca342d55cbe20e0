"""Input checks shared by the networks (shapes are static, so they run under jit)."""

from __future__ import annotations

from collections.abc import Sequence

import jax


def check_input(x: jax.Array, spatial_dims: int, in_channels: int, net: str) -> None:
    """Raise unless ``x`` is ``(B, *spatial, in_channels)``, ``spatial_dims`` axes."""
    if x.ndim != spatial_dims + 2:
        layout = "(B, Y, X, C)" if spatial_dims == 2 else "(B, Z, Y, X, C)"
        raise ValueError(
            f"{net} with spatial_dims={spatial_dims} expects x of shape {layout} "
            f"(channels last), got shape {tuple(x.shape)}"
        )
    if x.shape[-1] != in_channels:
        raise ValueError(
            f"{net} expects in_channels={in_channels} on the last axis of x, got "
            f"shape {tuple(x.shape)}"
        )


def check_spatial_divisible(
    shape: Sequence[int], divisor: Sequence[int], net: str
) -> None:
    """Raise unless every spatial size is a positive multiple of ``divisor``.

    The message names the nearest valid sizes below and above each bad size.
    """
    bad = []
    for axis, (n, m) in enumerate(zip(shape, divisor, strict=True)):
        if n % m or n == 0:
            lo, hi = (n // m) * m, (n // m + 1) * m
            options = f"{lo} or {hi}" if lo > 0 else f"{hi}"
            bad.append(f"axis {axis}: {n} (use {options})")
    if bad:
        raise ValueError(
            f"{net}: input spatial shape {tuple(shape)} is not divisible by the "
            f"total stride {tuple(divisor)} per axis; " + "; ".join(bad)
        )
