"""Scan planning: image geometries on the subject's own cardiac axes.

Display conventions (rows ``j`` run down the screen, columns ``i`` to the right):
short-axis stacks run from base (``k = 0``) to apex with anterior at the top and the
RV on the left; long-axis views have the apex at the top; axial views are radiological
(patient right on the image's left, anterior at the top).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxsim.geometry import ImageGeometry

from ._heart import heart_pose
from ._subject import Subject, check_subject

__all__ = [
    "lv_long_axis",
    "short_axis_geometry",
    "axial_geometry",
    "two_chamber_geometry",
    "four_chamber_geometry",
]


def lv_long_axis(subject: Subject, respiratory_phase=0.0):
    """End-diastolic LV long axis: epicardial apex and base-plane centre (world mm).

    Returns:
        ``(apex, base_centre)``, each ``(3,)`` world ``(x, y, z)`` in mm.
    """
    pose = heart_pose(subject, respiratory_phase)
    return pose.apex, pose.apex + pose.ed.base * pose.rot[:, 2]


def _unit(v):
    return v / jnp.linalg.norm(v)


def _check(subject, spacing, shape):
    check_subject(subject)
    if len(tuple(spacing)) != 3 or len(tuple(shape)) != 3:
        raise ValueError(
            f"spacing and shape must have 3 entries (z, y, x); got {spacing!r}, "
            f"{shape!r}"
        )


def short_axis_geometry(
    subject: Subject,
    *,
    spacing=(8.0, 1.25, 1.25),
    shape=(12, 256, 256),
    respiratory_phase=0.0,
) -> ImageGeometry:
    """Short-axis stack planned on the subject's LV long axis.

    The slice normal (``k`` axis) is the long axis, pointing from base to apex; the
    stack is centred on the midpoint between the end-diastolic apex and base centre.

    Args:
        subject: one ``Subject``.
        spacing: ``(slice spacing, row, column)`` in mm.
        shape: ``(n_slices, n_rows, n_columns)``.
        respiratory_phase: the breath-hold position the plan is made at.

    Returns:
        The ``ImageGeometry``.

    Example:
        >>> geom = short_axis_geometry(default_subject("female"))
        >>> geom.shape
        (12, 256, 256)
    """
    _check(subject, spacing, shape)
    pose = heart_pose(subject, respiratory_phase)
    apex, base = lv_long_axis(subject, respiratory_phase)
    k_axis = -pose.rot[:, 2]
    anterior = jnp.asarray([0.0, 1.0, 0.0], k_axis.dtype)
    j_axis = -_unit(anterior - jnp.dot(anterior, k_axis) * k_axis)  # down = posterior
    i_axis = jnp.cross(j_axis, k_axis)
    # Put the RV on the image's left: flip the column axis if it points at the RV.
    i_axis = jnp.where(jnp.dot(i_axis, pose.rot[:, 0]) > 0, -i_axis, i_axis)
    axes = jnp.stack([i_axis, j_axis, k_axis])
    return ImageGeometry.from_axes(
        center=0.5 * (apex + base), axes=axes, spacing=spacing, shape=shape
    )


def _long_axis_view(subject, in_plane, spacing, shape, respiratory_phase):
    pose = heart_pose(subject, respiratory_phase)
    apex, base = lv_long_axis(subject, respiratory_phase)
    j_axis = pose.rot[:, 2]  # down the screen: apex -> base
    i_axis = in_plane
    k_axis = jnp.cross(i_axis, j_axis)
    axes = jnp.stack([i_axis, j_axis, k_axis])
    return ImageGeometry.from_axes(
        center=0.5 * (apex + base) + 15.0 * j_axis,
        axes=axes,
        spacing=spacing,
        shape=shape,
    )


def four_chamber_geometry(
    subject: Subject,
    *,
    spacing=(8.0, 1.25, 1.25),
    shape=(1, 256, 256),
    respiratory_phase=0.0,
) -> ImageGeometry:
    """Four-chamber view: the plane through the LV long axis and the RV centre.

    Args and returns as for :func:`short_axis_geometry` (apex at the top, RV on the
    image's left, slices stacked along the plane normal).
    """
    _check(subject, spacing, shape)
    pose = heart_pose(subject, respiratory_phase)
    return _long_axis_view(subject, -pose.rot[:, 0], spacing, shape, respiratory_phase)


def two_chamber_geometry(
    subject: Subject,
    *,
    spacing=(8.0, 1.25, 1.25),
    shape=(1, 256, 256),
    respiratory_phase=0.0,
) -> ImageGeometry:
    """Two-chamber view: the plane through the LV long axis avoiding the RV.

    Args and returns as for :func:`short_axis_geometry` (apex at the top, anterior
    wall on the image's left).
    """
    _check(subject, spacing, shape)
    pose = heart_pose(subject, respiratory_phase)
    return _long_axis_view(subject, pose.rot[:, 1], spacing, shape, respiratory_phase)


def axial_geometry(
    subject: Subject,
    *,
    spacing=(1.0, 1.0, 1.0),
    shape=(1, 400, 400),
    center=None,
    respiratory_phase=0.0,
) -> ImageGeometry:
    """Axial (transverse) grid in the radiological display convention.

    Args:
        subject: one ``Subject``.
        spacing: ``(sz, sy, sx)`` in mm.
        shape: ``(nz, ny, nx)``.
        center: ``(3,)`` world mm of the grid centre; default: the torso axis at the
            height of the LV long-axis midpoint.
        respiratory_phase: breath-hold position for the default centre.

    Returns:
        The ``ImageGeometry`` (``i`` towards the patient's left, ``j`` posterior,
        ``k`` superior).
    """
    _check(subject, spacing, shape)
    if center is None:
        apex, base = lv_long_axis(subject, respiratory_phase)
        mid = 0.5 * (apex + base)
        center = jnp.stack([jnp.zeros_like(mid[0]), jnp.zeros_like(mid[0]), mid[2]])
    axes = jnp.asarray([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    return ImageGeometry.from_axes(
        center=center, axes=axes, spacing=spacing, shape=shape
    )
