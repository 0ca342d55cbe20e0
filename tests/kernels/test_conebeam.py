"""Cone-beam projector pair: exact line integrals, adjointness, gradients, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxsim.kernels import (
    ConeBeamGeometry,
    VolumeGeometry,
    cone_beam_backproject,
    cone_beam_project,
)

FLOAT = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


# ---------------------------------------------------------------- float64 references
def rotation(yaw: float, pitch: float) -> np.ndarray:
    """Rotation about z by ``yaw`` composed with one about y by ``pitch``."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cy, sy = np.cos(pitch), np.sin(pitch)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ ry


def ellipsoid_volume(shape, spacing, offset, centre, axes, rot, supersample=3):
    """Partial-volume fraction ``(nz, ny, nx)`` of an ellipsoid (float64)."""
    nz, ny, nx = shape
    sz, sy, sx = spacing
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    out = np.zeros(shape)
    for dz in sub:
        for dy in sub:
            for dx in sub:
                x = (np.arange(nx) - (nx - 1) / 2 + dx) * sx + offset[0]
                y = (np.arange(ny) - (ny - 1) / 2 + dy) * sy + offset[1]
                z = (np.arange(nz) - (nz - 1) / 2 + dz) * sz + offset[2]
                zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
                p = np.stack([xx, yy, zz], -1) - centre
                out += (((p @ rot) / axes) ** 2).sum(-1) <= 1.0
    return out / supersample**3


def ray_endpoints(g: ConeBeamGeometry):
    """Source ``(A, 1, 1, 3)`` and pixel-centre ``(A, n_v, n_u, 3)`` positions."""
    ang = np.asarray(g.angles, np.float64)
    c, s = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    u = (np.arange(g.n_u) - (g.n_u - 1) / 2) * g.du + g.offset_u
    v = (np.arange(g.n_v) - (g.n_v - 1) / 2) * g.dv + g.offset_v
    vv, uu = np.meshgrid(v, u, indexing="ij")
    src = np.stack([g.dso * c, g.dso * s, 0 * c], -1)
    rim = g.dsd - g.dso
    det = np.stack([-rim * c - uu * s, -rim * s + uu * c, vv + 0 * c], -1)
    return src, det


def ellipsoid_line_integrals(g, centre, axes, rot):
    """Exact chord lengths (mm) of every ray through the ellipsoid."""
    src, det = ray_endpoints(g)
    d = det - src
    q = ((src - centre) @ rot) / axes
    e = (d @ rot) / axes
    a, b = (e**2).sum(-1), (q * e).sum(-1)
    c = (q**2).sum(-1) - 1.0
    disc = np.maximum(b**2 - a * c, 0.0)
    return 2.0 * np.sqrt(disc) / a * np.linalg.norm(d, axis=-1)


def joseph_reference(volume, vg: VolumeGeometry, g: ConeBeamGeometry):
    """Joseph's method written ray by ray in float64 NumPy.

    Each ray crosses the voxel-centre planes perpendicular to its dominant axis
    (x when ``|dx| >= |dy|``); at each crossing the plane is interpolated
    bilinearly, zero beyond one spacing outside the grid, and the samples are
    summed times the ray length between planes.
    """
    nz, ny, nx = vg.shape
    sz, sy, sx = vg.spacing
    ox, oy, oz = vg.offset
    src, det = ray_endpoints(g)
    d = (det - src).reshape(-1, 3)
    s = np.broadcast_to(src, det.shape).reshape(-1, 3)
    dominant_x = np.abs(d[:, 0]) >= np.abs(d[:, 1])
    out = np.zeros(len(d))
    for axis, mine in ((0, dominant_x), (1, ~dominant_x)):
        dd, ss = d[mine], s[mine]
        if axis == 0:  # planes of constant x: slices (z, y)
            n_planes, sp, o, n_in, s_in, o_in = nx, sx, ox, ny, sy, oy
            slices = np.transpose(volume, (2, 0, 1))
        else:  # planes of constant y: slices (z, x)
            n_planes, sp, o, n_in, s_in, o_in = ny, sy, oy, nx, sx, ox
            slices = np.transpose(volume, (1, 0, 2))
        padded = np.pad(slices, ((0, 0), (1, 2), (1, 2)))
        planes = (np.arange(n_planes) - (n_planes - 1) / 2) * sp + o
        t = (planes[None, :] - ss[:, axis, None]) / dd[:, axis, None]
        pos_in = ss[:, 1 - axis, None] + t * dd[:, 1 - axis, None]
        pos_z = ss[:, 2, None] + t * dd[:, 2, None]
        j = np.clip((pos_in - o_in) / s_in + (n_in - 1) / 2, -1.0, n_in)
        k = np.clip((pos_z - oz) / sz + (nz - 1) / 2, -1.0, nz)
        j0, k0 = np.floor(j), np.floor(k)
        wj, wk = j - j0, k - k0
        j0, k0 = j0.astype(int) + 1, k0.astype(int) + 1
        i = np.arange(n_planes)[None, :]
        samples = (
            padded[i, k0, j0] * (1 - wk) * (1 - wj)
            + padded[i, k0 + 1, j0] * wk * (1 - wj)
            + padded[i, k0, j0 + 1] * (1 - wk) * wj
            + padded[i, k0 + 1, j0 + 1] * wk * wj
        )
        step = sp * np.linalg.norm(dd, axis=1) / np.abs(dd[:, axis])
        out[mine] = samples.sum(axis=1) * step
    return out.reshape(det.shape[:-1])


