"""ImageGeometry: affine maps indices to world mm exactly like a NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim.geometry import ImageGeometry


def _rotation(a, b, c):
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture
def oblique():
    axes = _rotation(0.3, -0.7, 1.1).T  # rows: unit directions of i, j, k
    return axes, ImageGeometry.from_axes(
        center=(10.0, -5.0, 30.0), axes=axes, spacing=(8.0, 1.5, 1.25), shape=(3, 4, 5)
    )


def test_voxel_centers_match_numpy_reference(oblique):
    axes, geom = oblique
    steps = axes.T * np.array([1.25, 1.5, 8.0])  # columns: steps along i, j, k
    origin = np.array([10.0, -5.0, 30.0]) - steps @ np.array([2.0, 1.5, 1.0])
    k, j, i = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    ref = np.stack([i, j, k], -1) @ steps.T + origin
    got = np.asarray(geom.voxel_centers())
    assert got.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    np.testing.assert_allclose(np.asarray(geom.voxel_centers(2)), ref[2], atol=1e-4)
    np.testing.assert_allclose(np.asarray(geom.center), [10.0, -5.0, 30.0], atol=1e-4)


def test_spacing_volume_and_axes(oblique):
    axes, geom = oblique
    np.testing.assert_allclose(np.asarray(geom.spacing), [8.0, 1.5, 1.25], rtol=1e-6)
    np.testing.assert_allclose(float(geom.voxel_volume), 8.0 * 1.5 * 1.25, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(geom.axes), axes, atol=1e-6)


def test_is_a_pytree_with_static_shape(oblique):
    _, geom = oblique
    leaves, treedef = jax.tree_util.tree_flatten(geom)
    assert len(leaves) == 1 and leaves[0].shape == (4, 4)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    assert again.shape == (3, 4, 5)
    shifted = jax.jit(lambda g: g.world_coordinates(jnp.zeros(3)))(geom)
    np.testing.assert_allclose(shifted, geom.affine[:3, 3], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(affine=np.eye(4), shape=(0, 4, 4)), "shape"),
        (dict(affine=np.eye(4), shape=(4, 4)), "shape"),
        (dict(affine=np.eye(3), shape=(2, 2, 2)), "affine"),
        (dict(affine=np.diag([1.0, 0.0, 1.0, 1.0]), shape=(2, 2, 2)), "singular"),
        (dict(affine=np.full((4, 4), np.nan), shape=(2, 2, 2)), "affine"),
    ],
)
def test_invalid_geometry_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageGeometry(**kwargs)
