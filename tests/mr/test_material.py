"""Material maps: trilinear placement on the heart box and the modulated bSSFP mix,
against an independent float64 NumPy reference (a Bloch fixed point by linear solve
and a trilinear interpolation written with loops), plus invariants and gradients."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxsim.geometry import ImageGeometry
from jaxsim.labels import TISSUES
from jaxsim.mr import (
    MATERIAL_CHANNELS,
    MATERIAL_GROUPS,
    Anatomy,
    BSSFPSequence,
    MaterialBox,
    MRAcquisition,
    TissueProperties,
    acquire_cine,
    check_material,
    check_material_bounds,
    coil_sensitivities,
    default_tissue_properties,
    material_box,
    material_change,
    material_coordinates,
    prepare_anatomy,
    sample_material,
    simulate_cine,
    tissue_signals,
)
from jaxsim.phantoms import (
    default_subject,
    heart_pose,
    residual_deformation,
    short_axis_geometry,
)

X64 = bool(jax.config.read("jax_enable_x64"))
RTOL = 1e-9 if X64 else 2e-4
ATOL = 1e-12 if X64 else 2e-6


# ------------------------------------------------------------------ reference
def ref_bssfp(pd, t1, t2, tr, te, flip):
    """On-resonance alternating-phase bSSFP echo by solving the fixed point of
    one TR with 3x3 matrices (float64)."""
    c, s = np.cos(flip), np.sin(flip)
    rf = np.array([[1.0, 0, 0], [0, c, s], [0, -s, c]])  # tips +z towards +y
    frame = np.diag([-1.0, -1.0, 1.0])  # the RF phase advances by pi
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    relax = np.diag([e2, e2, e1])
    m = np.linalg.solve(
        np.eye(3) - rf @ frame @ relax, rf @ frame @ np.array([0, 0, pd * (1 - e1)])
    )
    return (m[0] + 1j * m[1]) * np.exp(-te / t2)


def ref_trilinear(material, coords):
    """Loop form: nodes at (i + 1) / (g + 1), zero on the faces and outside."""
    c, g = material.shape[0], material.shape[1:]
    out = np.zeros((c,) + coords.shape[1:])
    for idx in np.ndindex(coords.shape[1:]):
        u = [coords[(a,) + idx] for a in range(3)]
        x = [min(max(u[a] * (g[a] + 1), 0.0), g[a] + 1.0) for a in range(3)]
        i0 = [min(int(np.floor(x[a])), g[a]) for a in range(3)]
        for corner in np.ndindex(2, 2, 2):
            w, node = 1.0, []
            for a in range(3):
                f = x[a] - i0[a]
                w *= f if corner[a] else 1.0 - f
                node.append(i0[a] + corner[a] - 1)  # padded index -> node index
            if all(0 <= node[a] < g[a] for a in range(3)):
                out[(slice(None),) + idx] += w * material[(slice(None), *node)]
    return out


def ref_image(fractions, tissue, seq, modulation):
    """``sum_t f_t s(p_t exp(m_group(t)))`` per voxel (float64)."""
    groups = [
        next(i for i, g in enumerate(MATERIAL_GROUPS.values()) if t in g)
        for t in TISSUES
    ]
    pd, t1, t2 = (
        np.asarray(getattr(tissue, k), np.float64) for k in ("pd", "t1", "t2")
    )
    out = np.zeros(fractions.shape[1:], complex)
    for idx in np.ndindex(fractions.shape[1:]):
        for t, g in enumerate(groups):
            m = modulation[(slice(3 * g, 3 * g + 3), *idx)]
            s = ref_bssfp(pd[t] * np.exp(m[0]), t1[t] * np.exp(m[1]),
                          t2[t] * np.exp(m[2]), float(seq.tr), float(seq.te),
                          float(seq.flip))  # fmt: skip
            out[idx] += fractions[(t, *idx)] * s
    return out


@pytest.fixture(scope="module")
def subject():
    return default_subject()


@pytest.fixture(scope="module")
def small(subject):
    geom = short_axis_geometry(subject, shape=(2, 24, 24), spacing=(10.0, 5.0, 5.0))
    return subject, geom, material_box(subject)


def _synthetic_anatomy(shape=(2, 6, 8), n_phases=2, n_coils=1, seed=0):
    """Random fractions and material coordinates (no phantom: fast to compile)."""
    rng = np.random.default_rng(seed)
    n = len(TISSUES)
    fractions = rng.dirichlet(np.ones(n), size=(n_phases, *shape))
    coords = rng.uniform(-0.2, 1.2, size=(n_phases, 3, *shape))
    myo = np.zeros(shape, bool)
    myo[:, 2:4, 2:5] = True
    geom = ImageGeometry.axis_aligned(shape=shape, spacing=(8.0, 4.0, 4.0))
    return Anatomy(
        fractions=jnp.asarray(np.moveaxis(fractions, -1, 1), jnp.result_type(float)),
        labels=jnp.zeros((n_phases, *shape), jnp.uint8),
        myo_mask=jnp.asarray(myo),
        coil_maps=coil_sensitivities(geom, n_coils),
        material_coords=jnp.asarray(coords, jnp.result_type(float)),
    )


def _smooth_map(key, g=4, scale=0.3):
    m = scale * jax.random.normal(key, (MATERIAL_CHANNELS, g, g, g))
    return jnp.clip(m, -0.4, 0.4)


# ------------------------------------------------------------------ tests
def test_groups_cover_every_tissue_once():
    members = [t for g in MATERIAL_GROUPS.values() for t in g]
    assert sorted(members) == sorted(TISSUES)
    assert MATERIAL_CHANNELS == 9


def test_sample_material_matches_reference_and_is_zero_outside():
    rng = np.random.default_rng(0)
    material = rng.normal(size=(9, 3, 4, 5))
    coords = rng.uniform(-0.3, 1.3, size=(3, 4, 5))
    coords[:, 0, 0] = [0.0, 0.5, 0.5]  # on a face
    coords[:, 0, 1] = [1.5, 0.5, 0.5]  # outside
    got = np.asarray(sample_material(jnp.asarray(material), jnp.asarray(coords)))
    np.testing.assert_allclose(got, ref_trilinear(material, coords), rtol=RTOL,
                               atol=1e-5 if not X64 else 1e-12)  # fmt: skip
    assert np.all(got[:, 0, 0] == 0) and np.all(got[:, 0, 1] == 0)
    # at a node the sample is the node's value
    node = np.array([(1 + 1) / 4, (2 + 1) / 5, (0 + 1) / 6])[:, None]
    at = np.asarray(sample_material(jnp.asarray(material), jnp.asarray(node)))
    np.testing.assert_allclose(at[:, 0], material[:, 1, 2, 0], rtol=1e-5)


def test_modulated_mix_matches_float64_reference():
    rng = np.random.default_rng(1)
    n = len(TISSUES)
    fractions = rng.dirichlet(np.ones(n), size=(2, 3)).transpose(2, 0, 1)
    modulation = rng.uniform(-0.4, 0.4, size=(9, 2, 3))
    tissue = default_tissue_properties()
    seq = BSSFPSequence()
    base = tissue_signals(tissue, seq)
    mixed = jnp.einsum("t,tyx->yx", base, jnp.asarray(fractions, base.real.dtype))
    got = mixed + material_change(
        jnp.asarray(fractions, base.real.dtype), tissue, seq,
        jnp.asarray(modulation, base.real.dtype), base,
    )  # fmt: skip
    ref = ref_image(fractions, tissue, seq, modulation)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=ATOL * 10)


def test_pd_only_map_is_linear_in_exp_m():
    rng = np.random.default_rng(2)
    n = len(TISSUES)
    fractions = jnp.asarray(rng.dirichlet(np.ones(n), size=(4,)).T, jnp.float32)
    tissue, seq = default_tissue_properties(), BSSFPSequence()
    base = tissue_signals(tissue, seq)
    pd_only = np.zeros((9, 4))
    pd_only[0::3] = rng.uniform(-0.3, 0.1, size=(3, 4))

    def image(m):
        m = jnp.asarray(m, jnp.float32)
        return np.asarray(
            jnp.einsum("t,tx->x", base, fractions)
            + material_change(fractions, tissue, seq, m, base)
        )

    doubled = pd_only.copy()
    doubled[0::3] += np.log(2.0)
    np.testing.assert_allclose(image(doubled), 2 * image(pd_only), rtol=1e-5)
    # and equal to the mix of the unmodulated echoes times exp(m) per group
    groups = [next(i for i, g in enumerate(MATERIAL_GROUPS.values()) if t in g)
              for t in TISSUES]  # fmt: skip
    scale = np.exp(pd_only[0::3][groups])  # (T, 4)
    expected = np.einsum("t,tx->x", np.asarray(base), np.asarray(fractions) * scale)
    np.testing.assert_allclose(image(pd_only), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "acq",
    [
        MRAcquisition(oversample=1),
        MRAcquisition(oversample=1, snr=15.0, n_coils=2, bias_std=0.2),
        MRAcquisition(oversample=1, b0_std=30.0),
    ],
    ids=["plain", "noise-coils-bias", "field-map"],
)
def test_zero_map_reproduces_the_image_bit_for_bit(acq):
    anatomy = _synthetic_anatomy(n_coils=acq.n_coils)
    tissue, seq = default_tissue_properties(), BSSFPSequence()
    key = jax.random.key(3)
    plain = acquire_cine(key, anatomy, tissue, seq, acq)[0]
    zero = acquire_cine(key, anatomy, tissue, seq, acq,
                        material=jnp.zeros((9, 3, 3, 3)))[0]  # fmt: skip
    if acq.b0_std is None:
        np.testing.assert_array_equal(np.asarray(zero), np.asarray(plain))
    else:  # XLA fuses the field-map path differently: equal to rounding
        np.testing.assert_allclose(zero, plain, rtol=0, atol=4e-7 * float(plain.max()))
    m = _smooth_map(jax.random.key(4), g=3)
    other = acquire_cine(key, anatomy, tissue, seq, acq, material=m)[0]
    assert float(jnp.max(jnp.abs(other - plain))) > 1e-3


@pytest.mark.integration
def test_simulate_cine_zero_map_is_bit_for_bit_on_the_phantom(small):
    subject, geom, box = small
    key = jax.random.key(3)
    acq = MRAcquisition(snr=15.0, n_coils=2)
    phases = (0.0, 0.3)
    plain = simulate_cine(key, subject, geom, cardiac_phases=phases, acquisition=acq)
    zero = simulate_cine(key, subject, geom, cardiac_phases=phases, acquisition=acq,
                         material=jnp.zeros((9, 4, 4, 4)), box=box)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(zero.image), np.asarray(plain.image))


def test_acquired_image_matches_reference_on_a_synthetic_anatomy():
    """Oversample 1, one uniform coil, no noise: |sum_t f_t s_t(x)| per voxel."""
    anatomy = _synthetic_anatomy(shape=(1, 3, 4), n_phases=1)
    acq = MRAcquisition(oversample=1)
    tissue, seq = default_tissue_properties(), BSSFPSequence()
    m = _smooth_map(jax.random.key(6), g=2)
    image = acquire_cine(jax.random.key(0), anatomy, tissue, seq, acq, material=m)[0]
    coords = np.asarray(anatomy.material_coords[0], np.float64)
    fractions = np.asarray(anatomy.fractions[0], np.float64)
    modulation = ref_trilinear(np.asarray(m, np.float64), coords)
    ref = np.abs(ref_image(fractions, tissue, seq, modulation))
    scale = float(np.abs(np.asarray(tissue_signals(tissue, seq))).max())
    np.testing.assert_allclose(np.asarray(image[0]), ref, rtol=0,
                               atol=1e-11 if X64 else 2e-6 * scale * 10)  # fmt: skip


@pytest.mark.integration
def test_acquired_image_matches_reference_end_to_end(small):
    """Oversample 1, one uniform coil, no noise: the image is |sum_t f_t s_t(x)|
    with the material sampled at the prepared coordinates."""
    subject, geom, box = small
    acq = MRAcquisition(oversample=1)
    anatomy = prepare_anatomy(subject, geom, acq, material_box=box)
    tissue, seq = default_tissue_properties(), BSSFPSequence()
    m = _smooth_map(jax.random.key(6), g=3)
    image = acquire_cine(jax.random.key(0), anatomy, tissue, seq, acq, material=m)[0]
    coords = np.asarray(anatomy.material_coords[0], np.float64)[:, :, 8:14, 8:14]
    fractions = np.asarray(anatomy.fractions[0], np.float64)[:, :, 8:14, 8:14]
    modulation = ref_trilinear(np.asarray(m, np.float64), coords)
    ref = np.abs(ref_image(fractions, tissue, seq, modulation))
    np.testing.assert_allclose(np.asarray(image[0])[:, 8:14, 8:14], ref,
                               rtol=1e-4, atol=1e-6)  # fmt: skip
    assert np.any(np.abs(modulation) > 0.05)  # the window is inside the box


@pytest.mark.integration
def test_material_coordinates_follow_the_heart_frame(subject):
    geom = short_axis_geometry(subject, shape=(2, 6, 6), spacing=(10.0, 8.0, 8.0))
    box = MaterialBox(lower=(-40.0, -50.0, -10.0), upper=(60.0, 50.0, 110.0))
    coords = np.asarray(material_coordinates(subject, geom, box), np.float64)
    pose = heart_pose(subject)
    points = np.asarray(geom.voxel_centers(), np.float64)
    q = (points - np.asarray(pose.apex)) @ np.asarray(pose.rot)
    expected = (q - np.array(box.lower)) / (np.array(box.upper) - np.array(box.lower))
    np.testing.assert_allclose(coords[0], np.moveaxis(expected, -1, 0), atol=1e-4)
    # a zero residual deformation changes nothing; another phase moves the points
    d = subject.replace(deformation=residual_deformation(subject))
    same = material_coordinates(d, geom, box)
    np.testing.assert_allclose(same, coords, atol=1e-5)
    es = np.asarray(material_coordinates(subject, geom, box, cardiac_phases=(0.35,)))
    assert np.max(np.abs(es - coords)) > 0.01


def test_material_box_rejects_bad_corners():
    with pytest.raises(ValueError, match="upper must exceed lower"):
        MaterialBox(lower=(0, 0, 0), upper=(1, -1, 1))
    with pytest.raises(ValueError, match="margin"):
        material_box(default_subject(), margin=-1.0)


def test_check_material_names_shape_values_and_ranges():
    tissue = default_tissue_properties()
    with pytest.raises(ValueError, match=r"shape \(9, g1, g2, g3\)"):
        check_material(jnp.zeros((6, 2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        check_material(jnp.full((9, 2, 2, 2), jnp.nan))
    m = np.zeros((9, 2, 2, 2))
    m[0, 0, 0, 0] = 0.6  # blood PD 0.95 * e^0.6 > 1.5
    with pytest.raises(ValueError, match="blood.*pd"):
        check_material(m, tissue)
    m = np.zeros((9, 2, 2, 2))
    m[2, 1, 1, 1] = 1.0  # blood T2 0.29 * e = 0.79 < T1 1.44: fine
    check_material(m, tissue)
    m[1, 1, 1, 1] = -0.7  # T1 1.44 * e^-0.7 = 0.72 < T2: invalid
    with pytest.raises(ValueError, match="T2 must not exceed T1"):
        check_material(m, tissue)
    subject = default_subject()
    geom = short_axis_geometry(subject, shape=(1, 8, 8), spacing=(10.0, 8.0, 8.0))
    with pytest.raises(ValueError, match="blood"):
        simulate_cine(jax.random.key(0), subject, geom, material=jnp.asarray(m))


def test_check_material_bounds():
    for field in (1.5, 3.0):
        check_material_bounds((0.4, 0.5, 0.5), default_tissue_properties(field))
    with pytest.raises(ValueError, match="pd"):
        check_material_bounds((0.5, 0.1, 0.1), default_tissue_properties())
    with pytest.raises(ValueError, match="T2 must not exceed T1"):
        check_material_bounds((0.1, 0.9, 0.9), default_tissue_properties())
    with pytest.raises(ValueError, match="> 0"):
        check_material_bounds((0.1, 0.0, 0.1), default_tissue_properties())


def test_material_without_prepared_coordinates_is_rejected():
    anatomy = _synthetic_anatomy(n_phases=1)
    anatomy = Anatomy(anatomy.fractions, anatomy.labels, anatomy.myo_mask,
                      anatomy.coil_maps)  # fmt: skip
    acq = MRAcquisition(oversample=1)
    with pytest.raises(ValueError, match="material_box"):
        acquire_cine(
            jax.random.key(0), anatomy, default_tissue_properties(), BSSFPSequence(),
            acq, material=jnp.zeros((9, 2, 2, 2)),
        )  # fmt: skip


def test_gradients_of_the_modulated_mix_x64():
    """check_grads of the sampled, modulated mix w.r.t. the map, in float64."""
    rng = np.random.default_rng(8)
    with jax.enable_x64(True):
        n = len(TISSUES)
        fractions = jnp.asarray(rng.dirichlet(np.ones(n), size=(2, 3)).T)
        coords = jnp.asarray(rng.uniform(-0.1, 1.1, size=(3, 3, 2)))
        tissue = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64),
                              default_tissue_properties())  # fmt: skip
        seq = BSSFPSequence()
        base = tissue_signals(tissue, seq)

        @jax.jit
        def f(m):
            z = material_change(fractions, tissue, seq, sample_material(m, coords),
                                base)  # fmt: skip
            return jnp.stack([jnp.real(z), jnp.imag(z)])

        m0 = jnp.asarray(rng.uniform(-0.3, 0.3, size=(9, 2, 2, 2)))
        check_grads(f, (m0,), order=1, modes=("fwd", "rev"), eps=1e-5, rtol=1e-5)
        zero = jnp.zeros_like(m0)
        check_grads(f, (zero,), order=1, modes=("fwd", "rev"), eps=1e-5, rtol=1e-5)
        assert float(jnp.sum(jnp.abs(jax.jacrev(f)(zero)))) > 0


@pytest.mark.integration
def test_gradients_wrt_the_map_x64():
    """check_grads of a weighted image sum w.r.t. the map, in float64."""
    with jax.enable_x64(True):
        anatomy = jax.tree.map(
            lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x,
            _synthetic_anatomy(shape=(1, 4, 4), n_phases=1),
        )
        acq = MRAcquisition(oversample=1)
        tissue = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64),
                              default_tissue_properties())  # fmt: skip
        seq = BSSFPSequence()
        w = jnp.linspace(-1.0, 1.0, 4, dtype=jnp.float64)[None, None, :, None]

        def f(m):
            image = acquire_cine(jax.random.key(0), anatomy, tissue, seq, acq,
                                 material=m)[0]  # fmt: skip
            return jnp.sum(w * image)

        m0 = 0.2 * jax.random.normal(jax.random.key(7), (9, 2, 2, 2), jnp.float64)
        check_grads(f, (m0,), order=1, modes=("rev",), eps=1e-5, rtol=1e-5)
        # exact derivative at the zero map too (where the change is exactly zero)
        zero = jnp.zeros_like(m0)
        check_grads(f, (zero,), order=1, modes=("rev",), eps=1e-5, rtol=1e-5)
        assert float(jnp.sum(jnp.abs(jax.grad(f)(zero)))) > 0


def test_gradients_wrt_tissue_and_sequence_with_a_map_x64():
    """The image's derivative in T1, T2, PD and the flip angle is the same with
    a zero map as without one, and matches central differences with a map that
    is zero in part of the grid (a regression: the zero branch once counted the
    tissue derivative twice)."""
    with jax.enable_x64(True):
        anatomy = jax.tree.map(
            lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x,
            _synthetic_anatomy(shape=(1, 3, 4), n_phases=1, seed=3),
        )
        acq = MRAcquisition(oversample=1)
        tissue0 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64),
                               default_tissue_properties())  # fmt: skip
        seq0 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), BSSFPSequence())
        w = jnp.linspace(-1.0, 1.0, 4, dtype=jnp.float64)[None, None, None, :]
        m = np.zeros((9, 2, 2, 2))
        m[3:6] = 0.3 * np.random.default_rng(4).normal(size=(3, 2, 2, 2))  # myocardium
        maps = {"none": None, "zero": jnp.zeros((9, 2, 2, 2)), "part": jnp.asarray(m)}

        def f(x, material):
            tissue = TissueProperties(pd=x["pd"], t1=x["t1"], t2=x["t2"])
            seq = dataclasses.replace(seq0, flip=x["flip"])
            image = acquire_cine(jax.random.key(0), anatomy, tissue, seq, acq,
                                 material=material)[0]  # fmt: skip
            return jnp.sum(w * image)

        x0 = {"pd": tissue0.pd, "t1": tissue0.t1, "t2": tissue0.t2,
              "flip": seq0.flip}  # fmt: skip
        grads = {k: jax.grad(f)(x0, v) for k, v in maps.items()}
        for leaf in x0:
            np.testing.assert_allclose(np.asarray(grads["zero"][leaf]),
                                       np.asarray(grads["none"][leaf]),
                                       rtol=1e-9, atol=1e-14)  # fmt: skip
        # central differences along a direction relative to each value (air's
        # zero PD and relaxation times stay zero)
        rng = np.random.default_rng(5)
        d = {k: jnp.asarray(rng.normal(size=np.shape(v))) * v for k, v in x0.items()}
        eps = 1e-6
        step = lambda s: {k: x0[k] + s * eps * d[k] for k in x0}  # noqa: E731
        fd = (f(step(1), maps["part"]) - f(step(-1), maps["part"])) / (2 * eps)
        ad = sum(jnp.vdot(grads["part"][k], d[k]) for k in x0)
        assert abs(float(ad)) > 1e-6
        np.testing.assert_allclose(float(ad), float(fd), rtol=1e-6)
