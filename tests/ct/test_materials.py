"""CTMaterials: the table, the mixing matrix, the bijection and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsim.ct as ct
from jaxsim.labels import TISSUES
from jaxsim.parameters import from_unconstrained, to_unconstrained, unconstrained_size


def test_from_table_reproduces_the_table_as_a_mixing_matrix():
    m = ct.default_ct_materials()
    mix = np.asarray(m.mixing(), np.float64)
    assert m.basis[-1] == "iodine" and mix.shape == (len(m.basis), len(TISSUES))
    for j, tissue in enumerate(TISSUES):
        fractions, iodine = ct.DEFAULT_TISSUE_MATERIALS[tissue]
        expected = np.zeros(len(m.basis))
        for name, value in fractions.items():
            expected[m.basis.index(name)] = value
        expected[-1] = iodine / 1000.0  # mg/mL -> g/cm^3
        np.testing.assert_allclose(mix[:, j], expected, rtol=1e-7, atol=1e-12)


def _interior_materials(seed: int) -> ct.CTMaterials:
    m = ct.default_ct_materials()
    rng = np.random.default_rng(seed)
    return m.replace(
        composition=jnp.asarray(rng.uniform(0.05, 0.95, m.composition.shape)),
        iodine=jnp.asarray(rng.uniform(1.0, 350.0, m.iodine.shape)),
    )


def test_bijection_round_trip(x64):
    m = _interior_materials(0)
    u = to_unconstrained(m)
    assert u.shape == (unconstrained_size(m),) == (m.composition.size + m.iodine.size,)
    back = from_unconstrained(u, m)
    assert back.materials == m.materials and back.tissues == m.tissues
    rtol = 1e-10 if x64 else 2e-5
    np.testing.assert_allclose(back.composition, m.composition, rtol=rtol)
    np.testing.assert_allclose(back.iodine, m.iodine, rtol=rtol)
    # the defaults sit on bounds (fractions 0 and 1, no iodine): kept to the
    # bijection's edge margin of 1e-6 of the range
    d = ct.default_ct_materials()
    again = from_unconstrained(to_unconstrained(d), d)
    np.testing.assert_allclose(again.composition, d.composition, atol=2e-6)
    np.testing.assert_allclose(again.iodine, d.iodine, atol=400 * 2e-6)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_any_real_vector_gives_valid_materials(scale):
    template = ct.default_ct_materials()
    n = unconstrained_size(template)
    u = scale * jax.random.normal(jax.random.key(int(scale)), (4, n))
    batch = from_unconstrained(u, template)
    assert batch.composition.shape == (4, *template.composition.shape)
    ct.check_materials(batch)  # raises if any value leaves MATERIAL_RANGES
    hu = ct.nominal_hu("120kVp", materials=batch)
    assert all(np.all(np.isfinite(v)) for v in hu.values())


def test_gradient_of_nominal_hu_reaches_iodine_analytically():
    # HU of a tissue is linear in its iodine: dHU/dc = 1000 mu_I 1e-3 / (mu_w - mu_a)
    # with mu_I the spectrum-mean iodine attenuation per g/cm^3 (NumPy, float64).
    e, w = (np.asarray(a, np.float64) for a in ct.spectrum("100kVp"))
    w = w / w.sum()
    mu_i = w @ ct.attenuation("iodine", e, density_g_cm3=1.0)
    mu_w, mu_a = w @ ct.attenuation("water", e), w @ ct.attenuation("air", e)
    expected = 1000.0 * mu_i * 1e-3 / (mu_w - mu_a)
    m = ct.default_ct_materials()
    lv = m.index("lv_blood")

    def hu(iodine):
        return ct.nominal_hu("100kVp", materials=m.replace(iodine=iodine))["lv_blood"]

    grad = jax.grad(hu)(m.iodine)
    assert float(grad[lv]) == pytest.approx(expected, rel=1e-5)
    assert np.count_nonzero(np.asarray(grad)) == 1


def test_nominal_hu_takes_materials_or_a_table():
    table = {**ct.DEFAULT_TISSUE_MATERIALS, "liver": ({"liver": 1.0}, 5.0)}
    a = ct.nominal_hu("120kVp", materials=table)
    b = ct.nominal_hu("120kVp", materials=ct.CTMaterials.from_table(table))
    for t in TISSUES:
        assert float(a[t]) == float(b[t])
    assert float(a["liver"]) > float(ct.nominal_hu("120kVp")["liver"]) + 50


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(iodine=-1.0), r"materials.iodine must lie in \[0, 400\] mg/mL"),
        (dict(iodine=500.0), r"materials.iodine must lie in \[0, 400\]"),
        (dict(composition=1.5), r"materials.composition must lie in \[0, 1\]"),
        (dict(composition=np.nan), "materials.composition must be finite"),
    ],
)
def test_invalid_materials_are_named(change, match):
    m = ct.default_ct_materials()
    field, value = next(iter(change.items()))
    bad = m.replace(**{field: getattr(m, field).at[..., 1].set(value)})
    with pytest.raises(ValueError, match=match):
        ct.check_materials(bad)
    with pytest.raises(ValueError, match=match):
        ct.nominal_hu(materials=bad)


def test_material_names_and_shapes_are_checked():
    with pytest.raises(ValueError, match="materials must be tabulated"):
        ct.CTMaterials(jnp.zeros((17, 1)), jnp.zeros(17), materials=("unobtainium",))
    m = ct.default_ct_materials()
    with pytest.raises(ValueError, match="must end with shape"):
        ct.check_materials(m.replace(iodine=m.iodine[:-1]))
    with pytest.raises(ValueError, match="lacks entries"):
        ct.CTMaterials.from_table({})
