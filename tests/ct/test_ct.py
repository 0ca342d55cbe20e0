"""jaxsim.ct: attenuation tables, spectra, noise, HU and the acquisition pipeline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsim.ct as ct
from jaxsim.kernels import VolumeGeometry
from jaxsim.phantoms import TISSUES


# ------------------------------------------------------------------ tables
@pytest.mark.parametrize(
    ("material", "energy", "mu_over_rho"),
    # NIST XCOM / Hubbell-Seltzer values (cm^2/g).
    [("water", 60.0, 0.2059), ("water", 100.0, 0.1707), ("bone", 80.0, 0.2229)],
)
def test_attenuation_matches_nist(material, energy, mu_over_rho):
    mu = ct.attenuation(material, energy)
    assert mu == pytest.approx(mu_over_rho * ct.density(material) / 10, rel=0.02)


def test_iodine_k_edge_and_blood_contrast():
    below, above = ct.attenuation("iodine", [33.0, 34.0])
    assert above > 4 * below
    plain = ct.blood_with_iodine(0.0, 70.0)
    enhanced = ct.blood_with_iodine(10.0, 70.0)
    assert plain == pytest.approx(ct.attenuation("blood", 70.0))
    assert enhanced > 1.2 * plain
    with pytest.raises(ValueError, match="concentration_mg_ml must be >= 0"):
        ct.blood_with_iodine(-1.0)


def test_tables_cover_issue_materials_and_energy_range():
    names = set(ct.material_names())
    wanted = {"air", "lung", "adipose", "soft_tissue", "muscle", "blood", "liver"}
    assert wanted | {"bone", "iodine", "water"} <= names
    e = ct.energies()
    assert e[0] == 20 and e[-1] == 150
    for name in names:
        assert np.all(np.diff(ct.attenuation(name)[15:]) < 0)  # no edges > 35 keV
    with pytest.raises(ValueError, match="energy must lie in"):
        ct.attenuation("water", 10.0)
    with pytest.raises(ValueError, match="material must be one of"):
        ct.attenuation("unobtainium")


def test_spectra_are_normalised_and_ordered():
    means = []
    for name in ("80kVp", "100kVp", "120kVp"):
        e, w = ct.spectrum(name)
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(w[e > float(name[:-3])].sum()) == 0.0
        means.append(float((e * w).sum()))
    assert means == sorted(means)
    with pytest.raises(ValueError, match="spectrum must be one of"):
        ct.spectrum("60kVp")


def test_nominal_hu_of_water_air_and_contrast():
    hu = ct.nominal_hu(
        70.0,
        materials={**ct.DEFAULT_TISSUE_MATERIALS, "body": ({"water": 1}, 0)},
    )
    # float32 rounding of values of order 1000
    assert float(hu["air"]) == pytest.approx(-1000.0, abs=1e-3)
    assert float(hu["body"]) == pytest.approx(0.0, abs=1e-3)
    hu120 = ct.nominal_hu("120kVp")
    assert hu120["fat"] < 0 < hu120["muscle"] < hu120["lv_myocardium"]
    assert hu120["rv_blood"] < hu120["lv_blood"]


# ------------------------------------------------------------------ noise
def test_poisson_log_variance_follows_one_over_i0():
    t = jnp.full((200_000,), 0.2)
    variances = []
    for i0 in (1e3, 1e4):
        counts = ct.detected_counts(t, key=jax.random.key(1), i0=i0)
        p = ct.log_transform(counts, i0=i0)
        assert float(p.mean()) == pytest.approx(-np.log(0.2), abs=0.01)
        variances.append(float(p.var()))
        assert variances[-1] == pytest.approx(1 / (i0 * 0.2), rel=0.05)
    assert variances[0] / variances[1] == pytest.approx(10.0, rel=0.08)


def test_gaussian_and_electronic_noise():
    t = jnp.full((200_000,), 0.5)
    g = ct.detected_counts(t, key=jax.random.key(2), i0=1e4, noise="gaussian")
    assert float(g.var()) == pytest.approx(5e3, rel=0.05)
    e = ct.detected_counts(
        t, key=jax.random.key(2), i0=1e4, noise="none", electronic_sigma=30.0
    )
    assert float(e.var()) == pytest.approx(900.0, rel=0.05)
    starving = ct.log_transform(jnp.asarray([-5.0, 0.0]), i0=1e4)
    assert np.all(np.isfinite(starving))
    with pytest.raises(ValueError, match="noise must be one of"):
        ct.detected_counts(t, key=jax.random.key(0), i0=1.0, noise="speckle")
    with pytest.raises(ValueError, match="i0 must lie in"):
        ct.detected_counts(t, key=jax.random.key(0), i0=0.0)


# ------------------------------------------------------------------ physics
def test_beam_hardening_and_water_correction():
    e, w = ct.spectrum("120kVp")
    mu = jnp.asarray(ct.attenuation("water", np.asarray(e)))[None]
    thickness = jnp.linspace(0.0, 300.0, 31)[None]
    poly = -jnp.log(ct.transmission(thickness, mu, w))
    slope = jnp.diff(poly) / 10.0
    assert np.all(np.diff(np.asarray(slope)) < 0)  # the beam hardens
    mu_ref, _ = ct.water_reference(w, e)
    corrected = ct.water_correction(poly, w, e)
    np.testing.assert_allclose(corrected, mu_ref * thickness[0], rtol=2e-3, atol=1e-3)


def _cylinder_phantom(n=32, spacing=4.0, radius=50.0):
    vol_geom = VolumeGeometry((n, n, n), (spacing,) * 3)
    c = (np.arange(n) - (n - 1) / 2) * spacing
    _, yy, xx = np.meshgrid(c, c, c, indexing="ij")
    r = np.hypot(xx, yy)
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    inside = np.mean(
        [
            np.hypot(xx + a * spacing, yy + b * spacing) < radius
            for a in sub
            for b in sub
        ],
        axis=0,
    )
    fractions = np.zeros((len(TISSUES), n, n, n), np.float32)
    fractions[TISSUES.index("body")] = inside
    fractions[0] = 1 - inside
    return vol_geom, fractions, r[0]


WATER = {**ct.DEFAULT_TISSUE_MATERIALS, "body": ({"water": 1.0}, 0.0)}


def test_monochromatic_water_cylinder_is_zero_hu():
    vol_geom, fractions, r = _cylinder_phantom()
    acq = ct.CTAcquisition(n_views=90, beam=70.0, noise="none", filter="ram-lak")
    res = ct.simulate_ct_from_fractions(
        jax.random.key(0), fractions, vol_geom, materials=WATER, acquisition=acq
    )
    geom = res.geom
    centre = np.asarray(res.image)[4:-4][:, r < 40]
    assert abs(centre.mean()) <= 5.0
    assert np.percentile(np.abs(centre), 95) <= 15.0
    air = np.asarray(res.image)[4:-4][:, r > 58]
    assert abs(air.mean() + 1000) <= 20.0
    assert res.labels.dtype == jnp.uint8
    assert res.projections.shape == (90, geom.n_v, geom.n_u)


def test_polychromatic_noisy_scan_is_calibrated_and_contrast_shows():
    vol_geom, fractions, r = _cylinder_phantom()
    # A contrast-filled rod inside the water cylinder.
    rod = (r < 15)[None] * fractions[TISSUES.index("body")]
    fractions[TISSUES.index("lv_blood")] = rod
    fractions[TISSUES.index("body")] -= rod
    res = ct.simulate_ct_from_fractions(
        jax.random.key(3),
        fractions,
        vol_geom,
        materials=WATER,
        acquisition=ct.CTAcquisition(n_views=90, i0=1e6),
    )
    img = np.asarray(res.image)[4:-4]
    water = img[:, (r > 25) & (r < 40)]
    blood = img[:, r < 10]
    assert abs(water.mean()) <= 20.0
    # The beam crossing ~100 mm of water hardens; iodine contrast drops.
    hu = ct.nominal_hu("120kVp", materials=WATER, water_mm=100.0)
    expected = float(hu["lv_blood"])
    assert blood.mean() == pytest.approx(expected, rel=0.15)
    assert np.all(np.isfinite(img))


def test_simulate_rejects_bad_fractions():
    vol_geom, fractions, _ = _cylinder_phantom(n=8)
    with pytest.raises(ValueError, match="fractions must have shape"):
        ct.simulate_ct_from_fractions(jax.random.key(0), fractions[1:], vol_geom)
    with pytest.raises(ValueError, match="lacks entries"):
        ct.simulate_ct_from_fractions(
            jax.random.key(0), fractions, vol_geom, materials={}
        )


# ------------------------------------------------------------------ real data
def test_default_contrast_matches_real_heart_hu(shared_data):
    nib = pytest.importorskip("nibabel")
    ct_dir = shared_data / "ct"
    if not ct_dir.is_dir():
        pytest.skip(f"{ct_dir} is absent")
    image = np.asarray(nib.load(ct_dir / "ct_cropped.nii.gz").dataobj)
    heart = np.asarray(nib.load(ct_dir / "heart.nii.gz").dataobj) > 0
    lo, median, hi = np.percentile(image[heart], [5, 50, 95])
    hu = ct.nominal_hu("120kVp", water_mm=300.0)  # a chest hardens the beam
    for tissue in ("lv_blood", "rv_blood", "lv_myocardium"):
        assert lo <= hu[tissue] <= hi
    assert abs(hu["lv_blood"] - median) <= 150
