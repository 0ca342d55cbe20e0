"""FDK reconstruction: uniform ellipsoids (full and short scans), filters, errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.kernels import ConeBeamGeometry, VolumeGeometry, cone_beam_project, fdk

FLOAT = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32

_spec = importlib.util.spec_from_file_location(
    "conebeam_refs", Path(__file__).with_name("test_conebeam.py")
)
refs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refs)

VOL = VolumeGeometry((32, 40, 40), (1.5, 1.2, 1.2), offset=(2.0, -1.0, 0.5))
CENTRE = np.array([3.0, -2.0, 1.0])
AXES = np.array([17.0, 13.0, 15.0])
ROT = refs.rotation(0.4, 0.25)
DET = dict(dso=300.0, dsd=600.0, n_u=72, n_v=64, du=1.6, dv=1.6)


def _scan(angles, **kw):
    return ConeBeamGeometry(angles=angles, **{**DET, **kw})


def _interior(scale=0.75):
    inner = refs.ellipsoid_volume(
        VOL.shape, VOL.spacing, VOL.offset, CENTRE, AXES * scale, ROT, 1
    )
    return inner > 0.5


def _fan_half_angle(geom):
    return np.arctan((geom.n_u / 2 * geom.du + abs(geom.offset_u)) / geom.dsd)


FULL = _scan(np.linspace(0, 2 * np.pi, 120, endpoint=False) + 0.1, offset_u=1.3)
_probe = _scan([0.0])
SHORT = _scan(np.linspace(0, np.pi + 2 * _fan_half_angle(_probe) + 0.05, 100) + 0.7)


@pytest.mark.parametrize("geom", [FULL, SHORT], ids=["full", "short"])
def test_fdk_of_uniform_ellipsoid_within_one_percent(geom):
    exact = refs.ellipsoid_line_integrals(geom, CENTRE, AXES, ROT)
    rec = np.asarray(fdk(jnp.asarray(exact, FLOAT), VOL, geom))
    inner = _interior()
    assert abs(rec[inner].mean() - 1.0) <= 0.01
    assert np.percentile(np.abs(rec[inner] - 1.0), 95) <= 0.03
    outside = ~_interior(1.35)
    assert np.abs(rec[outside]).mean() <= 0.02


@pytest.mark.parametrize("window", ["shepp-logan", "cosine", "hann"])
def test_windows_keep_the_mean_and_smooth(window):
    rec_ramlak = None
    exact = refs.ellipsoid_line_integrals(FULL, CENTRE, AXES, ROT)
    proj = jnp.asarray(exact, FLOAT)
    rec = np.asarray(fdk(proj, VOL, FULL, filter=window))
    rec_ramlak = np.asarray(fdk(proj, VOL, FULL))
    inner = _interior()
    assert abs(rec[inner].mean() - 1.0) <= 0.01
    # Windows damp high frequencies: less total variation along x than ram-lak.
    assert (
        np.abs(np.diff(rec, axis=-1)).sum() < np.abs(np.diff(rec_ramlak, axis=-1)).sum()
    )


def test_fdk_of_projected_volume_recovers_it():
    # Round trip through the Joseph projector: the discrete model, not just analytic.
    volume = refs.ellipsoid_volume(
        VOL.shape, VOL.spacing, VOL.offset, CENTRE, AXES, ROT
    )
    proj = cone_beam_project(jnp.asarray(volume, FLOAT), VOL, FULL)
    rec = np.asarray(fdk(proj, VOL, FULL))
    inner = _interior()
    assert abs(rec[inner].mean() - 1.0) <= 0.015


def test_fdk_rejects_bad_input():
    proj = jnp.zeros((FULL.n_angles, FULL.n_v, FULL.n_u), FLOAT)
    with pytest.raises(ValueError, match="filter must be one of"):
        fdk(proj, VOL, FULL, filter="gauss")
    with pytest.raises(ValueError, match="projections must have shape"):
        fdk(proj[:, :, :-1], VOL, FULL)
    quarter = _scan(np.linspace(0, np.pi / 2, 20))
    with pytest.raises(ValueError, match="short scan of at least"):
        fdk(jnp.zeros((20, DET["n_v"], DET["n_u"]), FLOAT), VOL, quarter)
    with pytest.raises(ValueError, match="projections must be finite"):
        fdk(proj.at[1, 2, 3].set(jnp.nan), VOL, FULL)


def test_fdk_under_jit_with_traced_geometry():
    exact = jnp.asarray(refs.ellipsoid_line_integrals(FULL, CENTRE, AXES, ROT), FLOAT)
    rec = jax.jit(lambda p, g: fdk(p, VOL, g))(exact, FULL)
    np.testing.assert_allclose(rec, fdk(exact, VOL, FULL), rtol=1e-4, atol=1e-4)
