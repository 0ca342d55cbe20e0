"""CTAcquisition: static structure, traced magnitudes, noise gradients, pytrees."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsim.ct as ct
from jaxsim.ct._simulate import _scan_fractions
from jaxsim.kernels import VolumeGeometry
from jaxsim.labels import TISSUES

VOL = VolumeGeometry((8, 32, 32), (6.0, 5.0, 5.0))


def _phantom(dtype=jnp.float32):
    """A water-like cylinder with a contrast rod and a bone rod (fractions)."""
    nz, ny, nx = VOL.shape
    y = (np.arange(ny) - (ny - 1) / 2) * 5.0
    x = (np.arange(nx) - (nx - 1) / 2) * 5.0
    r = np.hypot(*np.meshgrid(x, y, indexing="xy"))
    f = np.zeros((len(TISSUES), nz, ny, nx))
    body = np.broadcast_to(r < 60.0, (nz, ny, nx)).astype(float)
    rod = np.broadcast_to(
        np.hypot(*np.meshgrid(x - 20, y, indexing="xy")) < 12, body.shape
    )
    bone = np.broadcast_to(
        np.hypot(*np.meshgrid(x + 25, y, indexing="xy")) < 8, body.shape
    )
    f[TISSUES.index("lv_blood")] = rod
    f[TISSUES.index("bone")] = bone
    f[TISSUES.index("body")] = body - rod - bone
    f[0] = 1 - body
    return jnp.asarray(f, dtype)


# The scan planned once for the smallest distances drawn below (a larger dso only
# shrinks the grid's shadow on the detector), then reused with traced distances.
# Gaussian noise: continuous in the magnitudes, so jitted and eager runs compare
# (a Poisson draw may jump by a count when its mean moves by a rounding error).
BASE = ct.CTAcquisition(
    n_views=16, beam="140kVp", dso=550.0, dsd=1000.0, noise="gaussian"
)
BASE = BASE.planned(VOL)


def _random_acquisitions(n: int):
    rng = np.random.default_rng(0)
    grid = BASE.energies()
    spectra = []
    for name in ("80kVp", "100kVp", "120kVp", "140kVp"):
        e, w = (np.asarray(a, np.float64) for a in ct.spectrum(name))
        spectra.append(np.interp(grid, e, w))
    out = []
    for _ in range(n):
        dso = rng.uniform(550.0, 650.0)
        out.append(
            BASE.replace(
                i0=jnp.float32(10 ** rng.uniform(4, 6)),
                electronic_sigma=jnp.float32(rng.uniform(0.0, 20.0)),
                spectrum_weights=jnp.asarray(rng.dirichlet(np.ones(4)) @ spectra),
                dso=jnp.float32(dso),
                dsd=jnp.float32(dso * rng.uniform(1.7, 1.9)),
                start_angle=jnp.float32(rng.uniform(-np.pi, np.pi)),
            )
        )
    return out


def test_fifty_random_acquisitions_trace_once():
    fractions = _phantom()
    traces = []

    @jax.jit
    def scan(key, acq):
        traces.append(acq.n_views)  # a Python side effect: runs once per trace
        return ct.simulate_ct_from_fractions(key, fractions, VOL, acquisition=acq)

    acqs = _random_acquisitions(50)
    results = [scan(jax.random.key(i), a) for i, a in enumerate(acqs)]
    assert len(traces) == 1
    assert isinstance(results[0], ct.CTResult)  # a pytree, returned from jit
    images = [r.image for r in results]
    assert all(np.all(np.isfinite(im)) for im in images)
    # the traced values are honoured: equal to eager calls with concrete values
    for i in (0, 49):
        eager = ct.simulate_ct_from_fractions(
            jax.random.key(i), fractions, VOL, acquisition=acqs[i]
        )
        np.testing.assert_allclose(images[i], eager.image, rtol=1e-4, atol=0.5)
    # and they matter: different draws give different images
    assert np.abs(images[0] - images[1]).max() > 10.0


def test_poisson_noise_refuses_differentiation():
    t = jnp.full((64,), 0.3)

    def loss(i0):
        return jnp.sum(ct.detected_counts(t, key=jax.random.key(0), i0=i0))

    with pytest.raises(ValueError, match="noise='gaussian'"):
        jax.grad(loss)(1e4)
    with pytest.raises(ValueError, match="Poisson photon counts"):
        jax.jvp(loss, (1e4,), (1.0,))
    # the realistic default still samples, and stop_gradient opts out explicitly
    assert float(loss(1e4)) > 0
    frozen = jax.grad(lambda i0: jnp.sum(jax.lax.stop_gradient(i0) * t))(1e4)
    assert float(frozen) == 0.0
    fractions = _phantom()
    materials = ct.default_ct_materials()
    acq = ct.CTAcquisition(n_views=8)  # noise="poisson"

    def image_loss(iodine):
        m = materials.replace(iodine=iodine)
        res = ct.simulate_ct_from_fractions(
            jax.random.key(0), fractions, VOL, materials=m, acquisition=acq
        )
        return jnp.mean(res.image)

    with pytest.raises(ValueError, match="noise='gaussian'"):
        jax.grad(image_loss)(materials.iodine)


def test_gaussian_noise_gradients_match_central_differences():
    with jax.enable_x64(True):
        fractions = _phantom(jnp.float64)
        materials = ct.default_ct_materials()
        base = ct.CTAcquisition(n_views=10, noise="gaussian", electronic_sigma=5.0)
        lv = materials.index("lv_blood")
        key = jax.random.key(4)

        @jax.jit
        def loss(p):
            acq = base.replace(i0=p[0], electronic_sigma=p[1])
            m = materials.replace(iodine=materials.iodine.at[lv].set(p[2]))
            res = ct.simulate_ct_from_fractions(
                key, fractions, VOL, materials=m, acquisition=acq
            )
            return jnp.mean((res.image / 1000.0) ** 2) + jnp.mean(res.projections)

        p = jnp.asarray([2e4, 5.0, 18.0])
        grad = jax.grad(loss)(p)
        assert grad.dtype == jnp.float64 and loss(p).dtype == jnp.float64
        for i, h in enumerate((50.0, 0.05, 0.05)):
            e = jnp.zeros(3).at[i].set(h)
            fd = (loss(p + e) - loss(p - e)) / (2 * h)
            np.testing.assert_allclose(grad[i], fd, rtol=1e-4, err_msg=str(i))
            assert abs(float(grad[i])) > 0


def test_results_are_pytrees_through_vmap():
    fractions = _phantom()
    # monochromatic: line integrals are linear in density (no beam hardening)
    acq = ct.CTAcquisition(n_views=8, noise="none", beam=70.0)
    scale = jnp.asarray([1.0, 0.5])
    m = ct.default_ct_materials()
    batch = jax.vmap(
        lambda s: ct.simulate_ct_from_fractions(
            jax.random.key(0),
            fractions,
            VOL,
            materials=m.replace(composition=m.composition * s, iodine=m.iodine * s),
            acquisition=acq,
        )
    )(scale)
    assert batch.image.shape == (2, *VOL.shape) and batch.labels.dtype == jnp.uint8
    assert batch.geom.n_angles == 8 and batch.geom.angles.shape == (2, 8)
    # half the density everywhere: half the line integrals
    np.testing.assert_allclose(
        batch.projections[1], 0.5 * batch.projections[0], rtol=1e-4, atol=1e-4
    )


def test_view_chunks_do_not_change_the_scan():
    # noise is drawn per view, so any chunking gives one scan (here 16 views in
    # chunks of 3: the last chunk is padded)
    fractions = _phantom()
    acq = ct.CTAcquisition(n_views=16, noise="gaussian", electronic_sigma=3.0)
    materials = ct.default_ct_materials()
    geom = ct.scanner_geometry(VOL, acq)
    args = (jax.random.key(2), fractions, VOL, geom, materials, acq)
    whole = _scan_fractions(*args, 16)
    parts = _scan_fractions(*args, 3)
    np.testing.assert_allclose(parts.projections, whole.projections, atol=1e-5)
    np.testing.assert_allclose(parts.image, whole.image, atol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_views=10_000_000), r"n_views must be an integer in \[2, 100000\]"),
        (dict(n_views=1), "n_views must be an integer"),
        (dict(noise="speckle"), "noise must be one of"),
        (dict(filter="gauss"), "filter must be one of"),
        (dict(beam="60kVp"), "beam must be one of"),
        (dict(beam=300.0), r"beam energies must lie in \[20, 150\] keV"),
        (dict(detector=(0, 10)), r"detector n_v must be an integer in \[1, 16384\]"),
    ],
)
def test_invalid_static_fields_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct.CTAcquisition(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(i0=0.0), r"acquisition.i0 must lie in \(0, 1e\+12\] photons"),
        (dict(electronic_sigma=-1.0), "acquisition.electronic_sigma must lie in"),
        (dict(dso=700.0, dsd=650.0), "acquisition.dsd must exceed acquisition.dso"),
        (dict(spectrum_weights=np.ones(3)), "spectrum_weights must have a last axis"),
        (dict(spectrum_weights=-np.ones(101)), "spectrum_weights must lie in"),
        (dict(beam=(60.0, 70.0)), "spectrum_weights must be given"),
    ],
)
def test_invalid_magnitudes_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct.check_acquisition(ct.CTAcquisition(**kwargs))
    with pytest.raises(ValueError, match=match):
        ct.simulate_ct_from_fractions(
            jax.random.key(0),
            _phantom(),
            VOL,
            acquisition=ct.CTAcquisition(**kwargs),
        )


def test_traced_distances_need_a_static_detector():
    fractions = _phantom()

    def run(dso):
        acq = ct.CTAcquisition(n_views=8, dso=dso, noise="none")
        return ct.simulate_ct_from_fractions(
            jax.random.key(0), fractions, VOL, acquisition=acq
        ).image

    with pytest.raises(ValueError, match=r"acquisition.detector=\(n_v, n_u\) must"):
        jax.jit(run)(600.0)
    planned = ct.CTAcquisition(n_views=8, dso=600.0, noise="none").planned(VOL)
    geom = ct.scanner_geometry(VOL, planned)
    assert planned.detector == (geom.n_v, geom.n_u)
    # (a traced dso with a planned detector runs: test_fifty_random_acquisitions)
