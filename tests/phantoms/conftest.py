"""Fixtures for the phantom tests: small grids shared across tests (one compile)."""

from __future__ import annotations

import jax
import pytest

from jaxsim.phantoms import ImageGeometry, default_subject, lv_long_axis


def _heart_box(subject, *, spacing=1.5, shape=(96, 96, 96)) -> ImageGeometry:
    """An axis-aligned grid centred on the LV long-axis midpoint (holds the LV)."""
    apex, base = lv_long_axis(subject)
    return ImageGeometry.axis_aligned(
        shape=shape, spacing=(spacing,) * 3, center=0.5 * (apex + base)
    )


def _pick(subjects, i):
    return jax.tree.map(lambda leaf: leaf[i], subjects)


@pytest.fixture
def heart_box():
    """``heart_box(subject, spacing=1.5, shape=(96, 96, 96))`` -> ImageGeometry."""
    return _heart_box


@pytest.fixture
def pick():
    """``pick(subjects, i)`` -> subject ``i`` of a batch."""
    return _pick


@pytest.fixture(scope="session")
def male():
    return default_subject("male")


@pytest.fixture(scope="session")
def female():
    return default_subject("female")