def small_scan(n_angles=12, **kw):
    params = dict(dso=250.0, dsd=500.0, n_u=48, n_v=40, du=1.6, dv=1.6)
    params.update(kw)
    angles = np.linspace(0, 2 * np.pi, n_angles, endpoint=False) + 0.2
    return ConeBeamGeometry(angles=angles, **params)


CASES = {
    "centred": (
        VolumeGeometry((32, 32, 32), (1.0, 1.0, 1.0)),
        small_scan(),
        np.array([2.0, -3.0, 1.0]),
        np.array([11.0, 7.0, 9.0]),
        rotation(0.5, 0.3),
    ),
    "offset-anisotropic": (
        VolumeGeometry((24, 30, 36), (1.2, 0.9, 0.8), offset=(3.0, -2.0, 1.5)),
        small_scan(offset_u=2.4, offset_v=-1.1),
        np.array([5.0, -4.0, 2.0]),
        np.array([10.0, 6.0, 8.0]),
        rotation(-0.9, 0.6),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_projection_matches_exact_ellipsoid_line_integrals(case):
    vol_geom, geom, centre, axes, rot = CASES[case]
    volume = ellipsoid_volume(
        vol_geom.shape, vol_geom.spacing, vol_geom.offset, centre, axes, rot
    )
    proj = np.asarray(cone_beam_project(jnp.asarray(volume, FLOAT), vol_geom, geom))
    exact = ellipsoid_line_integrals(geom, centre, axes, rot)
    long = exact > 0.5 * exact.max()
    rel = np.abs(proj[long] - exact[long]) / exact[long]
    assert np.median(rel) <= 0.01
    assert np.percentile(rel, 95) <= 0.05
    # Rays clearly missing the ellipsoid (and its partial-volume rim) see nothing.
    miss = ellipsoid_line_integrals(geom, centre, axes + 2.5, rot) == 0
    assert np.abs(proj[miss]).max() <= 1e-6 * exact.max()


# A grid of one plane block (at most 16 planes per dominant axis), off centre.
ONE_BLOCK = (
    VolumeGeometry((10, 12, 9), (1.5, 1.1, 1.3), offset=(-2.0, 1.0, 0.5)),
    small_scan(n_angles=7, n_u=20, n_v=14),
)


@pytest.mark.parametrize("case", [*CASES, "one-block"])
def test_projection_equals_float64_joseph_reference(case, x64):
    vol_geom, geom = ONE_BLOCK if case == "one-block" else CASES[case][:2]
    volume = np.random.default_rng(5).random(vol_geom.shape)
    proj = cone_beam_project(jnp.asarray(volume, FLOAT), vol_geom, geom)
    ref = joseph_reference(volume, vol_geom, geom)
    err = np.abs(np.asarray(proj, np.float64) - ref).max() / np.abs(ref).max()
    # float32: crossing positions carry ~1e-6 voxel of rounding, and a random
    # volume changes by O(1) per voxel.
    assert err <= (1e-12 if x64 else 2e-5)


def _random_pair(vol_geom, geom, dtype):
    kx, ky = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, vol_geom.shape, dtype)
    y = jax.random.normal(ky, (geom.n_angles, geom.n_v, geom.n_u), dtype)
    return x, y


@pytest.mark.parametrize(
    ("case", "views_per_chunk"),
    [
        ("centred", None),
        ("offset-anisotropic", None),
        ("centred", 5),
        ("one-block", None),
    ],
)
def test_backprojection_is_exact_adjoint(case, views_per_chunk, x64):
    vol_geom, geom = ONE_BLOCK if case == "one-block" else CASES[case][:2]
    x, y = _random_pair(vol_geom, geom, FLOAT)
    ax = cone_beam_project(x, vol_geom, geom, views_per_chunk=views_per_chunk)
    aty = cone_beam_backproject(y, vol_geom, geom, views_per_chunk=views_per_chunk)
    lhs, rhs = jnp.vdot(ax, y), jnp.vdot(x, aty)
    # Relative to the scale of the terms being summed (cancellation-safe).
    scale = jnp.vdot(jnp.abs(ax), jnp.abs(y))
    gap = float(jnp.abs(lhs - rhs) / scale)
    assert gap <= (1e-12 if x64 else 1e-5)


def test_gradient_of_projection_loss_is_backprojected_residual(x64):
    vol_geom, geom, *_ = CASES["offset-anisotropic"]
    x, y = _random_pair(vol_geom, geom, FLOAT)

    def loss(v):
        r = cone_beam_project(v, vol_geom, geom) - y
        return 0.5 * jnp.sum(r**2)

    grad = jax.grad(loss)(x)
    expected = cone_beam_backproject(
        cone_beam_project(x, vol_geom, geom) - y, vol_geom, geom
    )
    np.testing.assert_allclose(
        grad, expected, rtol=1e-10 if x64 else 1e-5, atol=1e-9 if x64 else 1e-3
    )


def test_vjp_of_backprojector_is_projector():
    vol_geom, geom, *_ = CASES["centred"]
    x, y = _random_pair(vol_geom, geom, FLOAT)
    _, vjp = jax.vjp(lambda p: cone_beam_backproject(p, vol_geom, geom), y)
    np.testing.assert_allclose(
        vjp(x)[0], cone_beam_project(x, vol_geom, geom), rtol=1e-6, atol=1e-6
    )


def test_check_grads_reverse_mode():
    vol_geom, geom, *_ = CASES["centred"]
    x, y = _random_pair(vol_geom, geom, FLOAT)
    check_grads(
        lambda v: cone_beam_project(v, vol_geom, geom),
        (x,),
        order=1,
        modes=("rev",),
        eps=1e-2,
        atol=1e-2,
        rtol=1e-2,
    )
    check_grads(
        lambda p: cone_beam_backproject(p, vol_geom, geom),
        (y,),
        order=1,
        modes=("rev",),
        eps=1e-2,
        atol=1e-2,
        rtol=1e-2,
    )


def test_jit_with_traced_geometry_compiles_once():
    vol_geom, geom, *_ = CASES["centred"]
    x, _ = _random_pair(vol_geom, geom, FLOAT)
    traces = []

    @jax.jit
    def project(v, g):
        traces.append(None)
        return cone_beam_project(v, vol_geom, g)

    a = project(x, geom)
    rotated = small_scan()
    rotated = ConeBeamGeometry(
        rotated.dso,
        rotated.dsd,
        rotated.n_u,
        rotated.n_v,
        rotated.du,
        rotated.dv,
        np.asarray(rotated.angles) + 1,
    )
    b = project(x, rotated)
    assert len(traces) == 1
    assert not np.allclose(a, b)
    np.testing.assert_allclose(
        b, cone_beam_project(x, vol_geom, rotated), rtol=1e-5, atol=1e-4
    )


def test_projection_is_finite_and_translation_consistent():
    # A blob shifted by the grid offset projects like the unshifted one moved.
    vol_geom, geom, *_ = CASES["centred"]
    blob = ellipsoid_volume(
        (32, 32, 32),
        (1.0, 1.0, 1.0),
        (0, 0, 0),
        np.zeros(3),
        np.array([10.0, 10.0, 10.0]),
        np.eye(3),
    )
    moved = VolumeGeometry((32, 32, 32), (1.0, 1.0, 1.0), offset=(0.0, 0.0, 4.0))
    p = np.asarray(cone_beam_project(jnp.asarray(blob, FLOAT), moved, geom))
    exact = ellipsoid_line_integrals(
        geom, np.array([0.0, 0.0, 4.0]), np.array([10.0, 10.0, 10.0]), np.eye(3)
    )
    assert np.all(np.isfinite(p))
    long = exact > 0.5 * exact.max()
    assert np.median(np.abs(p[long] - exact[long]) / exact[long]) <= 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dsd=200.0), "dsd must exceed dso"),
        (dict(du=0.0), "du must lie in"),
        (dict(dso=-1.0), "dso must lie in"),
        (dict(angles=[]), "angles must be a non-empty"),
        (dict(angles=[0.0, np.nan]), "angles must be finite"),
        (dict(n_u=0), "n_u must be >= 1"),
    ],
)
def test_invalid_scan_geometry_raises(kwargs, match):
    params = dict(dso=250.0, dsd=500.0, n_u=8, n_v=8, du=1.0, dv=1.0, angles=[0.0])
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ConeBeamGeometry(**params)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(spacing=(1.0, 0.0, 1.0)), r"spacing\[y\] must lie in"),
        (dict(shape=(4, 0, 4)), "shape must hold positive"),
        (dict(offset=(0.0, np.inf, 0.0)), r"offset\[y\] must be finite"),
    ],
)
def test_invalid_volume_geometry_raises(kwargs, match):
    params = dict(shape=(4, 4, 4), spacing=(1.0, 1.0, 1.0))
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        VolumeGeometry(**params)


