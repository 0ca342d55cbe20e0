"""Population designs with an external subject source (learned generators)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.io import subject_table
from jaxsim.phantoms import TISSUES, default_subject, residual_deformation
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


def test_materials_must_match_the_subjects():
    with pytest.raises(ValueError, match=r"materials must be \(n=3"):
        SubjectSource(_batch(), {}, materials=np.zeros((2, 9, 4, 4, 4)))
    with pytest.raises(ValueError, match="finite"):
        SubjectSource(_batch(), {}, materials=np.full((3, 9, 4, 4, 4), np.nan))
    plain = PopulationDesign(PRESETS["quick"], 0, source=SubjectSource(_batch(), {}))
    assert plain.material(0) is None


@pytest.mark.integration
def test_label_sets_image_each_subject_with_its_material_map():
    """A subject's material map reaches its records: the record equals the
    public simulator's cine with that map (same key, same acquisition), a zero
    map reproduces the plain record bit for bit, and a map changes the heart."""
    import dataclasses

    from jaxsim.mr import material_box, simulate_cine
    from jaxsim.population import simulate_label_set

    preset = dataclasses.replace(PRESETS["quick"], shape=(2, 32, 32),
                                 spacing=(10.0, 5.0, 5.0), contrasts=(0,))  # fmt: skip
    batch = _batch(2)
    maps = np.zeros((2, 9, 4, 4, 4), np.float32)
    maps[1, 3] = 0.4  # subject 1: myocardial PD up by up to e^0.4 inside the box
    design = PopulationDesign(preset, 3, source=SubjectSource(batch, {}, maps))
    plain = PopulationDesign(preset, 3, source=SubjectSource(batch, {}))
    a0, p0 = simulate_label_set(design, 0), simulate_label_set(plain, 0)
    np.testing.assert_array_equal(a0.images, p0.images)  # zero map: identical
    a1, p1 = simulate_label_set(design, 2), simulate_label_set(plain, 2)
    myo = a1.labels == TISSUES.index("lv_myocardium")
    blood = a1.labels == TISSUES.index("lv_blood")
    ratio = lambda r: r.images[0][myo].mean() / r.images[0][blood].mean()  # noqa: E731
    assert ratio(a1) > 1.1 * ratio(p1)  # brighter myocardium against the pool
    # the same record through simulate_cine with the map
    subject = design.subject(1)
    tissue, sequence, snr, _ = design.contrasts(1)
    pick = lambda t: jax.tree.map(lambda x: x[0], t)  # noqa: E731
    from jaxsim.mr import contrast_keys

    key = contrast_keys(design.noise_key(2), 1)[0]
    cine = simulate_cine(key, subject, design.geometry(subject), tissue=pick(tissue),
                         sequence=pick(sequence),
                         acquisition=pick(design.acquisition(snr=snr)),
                         material=jnp.asarray(maps[1]),
                         box=material_box(subject))  # fmt: skip
    np.testing.assert_allclose(a1.images[0], np.asarray(cine.image[0]),
                               rtol=1e-5, atol=1e-5 * a1.images[0].max())  # fmt: skip
