"""The MR simulators as pure functions: jit(vmap(grad)) over subjects, one trace for
a domain-randomised run, vmap equal to a Python loop.

The headline test differentiates a cine loss through planning, phantom, bSSFP
physics and the receive chain, for a batch of two subjects each planned inside the
traced function, and compares every gradient with central finite differences in
float64.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.labels import TISSUE_INDEX
from jaxsim.mr import (
    BSSFPSequence,
    MRAcquisition,
    TaggingSequence,
    default_tissue_properties,
    simulate_cine,
    simulate_tagged,
)
from jaxsim.phantoms import (
    end_systolic_phase,
    sample_subjects,
    short_axis_geometry,
)

SHAPE, SPACING = (4, 32, 32), (10.0, 5.0, 5.0)
LV, MYO = TISSUE_INDEX["lv_blood"], TISSUE_INDEX["lv_myocardium"]


def _pick(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _cine_loss(weights):
    """A scalar of a noisy 2-coil cine acquisition with B0, bias and a window; the
    geometry is planned on the (traced) subject."""

    def loss(subject, tissue, sequence):
        geometry = short_axis_geometry(subject, spacing=SPACING, shape=SHAPE)
        acq = MRAcquisition(
            noise_std=0.02,
            n_coils=2,
            oversample=1,
            b0_std=15.0,
            bias_std=0.1,
            tukey_alpha=0.3,
        )
        image = simulate_cine(
            jax.random.key(7),
            subject,
            geometry,
            tissue=tissue,
            sequence=sequence,
            acquisition=acq,
            supersample=1,
        ).image
        return jnp.sum(weights * image)

    return loss


# (argument, field, tissue index or None, central-difference step). The soft
# rasteriser's occupancy step is C1, so differences converge only as O(h) near
# boundaries: small steps, in float64.
FD_CHECKS = (
    (0, "edv", None, 1e-4),
    (0, "heart_azimuth", None, 1e-6),
    (0, "wall_thickness", None, 1e-5),
    (1, "t1", LV, 1e-6),
    (1, "pd", MYO, 1e-6),
    (2, "flip", None, 1e-6),
    (2, "tr", None, 1e-9),
    (2, "te", None, 1e-9),
)


def _shifted(args, arg, field, index, h):
    """``args`` with one scalar of one argument's field moved by ``h``."""
    value = getattr(args[arg], field)
    value = value + h if index is None else value.at[index].add(h)
    out = list(args)
    out[arg] = dataclasses.replace(args[arg], **{field: value})
    return tuple(out)


def test_jit_vmap_grad_of_cine_matches_finite_differences():
    with jax.enable_x64(True):
        subjects = sample_subjects(jax.random.key(3), 2, dtype=jnp.float64)
        tissue = jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jnp.float64), default_tissue_properties(1.5)
        )
        seq = BSSFPSequence(
            tr=jnp.float64(3.1e-3), te=jnp.float64(1.55e-3), flip=jnp.float64(1.0)
        )
        weights = jax.random.uniform(jax.random.key(1), (1, *SHAPE), jnp.float64)
        loss = _cine_loss(weights)
        grads = jax.jit(
            jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(0, None, None))
        )(subjects, tissue, seq)
        value = jax.jit(loss)
        for i in range(2):
            args = (_pick(subjects, i), tissue, seq)
            for arg, field, index, h in FD_CHECKS:
                g = getattr(grads[arg], field)[i]
                g = float(g if index is None else g[index])
                up = value(*_shifted(args, arg, field, index, h))
                down = value(*_shifted(args, arg, field, index, -h))
                fd = float((up - down) / (2 * h))
                assert fd != 0.0, field  # the loss does depend on it
                assert abs(g - fd) <= 1e-4 * abs(fd), (field, i, g, fd)


def test_vmap_over_subjects_equals_a_python_loop():
    subjects = sample_subjects(jax.random.key(4), 2)

    def run(subject):
        geometry = short_axis_geometry(subject, spacing=SPACING, shape=SHAPE)
        phases = jnp.stack([0.0, end_systolic_phase(subject)])
        return simulate_cine(
            jax.random.key(2),
            subject,
            geometry,
            cardiac_phases=phases,
            acquisition=MRAcquisition(snr=20.0, n_coils=2, oversample=1),
            supersample=(2, 1, 1),
        )

    batched = jax.jit(jax.vmap(run))(subjects)
    for i in range(2):
        one = run(_pick(subjects, i))
        np.testing.assert_allclose(batched.image[i], one.image, rtol=2e-5, atol=1e-6)
        np.testing.assert_array_equal(batched.labels[i], one.labels)
        np.testing.assert_allclose(batched.noise_std[i], one.noise_std, rtol=1e-5)
    assert not np.allclose(batched.image[0], batched.image[1])


