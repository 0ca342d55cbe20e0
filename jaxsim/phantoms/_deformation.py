"""Material motion of the phantom: where a point seen at a cardiac phase was at ED.

Tags are material: a tagged frame needs, for each point ``x`` at phase ``p``, its
end-diastolic (tagging-time) position ``X``. The LV of the phantom is a truncated
prolate shell (cavity semi-axes ``(a, a, c)``, epicardium ``(A, A, C)``, common centre
``C`` above the fixed epicardial apex, base plane ``h c`` above the centre; see
``_motion.py``). In cavity-scaled polar coordinates a point is
``centre + u (a sin(theta) cos(phi), a sin(theta) sin(phi), c cos(theta))``: the
cavity is ``u < 1``, and the wall along the ray ``(theta, phi)`` runs from ``u = 1``
to ``U(theta)``, the epicardium or the base plane, whichever comes first. The volume
element is ``a^2 c u^2 sin(theta) du dtheta dphi``, so three coordinates whose
product measure is the volume are kept between the phases:

* the azimuth ``phi``;
* the cumulative wall volume from the apex, ``s(theta)`` (normalised; the wall
  volume is the same at every phase, so ``s`` is a volume fraction at both);
* the transmural volume fraction within the cone, ``m = (u^3 - 1) / (U^3 - 1)``.

The map is therefore volume-preserving in the wall (to the accuracy of a tabulated
``s``), the endocardium maps onto the endocardium, the apex stays fixed and the
endocardial base ring stays on the base plane; the outer wall boundary maps onto the
outer wall boundary (epicardium and base ring together; near the base a point of
one can map onto the other, as the wall volume below their junction changes). The
map is smooth away from the apex and differentiable. The cavity keeps ``u`` and the
remapped angle (continuous with the wall); above the endocardial base ring the angle
is kept. Outside the LV wall (RV, atria, vessels, torso) the displacement of the
boundary point on the same ray is carried over and decays as
``exp(-distance / decay_length)`` with the distance beyond the epicardium or above
the base plane, so distant anatomy is static.

A subject with a residual deformation ``phi`` (``_residual.py``) moves by the
conjugate motion ``phi o M_t o phi^-1``: a point is pulled back through ``phi^-1``,
mapped to end-diastole by the analytic motion ``M_t^-1`` above, and pushed forward
through ``phi`` (the identity at end-diastole, as for the analytic heart).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsim.kernels.checks import check_range

from ._heart import heart_pose
from ._motion import BASE_HEIGHT, lv_shape
from ._residual import displacement_grid, heart_displacement
from ._sdf import rotate
from ._subject import Subject

__all__ = ["end_diastolic_positions"]

_TINY = 1e-12
DECAY_LENGTH = 10.0  # mm
_N_ANGLES = 1025  # samples of the cumulative wall volume s(cos(theta))


def _wall_extent(shape, cos_t, sin_t):
    """``U(theta)``: the ray factor where the wall ends (epicardium or base plane)."""
    epi = 1.0 / jnp.sqrt(
        (shape.a * sin_t / shape.radius) ** 2 + (shape.c * cos_t / shape.center) ** 2
    )
    base = BASE_HEIGHT / jnp.maximum(cos_t, BASE_HEIGHT * 1e-6)  # h c / (c cos)
    return jnp.minimum(epi, base)


def _cumulative_wall(shape):
    """Normalised wall volume from the apex, ``s``, tabulated against ``cos(theta)``.

    In ``x = cos(theta)`` the cone volume density is ``a^2 c (U^3 - 1) / 3``, smooth
    at the apex (no ``sin(theta)`` factor), so linear interpolation is accurate.

    Returns:
        ``(x (N,), s (N,))``: ``x`` ascending from the apex (-1) to the base ring
        (``BASE_HEIGHT``), ``s`` ascending from 0 to 1 (trapezoid rule).
    """
    x = jnp.linspace(-1.0, BASE_HEIGHT, _N_ANGLES, dtype=shape.a.dtype)
    sin_t = jnp.sqrt(jnp.maximum(1.0 - x * x, 0.0))
    density = shape.a**2 * shape.c * (_wall_extent(shape, x, sin_t) ** 3 - 1.0) / 3.0
    segments = 0.5 * (density[1:] + density[:-1]) * (x[1:] - x[:-1])
    s = jnp.concatenate([jnp.zeros((1,), x.dtype), jnp.cumsum(segments)])
    return x, s / s[-1]


def end_diastolic_positions(
    subject: Subject,
    points,
    cardiac_phase=0.0,
    *,
    decay_length=DECAY_LENGTH,
):
    """End-diastolic world positions of the material points at ``points``.

    Args:
        subject: one ``Subject`` (scalar leaves; vmap for batches).
        points: ``(..., 3)`` world ``(x, y, z)`` in mm, positions at
            ``cardiac_phase``.
        cardiac_phase: scalar in [0, 1); 0 (end-diastole) gives the identity.
        decay_length: mm over which the motion outside the LV wall decays, > 0.

    Returns:
        ``(..., 3)`` world mm, the same dtype as ``points``. Differentiable in the
        points and in every subject parameter.

    Example:
        >>> s = default_subject()
        >>> end_diastolic_positions(s, jnp.zeros((4, 3)), 0.3).shape
        (4, 3)
    """
    check_range(
        "cardiac_phase",
        cardiac_phase,
        low=0.0,
        high=1.0,
        low_inclusive=True,
        high_inclusive=False,
    )
    check_range("decay_length", decay_length, low=0.0, high=None, unit="mm")
    return _ed_positions(subject, jnp.asarray(points), cardiac_phase, decay_length)


@jax.jit
def _ed_positions(subject, points, cardiac_phase, decay_length):
    deformation = subject.deformation
    if deformation is None:
        return _analytic_ed_positions(subject, points, cardiac_phase, decay_length)
    pose = heart_pose(subject)

    def warp(x, inverse):
        grid = displacement_grid(deformation, inverse=inverse)
        p = tuple(x[..., c] for c in range(3))
        d = heart_displacement(deformation, grid, pose.rot, pose.apex, p)
        return jnp.stack([p[c] + d[c] for c in range(3)], axis=-1)

    x_ed = _analytic_ed_positions(
        subject, warp(points, True), cardiac_phase, decay_length
    )
    return warp(x_ed, False).astype(points.dtype)


def _analytic_ed_positions(subject, points, cardiac_phase, decay_length):
    pose = heart_pose(subject)
    now = lv_shape(subject, cardiac_phase)
    ed = pose.ed
    p = (points[..., 0], points[..., 1], points[..., 2])
    q1, q2, q3 = rotate(p, pose.rot, pose.apex)
    z = q3 - now.center
    rho = jnp.sqrt(q1 * q1 + q2 * q2 + _TINY)
    u0 = jnp.sqrt((rho / now.a) ** 2 + (z / now.c) ** 2 + _TINY)
    cos_t, sin_t = (z / now.c) / u0, (rho / now.a) / u0  # cavity-scaled polar angle
    # the angle at ED: same cumulative wall volume from the apex (kept above the
    # endocardial base ring, where both tables end at s = 1)
    grid, s_now = _cumulative_wall(now)
    grid_ed, s_ed = _cumulative_wall(ed)
    cos_e = jnp.interp(jnp.interp(cos_t, grid, s_now), s_ed, grid_ed)
    cos_e = jnp.where(cos_t > BASE_HEIGHT, cos_t, cos_e)
    sin_e = jnp.sqrt(jnp.maximum(1.0 - cos_e * cos_e, _TINY))
    # the point itself if inside the wall's outer boundary, else the boundary point
    extent = _wall_extent(now, cos_t, sin_t)
    u = jnp.minimum(u0, extent)
    m = jnp.clip((u**3 - 1.0) / jnp.maximum(extent**3 - 1.0, 1e-6), 0.0, 1.0)
    u_wall = jnp.cbrt(1.0 + m * (_wall_extent(ed, cos_e, sin_e) ** 3 - 1.0))
    u_ed = jnp.where(u < 1.0, u, u_wall)
    radial = u_ed * ed.a * sin_e / rho  # ED distance from the axis per unit rho
    x_ed = (q1 * radial, q2 * radial, ed.center + u_ed * ed.c * cos_e)
    scale = u / u0
    x_now = (q1 * scale, q2 * scale, now.center + z * scale)
    # decay beyond the epicardium (distance along the ray) and above the base plane
    f_now = 1.0 / jnp.sqrt(
        (now.a * sin_t / now.radius) ** 2 + (now.c * cos_t / now.center) ** 2
    )
    outside = jnp.maximum(u0 - f_now, 0.0) * jnp.sqrt(
        (q1 * q1 + q2 * q2 + z * z) / (u0 * u0)
    )
    above = jnp.maximum(q3 - now.base, 0.0)
    decay = jnp.exp(-(outside + above) / decay_length)
    local = tuple(
        q + decay * (xe - xn)
        for q, xe, xn in zip((q1, q2, q3), x_ed, x_now, strict=True)
    )
    world = pose.apex + sum(local[c][..., None] * pose.rot[:, c] for c in range(3))
    return world.astype(points.dtype)
