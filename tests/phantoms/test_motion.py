"""Cardiac motion and the analytic LV shell, against numerical integration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from jaxsim.phantoms import end_systolic_phase, lv_shape, lv_volumes, volume_curve


def _truncated_spheroid_ml(r, s, z_base):
    """Volume (mL) of {x^2/r^2 + y^2/r^2 + z^2/s^2 <= 1, z <= z_base} by quadrature."""
    area = lambda z: np.pi * r * r * max(0.0, 1.0 - z * z / (s * s))  # noqa: E731
    value, _ = integrate.quad(area, -s, min(z_base, s))
    return value / 1000.0


def _numeric_volumes(subject, phase):
    shape = [float(v) for v in lv_shape(subject, phase)]
    a, c, radius, center, base, _ = shape
    z_base = base - center
    blood = _truncated_spheroid_ml(a, c, z_base)
    return blood, _truncated_spheroid_ml(radius, center, z_base) - blood


@pytest.mark.parametrize("who", ["male", "female"])
def test_shape_realises_edv_esv_and_constant_myocardium(who, request):
    subject = request.getfixturevalue(who)
    es = float(end_systolic_phase(subject))
    blood_ed, myo_ed = _numeric_volumes(subject, 0.0)
    blood_es, myo_es = _numeric_volumes(subject, es)
    np.testing.assert_allclose(blood_ed, float(subject.edv), rtol=1e-4)
    np.testing.assert_allclose(blood_es, float(subject.esv), rtol=1e-4)
    for phase in (0.1, es, 0.6, 0.9):
        blood, myo = _numeric_volumes(subject, phase)
        np.testing.assert_allclose(myo, myo_ed, rtol=1e-4)
        analytic = [float(v) for v in lv_volumes(subject, phase)]
        np.testing.assert_allclose(analytic, [blood, myo], rtol=1e-4)


def test_systole_shortens_and_thickens(male):
    es = end_systolic_phase(male)
    ed, sys = lv_shape(male, 0.0), lv_shape(male, es)
    wall_ed = float(ed.radius - ed.a)
    wall_es = float(sys.radius - sys.a)
    assert abs(wall_ed - float(male.wall_thickness)) < 1e-3
    assert wall_es > 1.3 * wall_ed  # radial thickening
    shortening = 1.0 - float(sys.c / ed.c)
    np.testing.assert_allclose(shortening, float(male.longitudinal_shortening), 1e-5)
    assert float(sys.base) < float(ed.base)  # the base descends towards the apex


def test_volume_curve_is_physiological():
    es = 0.35
    phase = jnp.linspace(0.0, 0.999, 1000)
    g = np.asarray(volume_curve(phase, es))
    assert g[0] == pytest.approx(1.0) and float(volume_curve(es, es)) == pytest.approx(
        0
    )
    assert np.all((g >= 0) & (g <= 1))
    systole = g[np.asarray(phase) <= es]
    assert np.all(np.diff(systole) <= 1e-7)  # monotone ejection
    assert g[-1] == pytest.approx(1.0, abs=1e-4)  # periodic
    # C1: no jump in the slope anywhere (finite differences stay bounded)
    assert np.max(np.abs(np.diff(g, 2))) < 5e-3


def test_end_systolic_phase_is_es_time_over_rr(male):
    assert float(end_systolic_phase(male)) == pytest.approx(
        float(male.es_time / male.rr_interval)
    )


def test_lv_volume_gradient_wrt_edv_is_one(male):
    grad = jax.grad(lambda edv: lv_volumes(male.replace(edv=edv), 0.0)[0])(male.edv)
    assert float(grad) == pytest.approx(1.0, rel=1e-4)
