"""simulate_ct on the open phantom (tiny grid): shapes, labels and plausible HU."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxsim.ct as ct
import jaxsim.phantoms as phantoms
from jaxsim.kernels import VolumeGeometry

# Slow: rasterising the phantom compiles for ~15 s of CPU; examples/04_ct.py with
# SMOKE=1 exercises the same path in CI.
pytestmark = [
    pytest.mark.skipif(
        not hasattr(phantoms, "tissue_fractions"), reason="phantom API not available"
    ),
    pytest.mark.slow,
]


def test_simulate_ct_of_default_subject():
    subject = phantoms.default_subject("male")
    geometry = phantoms.axial_geometry(
        subject, spacing=(10.0, 10.0, 10.0), shape=(2, 40, 40)
    )
    res = ct.simulate_ct(
        jax.random.key(0),
        subject,
        geometry=geometry,
        acquisition=ct.CTAcquisition(n_views=24),
        supersample=1,
    )
    assert res.image.shape == res.labels.shape == (2, 40, 40)
    assert res.projections.shape == (24, res.geom.n_v, res.geom.n_u)
    image, labels = np.asarray(res.image), np.asarray(res.labels)
    assert np.all(np.isfinite(image))
    air = labels == phantoms.TISSUES.index("air")
    lung = labels == phantoms.TISSUES.index("lung")
    assert np.median(image[air]) < -900
    assert np.median(image[lung]) < -500
    assert np.median(image[~air & ~lung]) > -300


def test_traced_grid_without_static_spacing_needs_and_uses_a_detector():
    subject = phantoms.default_subject("female")
    geometry = phantoms.axial_geometry(
        subject, spacing=(10.0, 10.0, 10.0), shape=(2, 32, 32)
    )
    grid = VolumeGeometry(geometry.shape, geometry.static_spacing())
    planned = ct.CTAcquisition(n_views=16, noise="none").planned(grid)

    def image(g, acq):
        return ct.simulate_ct(
            jax.random.key(0), subject, geometry=g, acquisition=acq, supersample=1
        ).image

    bare = geometry.without_nominal_spacing()
    with pytest.raises(ValueError, match="no static spacing"):
        jax.jit(image)(bare, planned.replace(detector=None))
    traced = jax.jit(image)(bare, planned)
    np.testing.assert_allclose(traced, image(geometry, planned), atol=0.5)
