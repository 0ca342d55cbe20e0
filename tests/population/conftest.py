"""A tiny design shared by the population tests (one grid shape: compiled once)."""

from __future__ import annotations

import pytest

from jaxsim.population import PopulationDesign, Preset

TINY = Preset(
    name="tiny",
    description="test design",
    n_male=1,
    n_female=1,
    shape=(2, 48, 48),
    spacing=(10.0, 2.5, 2.5),
    contrasts=(0, 14, 26),
    n_coils=2,
    oversample=1,
    contrast_batch=2,
)


@pytest.fixture(scope="session")
def tiny_design():
    return PopulationDesign(TINY, 7)


@pytest.fixture(scope="session")
def tiny_db(tiny_design, tmp_path_factory):
    from jaxsim.io import generate_database

    path = tmp_path_factory.mktemp("db") / "tiny.h5"
    generate_database(tiny_design, path)
    return path
