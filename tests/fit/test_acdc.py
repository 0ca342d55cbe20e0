"""The fit on real ACDC cine cases (skips without ../shared/data)."""

from __future__ import annotations

import time

import jax
import pytest

from jaxsim.fit import fit_histograms
from jaxsim.io import read_image_label_h5

CASES = [f"patient{p}_frame{f}.h5" for p in ("001", "022", "065") for f in ("01", "02")]
# ACDC in-plane spacing is 1.37-1.68 mm, slices mostly 10 mm (data README).
SPACING = (10.0, 1.5, 1.5)


def _fit(path, **kwargs):
    image, labels = read_image_label_h5(path)
    t0 = time.perf_counter()
    result = fit_histograms(
        image, labels, key=jax.random.key(0), spacing=SPACING, **kwargs
    )
    return result, time.perf_counter() - t0


def _check(result, seconds, name):
    for tissue, m in result.metrics.items():
        print(
            f"{name} {tissue:14s} KS {m['ks_before']:.3f} -> {m['ks_after']:.3f} "
            f"chi2 {m['chi2_before']:.3f} -> {m['chi2_after']:.3f} "
            f"KL {m['kl_before']:.3f} -> {m['kl_after']:.3f}"
        )
        assert m["ks_after"] < m["ks_before"], (tissue, m)
        assert m["ks_after"] <= 0.15, (tissue, m)
    print(f"{name} {seconds:.1f} s")


@pytest.mark.slow
def test_fit_one_acdc_case(shared_data):
    """One case with a lighter optimisation than the default (a quick check)."""
    path = shared_data / "acdc" / "patient065_frame02.h5"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    result, seconds = _fit(path, restarts=2, steps=150)
    _check(result, seconds, path.stem)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_fit_every_acdc_case(shared_data, case):
    path = shared_data / "acdc" / case
    if not path.exists():
        pytest.skip(f"{path} is absent")
    result, seconds = _fit(path)
    _check(result, seconds, path.stem)
    assert seconds <= 60.0
    assert not result.warnings, result.warnings  # right labels: a plausible fit


@pytest.mark.slow
def test_swapped_labels_on_a_real_case_are_reported(shared_data):
    path = shared_data / "acdc" / "patient001_frame01.h5"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    swapped = {"rv_blood": 1, "lv_myocardium": 3, "lv_blood": 2}
    result, _ = _fit(path, classes=swapped, restarts=1, steps=100)
    assert any("swapped" in w and "lv_blood (label 2)" in w for w in result.warnings)
    assert any("fitted" in w and "implausible" in w for w in result.warnings)
