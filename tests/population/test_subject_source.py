"""Population designs with an external subject source (learned generators)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.io import subject_table
from jaxsim.phantoms import default_subject, residual_deformation
from jaxsim.population import PRESETS, PopulationDesign, SubjectSource


def _batch(n=3):
    s = default_subject("female")
    s = s.replace(deformation=residual_deformation(s, grid_shape=(2, 2, 2)))
    batch = jax.tree.map(lambda a: jnp.stack([a] * n), s)
    return batch.replace(edv=jnp.asarray([120.0, 150.0, 180.0][:n]))


def test_design_takes_the_source_subjects_and_records_it():
    source = SubjectSource(_batch(), {"kind": "test", "checksum": "abc"})
    design = PopulationDesign(PRESETS["quick"], 5, source=source)
    assert design.n_subjects == 3 and design.n_records == 3 * 2 * 3
    np.testing.assert_array_equal(np.asarray(design.subjects().edv), [120, 150, 180])
    np.testing.assert_array_equal(np.asarray(design.subject(1).edv), 150.0)
    d = json.loads(json.dumps(design.describe()))
    assert d["subject_source"] == {"kind": "test", "checksum": "abc"}
    plain = PopulationDesign(PRESETS["quick"], 5)
    assert "subject_source" not in plain.describe()
    assert plain.n_subjects == 2
    # contrasts and noise streams do not depend on the source
    for a, b in zip(
        jax.tree.leaves(design.contrasts(0)),
        jax.tree.leaves(plain.contrasts(0)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_subject_table_stores_the_deformation_control():
    table = subject_table(_batch())
    assert table["deformation_control"].shape == (3, 2, 2, 2, 3)
    assert table["edv"].shape == (3,)
    assert "deformation" not in table


def test_bad_sources():
    with pytest.raises(TypeError, match="subjects must be a Subject"):
        SubjectSource({"edv": 1.0}, {})
    with pytest.raises(ValueError, match="batched"):
        SubjectSource(default_subject(), {})
    with pytest.raises(TypeError, match="description"):
        SubjectSource(_batch(), "glo")
    with pytest.raises(TypeError, match="SubjectSource"):
        PopulationDesign(PRESETS["quick"], 0, source=_batch())