def test_volume_outside_source_circle_and_bad_shapes_raise():
    geom = small_scan(n_angles=2)
    big = VolumeGeometry((4, 400, 400), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="inside the source circle"):
        cone_beam_project(jnp.zeros((4, 400, 400)), big, geom)
    vol_geom = VolumeGeometry((4, 5, 6), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="volume must have shape"):
        cone_beam_project(jnp.zeros((4, 6, 5)), vol_geom, geom)
    with pytest.raises(ValueError, match="projections must have shape"):
        cone_beam_backproject(jnp.zeros((2, 8, 8)), vol_geom, geom)
    with pytest.raises(TypeError, match="float"):
        cone_beam_project(jnp.zeros((4, 5, 6), jnp.int32), vol_geom, geom)


def test_non_finite_inputs_raise():
    vol_geom, geom, *_ = CASES["centred"]
    x, y = _random_pair(vol_geom, geom, FLOAT)
    with pytest.raises(ValueError, match="volume must be finite"):
        cone_beam_project(x.at[3, 4, 5].set(jnp.nan), vol_geom, geom)
    with pytest.raises(ValueError, match="projections must be finite"):
        cone_beam_backproject(y.at[0, 1, 2].set(jnp.inf), vol_geom, geom)
    # under jit the check is skipped (traced), like every kernel check
    out = jax.jit(lambda v: cone_beam_project(v, vol_geom, geom))(x)
    assert np.all(np.isfinite(np.asarray(out)))


def test_vmap_over_volumes_matches_loop(x64):
    vol_geom, geom, *_ = CASES["centred"]
    x, _ = _random_pair(vol_geom, geom, FLOAT)
    batch = jnp.stack([x, 2.0 * x])
    out = jax.vmap(lambda v: cone_beam_project(v, vol_geom, geom))(batch)
    single = cone_beam_project(x, vol_geom, geom)
    # float32: the batched program may fold the geometry constants differently;
    # the difference stays within the projector's float32 accuracy (see
    # test_projection_equals_float64_joseph_reference)
    scale = float(jnp.abs(single).max())
    atol = 1e-12 * scale if x64 else 2e-5 * scale
    np.testing.assert_allclose(out[0], single, rtol=0, atol=atol)
    np.testing.assert_allclose(out[1], 2.0 * single, rtol=0, atol=2 * atol)
