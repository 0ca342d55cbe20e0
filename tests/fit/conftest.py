"""Synthetic short-axis label maps for the fitting tests."""

from __future__ import annotations

import numpy as np
import pytest


def heart_labels(nz: int = 4, n: int = 48) -> np.ndarray:
    """ACDC-style labels: LV blood 3 in a myocardial ring 2, RV blood 1 beside it.

    The heart shrinks towards the last slice (an apex), so slices differ.
    """
    y, x = np.mgrid[:n, :n].astype(float)
    out = np.zeros((nz, n, n), np.uint8)
    for k in range(nz):
        s = 1.0 - 0.12 * k
        r_lv = np.hypot(y - n / 2, x - n / 2.4)
        r_rv = np.hypot(y - n / 2, x - n / 2.4 - 13 * s)
        out[k][r_rv < 10 * s] = 1
        out[k][r_lv < 11 * s] = 2
        out[k][r_lv < 6.5 * s] = 3
    return out


@pytest.fixture
def labels() -> np.ndarray:
    return heart_labels()


@pytest.fixture(scope="session")
def make_labels():
    """The :func:`heart_labels` factory (conftest is not importable by name)."""
    return heart_labels
