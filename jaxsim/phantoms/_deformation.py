"""Material motion of the phantom: where a point seen at a cardiac phase was at ED.

Tags are material: a tagged frame needs, for each point ``x`` at phase ``p``, its
end-diastolic (tagging-time) position ``X``. The LV of the phantom is a truncated
prolate shell (cavity semi-axes ``(a, a, c)``, epicardium ``(A, A, C)``, common centre
``C`` above the fixed epicardial apex; see ``_motion.py``), so a natural material
frame is built from it:

* the *endocardial angle* ``theta`` of a point: the ray from the centre through the
  point meets the cavity surface at ``(a sin(theta), c cos(theta))``; it and the
  azimuth about the long axis are kept;
* the *transmural coordinate*: along that ray the point lies at ``u0`` times the
  endocardial distance (``u0 = |(rho/a, z/c)|``) and the epicardium at ``F`` times;
  the cone volume fraction ``m = (u0^3 - 1) / (F^3 - 1)`` is kept (so the wall
  thickens where it shortens, conserving volume along each thin cone to the extent
  the phantom's shapes allow).

Hence the endocardium maps onto the endocardium, the epicardium onto the epicardium,
the apex stays fixed and the endocardial base ring stays on the base plane; the map is
smooth and differentiable. Inside the cavity points scale with the cavity. Outside the
LV wall (RV, atria, vessels, torso) the displacement of the epicardial point on the
same ray is carried over and decays as ``exp(-distance / decay_length)`` with the
distance beyond the epicardium or above the base plane, so distant anatomy is static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsim.kernels._checks import check_range

from ._heart import heart_pose
from ._motion import lv_shape
from ._sdf import rotate
from ._subject import Subject

__all__ = ["end_diastolic_positions"]

_TINY = 1e-12
DECAY_LENGTH = 10.0  # mm


def _ray(shape, q1, q2, q3):
    """Centre-relative height, endocardial and epicardial ray factors of points."""
    z = q3 - shape.center
    rho_sq = q1 * q1 + q2 * q2
    u0 = jnp.sqrt(rho_sq / shape.a**2 + z * z / shape.c**2 + _TINY)
    u1 = jnp.sqrt(rho_sq / shape.radius**2 + z * z / shape.center**2 + _TINY)
    return z, u0, u0 / u1


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
    pose = heart_pose(subject)
    now = lv_shape(subject, cardiac_phase)
    ed = pose.ed
    p = (points[..., 0], points[..., 1], points[..., 2])
    q1, q2, q3 = rotate(p, pose.rot, pose.apex)
    z, u0, f_now = _ray(now, q1, q2, q3)
    # endocardial angle: cos(theta) = z / (c u0), sin(theta) = rho / (a u0)
    cos_t = z / (now.c * u0)
    sin_sq = jnp.clip(1.0 - cos_t * cos_t, 0.0, 1.0)
    f_ed = 1.0 / jnp.sqrt(
        sin_sq * (ed.a / ed.radius) ** 2 + cos_t**2 * (ed.c / ed.center) ** 2
    )
    m = (u0**3 - 1.0) / (f_now**3 - 1.0)
    wall = jnp.cbrt(1.0 + jnp.clip(m, 0.0, 1.0) * (f_ed**3 - 1.0))
    factor = jnp.where(u0 < 1.0, u0, wall)  # ray factor at ED (cavity: homothety)
    # the ED point is centre_ed + factor * (a_ed sin, c_ed cos) along the same azimuth
    k_r = factor * ed.a / (now.a * u0)
    k_z = factor * ed.c / (now.c * u0)
    x_ed = (q1 * k_r, q2 * k_r, ed.center + z * k_z)
    # beyond the epicardium: the displacement of the epicardial point on the ray
    s = jnp.minimum(f_now / u0, 1.0)
    x_now = (q1 * s, q2 * s, now.center + z * s)
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
