"""Shared timing helpers for the benchmark scripts (compile apart from steady state)."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import jax

RESULTS = Path(__file__).resolve().parent / "results"


def block(x):
    return jax.tree_util.tree_map(
        lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x
    )


def time_call(fn: Callable, *args, repeats: int = 7, warmup: bool = True) -> dict:
    """Compile/first-call seconds and the median and min of ``repeats`` steady calls."""
    t0 = time.perf_counter()
    if warmup:
        block(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn(*args))
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"first_s": first, "median_s": times[len(times) // 2], "min_s": times[0]}


def environment() -> dict:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "machine": platform.machine(),
        "processor": platform.processor(),
        "x64": bool(jax.config.read("jax_enable_x64")),
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2))
    return path


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print rows as a fixed-width table; columns are (key, header, format)."""

    def cell(row, key, fmt):
        value = row.get(key, "")
        return format(value, fmt) if value != "" else ""

    widths = [
        max([len(h)] + [len(cell(r, key, fmt)) for r in rows])
        for key, h, fmt in columns
    ]
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                cell(row, key, fmt).ljust(w)
                for (key, _, fmt), w in zip(columns, widths, strict=True)
            )
        )
