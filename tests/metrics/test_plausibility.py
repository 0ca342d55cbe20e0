"""Shape plausibility measures against NumPy / SciPy references and analytic values."""

from __future__ import annotations

import numpy as np
import pytest

from jaxsim.metrics import (
    PLAUSIBLE_RANGES,
    component_sizes,
    connected_components,
    lv_enclosed,
    mid_ventricular_slices,
    plausibility_checks,
    shape_measures,
    wall_thickness,
)

SPACING = (8.0, 1.0, 1.0)


def _rings(nz=6, n=64, r1=10.0, r2=16.0, rv=True, centre=(32.0, 28.0)):
    """Stack of LV blood discs of radius r1 inside myocardial rings to r2, and
    an RV crescent beside them."""
    y, x = np.mgrid[:n, :n].astype(np.float64)
    r = np.hypot(y - centre[0], x - centre[1])
    plane = np.zeros((n, n), np.uint8)
    plane[r < r2] = 2
    plane[r < r1] = 3
    if rv:
        rr = np.hypot(y - centre[0], x - (centre[1] + r2 + 8.0))
        plane[(rr < 9.0) & (r >= r2)] = 1
    return np.repeat(plane[None], nz, axis=0)


def _brute_thickness(labels, slices, spacing):
    """Float64 brute force: every epicardial voxel's distance to every blood voxel."""
    _, sy, sx = spacing
    out = []
    for k in slices:
        s = labels[k]
        blood = np.argwhere(s == 3) * [sy, sx]
        myo = s == 2
        pad = np.pad(~((s == 2) | (s == 3)), 1, constant_values=True)
        touch = pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]
        epi = np.argwhere(myo & touch) * [sy, sx]
        d = np.sqrt(((epi[:, None, :] - blood[None, :, :]) ** 2).sum(-1)).min(1)
        out.extend(d)
    return float(np.mean(out))


def test_wall_thickness_matches_brute_force_and_ring_width():
    labels = _rings(r1=10.0, r2=16.0)
    slices = mid_ventricular_slices(labels)
    t = wall_thickness(labels, spacing=SPACING)
    assert t == pytest.approx(_brute_thickness(labels, slices, SPACING), rel=1e-12)
    assert abs(t - 6.0) < 1.0  # r2 - r1 within a pixel
    labels = _rings(r1=8.0, r2=20.0)
    assert abs(wall_thickness(labels, spacing=(8.0, 0.5, 0.5)) - 6.0) < 0.5


def test_volumes_and_ejection_fraction_are_voxel_counts():
    ed = _rings(r1=12.0, r2=17.0)
    es = _rings(r1=8.0, r2=14.0)
    m = shape_measures(ed, es, spacing=SPACING)
    voxel_ml = np.prod(SPACING) / 1000.0
    edv, esv = (ed == 3).sum() * voxel_ml, (es == 3).sum() * voxel_ml
    assert m["lv_edv"] == pytest.approx(edv)
    assert m["lv_esv"] == pytest.approx(esv)
    assert m["lv_ef"] == pytest.approx(100 * (edv - esv) / edv)
    myo_ed, myo_es = (ed == 2).sum() * voxel_ml, (es == 2).sum() * voxel_ml
    assert m["myo_change"] == pytest.approx(abs(myo_es - myo_ed) / myo_ed)
    # analytic disc area within a few percent
    assert m["lv_edv"] == pytest.approx(6 * 8.0 * np.pi * 12.0**2 / 1000.0, rel=0.05)


def test_connected_components_match_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for shape in [(20, 20), (6, 12, 12)]:
        for p in (0.3, 0.5, 0.6):
            mask = rng.random(shape) < p
            assert connected_components(mask) == ndimage.label(mask)[1]
    assert connected_components(np.zeros((3, 3), bool)) == 0


def test_specks_are_counted_apart():
    ndimage = pytest.importorskip("scipy.ndimage")
    labels = _rings()
    labels[0, 2, 2] = 1  # a one-voxel RV speck far from the RV
    mask = labels == 1
    sizes = sorted(component_sizes(mask))
    lab, _ = ndimage.label(mask)
    assert sizes == sorted(np.bincount(lab.ravel())[1:].tolist())
    assert connected_components(mask) == 2
    assert connected_components(mask, min_fraction=0.005) == 1
    m = shape_measures(labels, labels, spacing=SPACING)
    assert m["rv_components_ed"] == 1 and m["rv_specks_ed"] == 1


def test_topology_and_enclosure():
    ed = _rings()
    m = shape_measures(ed, ed, spacing=SPACING)
    assert m["lv_components_ed"] == m["myo_components_ed"] == m["rv_components_ed"] == 1
    assert m["lv_enclosed_ed"] and m["lv_enclosed_es"]
    broken = ed.copy()
    broken[:, 32, 36:46] = 0  # cut the myocardium: blood meets background
    assert not lv_enclosed(broken)
    split = ed.copy()
    split[:, 32, :] = 0  # two halves of each structure
    m = shape_measures(split, split, spacing=SPACING)
    assert m["lv_components_ed"] == 2 and m["myo_components_ed"] == 2
    checks = plausibility_checks(m)
    assert not checks["lv_components_ed"] and not checks["plausible"]


def test_checks_use_inclusive_ranges_and_fail_nan():
    ed = _rings(r1=22.0, r2=30.0, n=96, centre=(48.0, 40.0), nz=10)
    m = shape_measures(
        ed,
        _rings(r1=15.0, r2=24.6, n=96, centre=(48.0, 40.0), nz=10),
        spacing=(10.0, 1.5, 1.5),
    )
    checks = plausibility_checks(m)
    for name, (lo, hi) in PLAUSIBLE_RANGES.items():
        assert checks[name] == (lo <= m[name] <= hi)
    m = dict(m, lv_ef=float("nan"))
    assert not plausibility_checks(m)["lv_ef"]


def test_bad_input():
    with pytest.raises(ValueError, match="share a grid"):
        shape_measures(_rings(nz=4), _rings(nz=5), spacing=SPACING)
    with pytest.raises(ValueError, match="spacing"):
        shape_measures(_rings(), _rings(), spacing=(1.0, 1.0))
