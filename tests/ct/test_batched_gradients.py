"""The headline: jit(vmap(grad)) of a CT loss over subjects with planned geometries.

Each subject's axial grid is planned inside the traced function from the subject
itself (a traced affine, static spacing); gradients reach subject parameters and
CT materials and must match central finite differences in float64, and the
batched values must equal a Python loop over the subjects.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxsim.ct as ct
from jaxsim.phantoms import axial_geometry, sample_subjects

SHAPE, SPACING = (4, 32, 32), (12.0, 10.0, 10.0)
# (name, step of the central difference) of every scalar differentiated; the
# differences converge to the gradients within 1e-3 at these steps
STEPS = {
    "edv": 0.0625,  # mL
    "offset_x": 0.0125,  # mm, heart_offset[0]
    "body_ap": 0.0125,  # mm
    "iodine": 0.125,  # mg/mL in the LV blood
    "bone": 1.25e-3,  # volume fraction of cortical bone in "bone"
}


def _loss_fn(materials, acquisition):
    lv = materials.index("lv_blood")
    bone = materials.index("bone"), materials.materials.index("bone")

    def loss(params, subject, key):
        offset = subject.heart_offset.at[0].set(params["offset_x"])
        s = subject.replace(
            edv=params["edv"], heart_offset=offset, body_ap=params["body_ap"]
        )
        m = materials.replace(
            iodine=materials.iodine.at[lv].set(params["iodine"]),
            composition=materials.composition.at[bone].set(params["bone"]),
        )
        geometry = axial_geometry(s, spacing=SPACING, shape=SHAPE)
        result = ct.simulate_ct(
            key, s, geometry=geometry, materials=m, acquisition=acquisition,
            supersample=1,
        )  # fmt: skip
        return jnp.mean((result.image / 1000.0) ** 2)

    return loss


def test_vmap_grad_over_subjects_with_planned_geometry_matches_differences():
    with jax.enable_x64(True):
        subjects = sample_subjects(jax.random.key(11), 2)
        materials = ct.default_ct_materials()
        acquisition = ct.CTAcquisition(n_views=12, noise="gaussian", i0=1e5)
        loss = _loss_fn(materials, acquisition)
        params = dict(
            edv=subjects.edv,
            offset_x=subjects.heart_offset[:, 0],
            body_ap=subjects.body_ap,
            iodine=jnp.asarray([18.0, 14.0]),
            bone=jnp.asarray([0.2, 0.25]),
        )
        keys = jax.random.split(jax.random.key(3), 2)
        values, grads = jax.jit(jax.vmap(jax.value_and_grad(loss)))(
            params, subjects, keys
        )
        assert values.dtype == jnp.float64
        single = jax.jit(loss)
        for i in range(2):
            subject = jax.tree_util.tree_map(lambda x, i=i: x[i], subjects)
            p = {k: v[i] for k, v in params.items()}
            # vmap over subjects equals a Python loop
            value = single(p, subject, keys[i])
            np.testing.assert_allclose(values[i], value, rtol=1e-12)
            for name, h in STEPS.items():
                up = single({**p, name: p[name] + h}, subject, keys[i])
                down = single({**p, name: p[name] - h}, subject, keys[i])
                fd = (up - down) / (2 * h)
                # the soft boundaries are C1 steps, so differences converge at
                # first order in h for some fields: 2e-3 of relative tolerance
                np.testing.assert_allclose(
                    grads[name][i], fd, rtol=2e-3, atol=1e-9, err_msg=name
                )
            assert np.all(np.abs([grads[n][i] for n in STEPS]) > 1e-8)
