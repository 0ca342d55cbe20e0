"""The differentiable chain latent -> ShapeGLO / MaterialGLO -> phantom -> cine MR
-> SPADE enhancer -> U-Net -> Dice + CE loss, under ``jax.jit``: its gradients with
respect to the shape latent, a subject parameter, a tissue property, a sequence
parameter and generator weights against central finite differences (x64, tiny
sizes), and its outputs against the simulator called piece by piece."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsim.labels import ACDC, task_fractions
from jaxsim.models import MaterialGLO, ShapeGLO, SPADEGenerator, UNet
from jaxsim.mr import BSSFPSequence, default_tissue_properties, simulate_cine
from jaxsim.phantoms import short_axis_geometry, tissue_fractions
from jaxsim.train import SimulationChain, normalize


def _chain(enhancer=True, material=True):
    rngs = nnx.Rngs(0)
    shape = ShapeGLO(latent_dim=3, hidden=6, grid_shape=(2, 2, 2), zero_init=False,
                     rngs=rngs)  # fmt: skip
    mat = MaterialGLO(latent_dim=3, grid=4, width=8, rngs=rngs) if material else None
    enh = SPADEGenerator(5, 1, ngf=2, hidden=4, rngs=rngs) if enhancer else None
    seg = UNet(2, 1, 4, channels=(4, 8), strides=(2,), rngs=rngs)
    chain = SimulationChain(shape, mat, enh, seg, shape=(32, 32),
                            spacing=(8.0, 6.0, 6.0))  # fmt: skip
    return chain


def test_chain_checks_its_layout():
    rngs = nnx.Rngs(0)
    shape = ShapeGLO(latent_dim=2, hidden=4, grid_shape=(2, 2, 2), rngs=rngs)
    enh = SPADEGenerator(5, 1, ngf=2, hidden=4, rngs=rngs)
    seg = UNet(2, 1, 4, channels=(4, 8), strides=(2,), rngs=rngs)
    with pytest.raises(ValueError, match="multiples of the enhancer's factor 32"):
        SimulationChain(shape, None, enh, seg, shape=(48, 48))
    with pytest.raises(ValueError, match="spacing must be three sizes"):
        SimulationChain(shape, None, None, seg, spacing=(8.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="cardiac_phase"):
        SimulationChain(shape, None, None, seg, cardiac_phase=1.0)


@pytest.mark.integration
def test_chain_matches_the_simulator_piece_by_piece():
    """Without a material map and an enhancer the chain's rendering and labels
    are the cine simulator's and the phantom's for the decoded subject."""
    chain = _chain(enhancer=False, material=False)
    params = chain.parameters()
    tissue, seq = default_tissue_properties(1.5), BSSFPSequence()
    z = jnp.asarray([0.3, -0.2, 0.1])
    out = jax.jit(
        lambda p, z: {
            k: v
            for k, v in chain.forward(p, z, tissue=tissue, sequence=seq).items()
            if k != "subject"
        }  # fmt: skip
    )(params, z)
    shape_model = nnx.merge(chain.graphs["shape"], params["shape"],
                            chain.rest["shape"])  # fmt: skip
    subject = jax.tree.map(lambda a: a[0], shape_model.subjects(z[None]))
    geometry = short_axis_geometry(subject, spacing=(8.0, 6.0, 6.0),
                                   shape=(1, 32, 32))  # fmt: skip
    from jaxsim.mr import MRAcquisition

    acq = MRAcquisition(oversample=1)
    cine = simulate_cine(jax.random.key(0), subject, geometry, tissue=tissue,
                         sequence=seq, acquisition=acq)  # fmt: skip
    np.testing.assert_allclose(
        np.asarray(out["physics"]), np.asarray(normalize(cine.image[0])[0]),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    soft = task_fractions(tissue_fractions(subject, geometry), ACDC)[:, 0]
    np.testing.assert_allclose(np.asarray(out["labels"]),
                               np.clip(np.moveaxis(np.asarray(soft), 0, -1), 0, 1),
                               atol=1e-5)  # fmt: skip
    # the labels are the phantom's heart: every class present, a partition
    assert np.all(np.asarray(out["labels"]).sum((0, 1)) > 1.0)
    np.testing.assert_allclose(np.asarray(out["labels"]).sum(-1), 1.0, atol=1e-5)
    assert np.isfinite(float(out["loss"])) and float(out["loss"]) > 0


@pytest.mark.slow
def test_chain_gradients_match_finite_differences():
    """d loss / d (shape latent, RV wall thickness, T1 of every tissue, flip
    angle, the ShapeGLO, MaterialGLO, SPADE and U-Net weights) against central
    differences along random directions, in float64."""
    with jax.enable_x64(True):
        chain = _chain().cast(jnp.float64)
        params = chain.parameters()
        f64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)  # noqa: E731
        tissue = f64(default_tissue_properties(1.5))
        seq = f64(BSSFPSequence())
        inputs = {
            "params": params,
            "z_shape": jnp.asarray([0.3, -0.2, 0.1]),
            "z_material": jnp.asarray([0.2, 0.4, -0.3]),
            "rv_wall": jnp.asarray(4.0),
            "tissue": tissue,
            "sequence": seq,
        }

        def loss(x):
            return chain.loss(
                x["params"], x["z_shape"], x["z_material"], tissue=x["tissue"],
                sequence=x["sequence"], overrides={"rv_wall_thickness": x["rv_wall"]},
            )  # fmt: skip

        value_and_grad = jax.jit(jax.value_and_grad(loss))
        value, grad = value_and_grad(inputs)
        assert np.isfinite(float(value))
        f = jax.jit(loss)
        rng = np.random.default_rng(0)

        def direction(tree):
            """A random unit-scale direction in the leaves of ``tree`` (zero
            elsewhere in the inputs)."""
            return jax.tree.map(
                lambda a: jnp.asarray(rng.normal(size=np.shape(a)), jnp.float64)
                if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, tree
            )  # fmt: skip

        zero = jax.tree.map(
            lambda a: jnp.zeros_like(a)
            if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, inputs
        )  # fmt: skip
        cases = {
            "z_shape": {**zero, "z_shape": direction(inputs["z_shape"])},
            "z_material": {**zero, "z_material": direction(inputs["z_material"])},
            "rv_wall_thickness": {**zero, "rv_wall": jnp.asarray(1.0)},
            "T1": {**zero, "tissue": dataclasses.replace(zero["tissue"],
                t1=direction(tissue.t1) * tissue.t1 * 0.1)},
            "flip": {**zero, "sequence": dataclasses.replace(zero["sequence"],
                flip=jnp.asarray(0.1))},
        }  # fmt: skip
        for name in ("shape", "material", "enhancer", "segmenter"):
            p = {k: jax.tree.map(jnp.zeros_like, v) for k, v in params.items()}
            if name == "enhancer":
                # its last stages: the random 32-pixel GauGAN's 2x2 instance norms
                # at the bottom make central differences there meaningless
                for block in ("up_3", "conv_img"):
                    p[name][block] = direction(params[name][block])
            else:
                p[name] = direction(params[name])
            cases[f"{name} weights"] = {**zero, "params": p}
        for name, v in cases.items():
            # smaller steps through the networks: LeakyReLU kinks lie within
            # 1e-6 of some of their many activations
            eps = 1e-7 if name.endswith("weights") else 1e-5
            plus = jax.tree.map(lambda a, d, eps=eps: a + eps * d if jnp.issubdtype(
                jnp.asarray(a).dtype, jnp.floating) else a, inputs, v)  # fmt: skip
            minus = jax.tree.map(lambda a, d, eps=eps: a - eps * d if jnp.issubdtype(
                jnp.asarray(a).dtype, jnp.floating) else a, inputs, v)  # fmt: skip
            fd = (float(f(plus)) - float(f(minus))) / (2 * eps)
            ad = sum(
                float(jnp.vdot(g, d))
                for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(v), strict=True)
                if jnp.issubdtype(jnp.asarray(g).dtype, jnp.floating)
            )
            assert abs(ad) > 1e-9, (name, ad)  # the input reaches the loss
            np.testing.assert_allclose(ad, fd, rtol=1e-4, atol=1e-10, err_msg=name)
