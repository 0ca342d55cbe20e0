"""Shared test configuration.

Kernel tests run twice in CI: once in float32 (the default) and once with
``JAX_ENABLE_X64=1``. Tolerances are keyed by the active float precision.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

X64 = bool(jax.config.read("jax_enable_x64"))
FLOAT = jnp.float64 if X64 else jnp.float32


def shared_data_dir() -> Path:
    """Folder of small real images: ``$JAXSIM_SHARED_DATA`` or ``../shared/data``."""
    env = os.environ.get("JAXSIM_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs(request):
    """In the integration run, free each module's compiled XLA programs when the
    module is done: the whole-CLI tests compile large programs, and one
    long-lived process that keeps every executable (and its memory mappings)
    once crashed inside XLA's compiler."""
    yield
    if "integration" in (request.config.getoption("-m") or "").replace(
        "not integration", ""
    ):
        jax.clear_caches()
        gc.collect()


@pytest.fixture
def x64() -> bool:
    return X64


@pytest.fixture
def rtol() -> float:
    """Relative tolerance for comparing a jaxsim kernel with a float64 reference."""
    return 1e-10 if X64 else 2e-5


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set JAXSIM_SHARED_DATA)")
    return path