def test_one_compilation_serves_a_domain_randomised_run():
    """50 random receive chains, sequences and tissue draws: traced once."""
    subject = _pick(sample_subjects(jax.random.key(5), 1), 0)
    geometry = short_axis_geometry(subject, spacing=(10.0, 6.0, 6.0), shape=(1, 16, 16))
    traces = []

    @jax.jit
    def simulate(key, acquisition, sequence, scale):
        traces.append(1)  # runs once per trace
        tissue = default_tissue_properties(1.5)
        tissue = dataclasses.replace(tissue, pd=tissue.pd * scale)
        return simulate_cine(
            key,
            subject,
            geometry,
            tissue=tissue,
            sequence=sequence,
            acquisition=acquisition,
            supersample=1,
        ).image

    rng = np.random.default_rng(0)
    images = []
    for i in range(50):
        tr = rng.uniform(2.5e-3, 4e-3)
        acq = MRAcquisition(
            snr=rng.uniform(5, 50),
            b0_std=rng.uniform(0, 60),
            bias_std=rng.uniform(0, 0.4),
            tukey_alpha=rng.uniform(0, 1),
            acceleration=rng.uniform(1, 3),
            n_coils=2,
            oversample=1,
            center_lines=4,
        )
        seq = BSSFPSequence(
            tr=tr, te=tr * rng.uniform(0.3, 0.6), flip=rng.uniform(0.5, 1.3)
        )
        images.append(simulate(jax.random.key(i), acq, seq, rng.uniform(0.8, 1.2)))
    assert len(traces) == 1
    assert all(np.all(np.isfinite(np.asarray(im))) for im in images)
    assert len({float(np.asarray(im).sum()) for im in images}) == 50


@pytest.mark.slow  # two compilations of the tagging pipeline
def test_tagged_is_traceable_over_subjects():
    subjects = sample_subjects(jax.random.key(6), 2)

    def run(subject, flip_total):
        geometry = short_axis_geometry(subject, spacing=SPACING, shape=(1, 32, 32))
        seq = TaggingSequence(tag_spacing=8.0, flip_total=flip_total)
        return simulate_tagged(
            jax.random.key(0),
            subject,
            geometry,
            cardiac_phases=jnp.stack([0.0, end_systolic_phase(subject)]),
            sequence=seq,
            acquisition=MRAcquisition(oversample=1),
            supersample=1,
        ).image

    batched = jax.jit(jax.vmap(run, in_axes=(0, None)))(subjects, 1.2)
    for i in range(2):
        np.testing.assert_allclose(
            batched[i], run(_pick(subjects, i), 1.2), rtol=2e-5, atol=1e-6
        )
    g = jax.grad(lambda f: jnp.sum(jax.vmap(run, in_axes=(0, None))(subjects, f)))
    assert np.isfinite(float(g(1.2))) and float(g(1.2)) != 0.0


@pytest.mark.parametrize("field", ["snr", "noise_std"])
def test_noise_std_sets_sigma_directly(field):
    subject = _pick(sample_subjects(jax.random.key(5), 1), 0)
    geometry = short_axis_geometry(subject, spacing=SPACING, shape=SHAPE)
    acq = MRAcquisition(oversample=1, **{field: 0.05 if field == "noise_std" else 8.0})
    r = simulate_cine(jax.random.key(1), subject, geometry, acquisition=acq)
    clean = simulate_cine(
        jax.random.key(1), subject, geometry, acquisition=MRAcquisition(oversample=1)
    )
    if field == "noise_std":
        np.testing.assert_allclose(float(r.noise_std), 0.05, rtol=1e-6)
    else:
        myo = np.asarray(clean.labels[0]) == MYO
        ref = np.asarray(clean.image[0])[myo].mean() / 8.0
        np.testing.assert_allclose(float(r.noise_std), ref, rtol=1e-4)
