"""Residual deformation: shapes beyond the analytic family, volume-preserving.

The analytic heart (``_heart.py``) is a family of truncated spheroids. A
:class:`ResidualDeformation` bends it into other shapes with a smooth, invertible
map ``phi`` of the heart frame, applied by pull-back: the deformed anatomy at ``x``
is the analytic anatomy at ``phi^-1(x)``, i.e. the query points are moved before the
cardiac layers' signed distances are evaluated (so every tissue, every phase and
every simulator sees the same deformed heart).

Construction, in the heart frame (axes ``e_rv, e_3, e_long``, origin the epicardial
apex; see ``_heart.py``):

* a cubic B-spline vector potential ``psi`` on a coarse lattice of control points
  over a box around the ventricles, with coefficients ``psi_max * tanh(control)``;
* the stationary velocity ``v = curl(psi)`` — divergence-free, C2, zero on and
  outside the box, and bounded: ``|v| <= max_displacement`` (``psi_max`` is set from
  the B-spline derivative bound ``sum_k |B'(t - k)| <= 3/2``);
* ``phi^-1 = exp(-v)`` and ``phi = exp(v)`` by scaling and squaring on a dense
  lattice (``2^-steps`` of the field, then ``steps`` self-compositions with
  trilinear interpolation), evaluated at query points by trilinear interpolation.

Because ``div v = 0`` the map preserves volume (its Jacobian determinant is 1 up to
the discretisation of scaling and squaring), so every region keeps its volume: the
subject's ``edv``/``esv`` stay the LV blood volumes of the deformed heart and the
myocardial volume stays constant over the cycle. Deforming the phase-``t`` anatomy
by the same ``phi`` is the same as moving the deformed end-diastolic heart with the
conjugate motion ``phi o M_t o phi^-1`` (``M_t`` the analytic cardiac motion), whose
Jacobian is that of ``M_t`` — phase-independent volume, as the phantom requires.
Zero control values give a zero field exactly, hence today's phantom bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.kernels.checks import check_finite, is_concrete

from ._sdf import rotate

__all__ = [
    "ResidualDeformation",
    "residual_deformation",
    "deformation_box",
    "displacement_grid",
    "deform_points",
    "heart_displacement",
    "check_deformation",
    "velocity_grid",
]

DEFAULT_MAX_DISPLACEMENT = 12.0  # mm
DEFAULT_STEPS = 6  # scaling-and-squaring halvings (velocity / 64 per step)
DEFAULT_RESOLUTION = 3  # dense-lattice nodes per control spacing
_DERIVATIVE_BOUND = 1.5  # max over t of sum_k |B'(t - k)| for the cubic B-spline


def _static_triple(name, value, *, positive=False) -> tuple[float, float, float]:
    value = tuple(float(v) for v in value)
    if len(value) != 3 or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be three finite numbers (mm); got {value!r}")
    if positive and min(value) <= 0:
        raise ValueError(f"{name} must be three numbers > 0; got {value!r}")
    return value


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ResidualDeformation:
    """A smooth, invertible, volume-preserving deformation of the heart.

    Attributes:
        control: ``(n1, n2, n3, 3)`` float array (a pytree leaf: trace and
            differentiate it), unconstrained: the vector potential's B-spline
            coefficients are ``psi_max * tanh(control)``. Indexed along the heart
            axes ``(e_rv, e_3, e_long)``; the last axis holds the potential's
            components along those axes. Zeros give the identity.
        lower, upper: static ``(3,)`` corners (mm) of the box in heart-frame
            coordinates (relative to the epicardial apex, along ``e_rv, e_3,
            e_long``) outside which the deformation is the identity.
        max_displacement: static bound (mm, > 0) on the velocity, hence on how far
            any point moves.
        steps: static number of scaling-and-squaring steps (1..12).
        resolution: static dense-lattice nodes per control spacing (1..8).
    """

    control: jax.Array
    lower: tuple[float, float, float] = dataclasses.field(metadata=dict(static=True))
    upper: tuple[float, float, float] = dataclasses.field(metadata=dict(static=True))
    max_displacement: float = dataclasses.field(
        default=DEFAULT_MAX_DISPLACEMENT, metadata=dict(static=True)
    )
    steps: int = dataclasses.field(default=DEFAULT_STEPS, metadata=dict(static=True))
    resolution: int = dataclasses.field(
        default=DEFAULT_RESOLUTION, metadata=dict(static=True)
    )

    def __post_init__(self):
        lower = _static_triple("lower", self.lower)
        upper = _static_triple("upper", self.upper)
        if not all(h > lo for lo, h in zip(lower, upper, strict=True)):
            raise ValueError(
                f"upper must exceed lower on every axis; got lower={lower}, "
                f"upper={upper}"
            )
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        md = float(self.max_displacement)
        if not (math.isfinite(md) and md > 0):
            raise ValueError(f"max_displacement must be > 0 mm; got {md!r}")
        object.__setattr__(self, "max_displacement", md)
        for name, hi in (("steps", 12), ("resolution", 8)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or not 1 <= value <= hi:
                raise ValueError(f"{name} must be an int in [1, {hi}]; got {value!r}")
            object.__setattr__(self, name, int(value))
        shape = jnp.shape(self.control)
        if len(shape) < 4 or shape[-1] != 3 or min(shape[-4:-1]) < 1:
            raise ValueError(
                "control must have shape (n1, n2, n3, 3) with n >= 1; got "
                f"{tuple(shape)}"
            )

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """``(n1, n2, n3)`` control points along ``e_rv, e_3, e_long``."""
        return tuple(jnp.shape(self.control)[-4:-1])

    @property
    def knot_spacing(self) -> tuple[float, float, float]:
        """Control-point spacing (mm) per heart axis: the box holds ``n + 3`` of
        them (the B-spline support of the outer control points ends on the box)."""
        return tuple(
            (h - lo) / (n + 3)
            for lo, h, n in zip(self.lower, self.upper, self.grid_shape, strict=True)
        )

    def replace(self, **changes) -> ResidualDeformation:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def check_deformation(deformation, name: str = "deformation") -> None:
    """Raise ``TypeError``/``ValueError`` for a non-deformation or a concrete
    ``control`` that is not finite (skipped when traced)."""
    if not isinstance(deformation, ResidualDeformation):
        raise TypeError(
            f"{name} must be a ResidualDeformation or None; got "
            f"{type(deformation).__name__}"
        )
    if is_concrete(deformation.control):
        check_finite(f"{name}.control", np.asarray(deformation.control))


def deformation_box(subject, *, margin=15.0):
    """Heart-frame box ``(lower, upper)`` (mm) holding both ventricles of a
    concrete subject at end-diastole, with ``margin`` mm around them.

    Args:
        subject: one concrete ``Subject``.
        margin: mm added on every side (>= 0).

    Returns:
        Two tuples of three floats: ``lower``, ``upper`` along ``e_rv, e_3, e_long``.
    """
    from ._heart import RV_THICKNESS_GAIN, heart_pose

    if not (math.isfinite(float(margin)) and float(margin) >= 0):
        raise ValueError(f"margin must be >= 0 mm; got {margin!r}")
    ed = heart_pose(subject).ed
    a, c, radius, base = (float(v) for v in (ed.a, ed.c, ed.radius, ed.base))
    thick = float(RV_THICKNESS_GAIN * subject.rv_lv_ratio) * a * a * c / (radius * base)
    rv = 0.7 * radius + radius + thick + float(subject.rv_wall_thickness)
    side = max(1.3 * radius + float(subject.rv_wall_thickness), radius)
    lower = (-radius - margin, -side - margin, -margin)
    upper = (rv + margin, side + margin, base + margin)
    return lower, upper


def residual_deformation(
    subject,
    *,
    grid_shape=(5, 5, 6),
    control=None,
    max_displacement=DEFAULT_MAX_DISPLACEMENT,
    margin=15.0,
    steps=DEFAULT_STEPS,
    resolution=DEFAULT_RESOLUTION,
) -> ResidualDeformation:
    """A deformation over the ventricles of a concrete subject.

    Args:
        subject: one concrete ``Subject`` (sets the box, :func:`deformation_box`).
        grid_shape: ``(n1, n2, n3)`` control points along ``e_rv, e_3, e_long``.
        control: ``(n1, n2, n3, 3)`` unconstrained values; default zeros (the
            identity), in the subject's float dtype.
        max_displacement: bound (mm) on how far a point moves.
        margin: mm of box around the ventricles.
        steps, resolution: scaling-and-squaring steps and dense nodes per control
            spacing.

    Returns:
        :class:`ResidualDeformation`.

    Example:
        >>> s = default_subject()
        >>> d = residual_deformation(s, grid_shape=(4, 4, 5))
        >>> d.control.shape
        (4, 4, 5, 3)
    """
    grid_shape = tuple(int(n) for n in grid_shape)
    if len(grid_shape) != 3 or min(grid_shape) < 1 or max(grid_shape) > 32:
        raise ValueError(f"grid_shape must be three ints in [1, 32]; got {grid_shape}")
    lower, upper = deformation_box(subject, margin=margin)
    dtype = jnp.asarray(subject.edv).dtype
    if control is None:
        control = jnp.zeros((*grid_shape, 3), dtype)
    control = jnp.asarray(control)
    if control.shape != (*grid_shape, 3):
        raise ValueError(
            f"control must have shape {(*grid_shape, 3)}; got {control.shape}"
        )
    return ResidualDeformation(
        control=control,
        lower=lower,
        upper=upper,
        max_displacement=max_displacement,
        steps=steps,
        resolution=resolution,
    )


# ------------------------------------------------------------------ the field
def _bspline(t):
    """Cubic B-spline and its derivative (NumPy, float64)."""
    a = np.abs(t)
    inner = 2.0 / 3.0 - a * a + 0.5 * a**3
    outer = np.where(a < 2.0, (2.0 - a) ** 3 / 6.0, 0.0)
    value = np.where(a < 1.0, inner, outer)
    d_inner = -2.0 * t + 1.5 * t * a
    d_outer = np.where(a < 2.0, -0.5 * np.sign(t) * (2.0 - a) ** 2, 0.0)
    return value, np.where(a < 1.0, d_inner, d_outer)


def _bases(deformation):
    """Per axis: dense node count, basis ``(m, n)`` and derivative (per mm)."""
    r = deformation.resolution
    out = []
    for n, h in zip(deformation.grid_shape, deformation.knot_spacing, strict=True):
        m = r * (n + 3) + 1
        t = np.arange(m)[:, None] / r - (np.arange(n)[None, :] + 2.0)
        value, slope = _bspline(t)
        out.append((value, slope / h))
    return out


def velocity_grid(deformation: ResidualDeformation) -> jax.Array:
    """The velocity ``v = curl(psi)`` (mm, heart axes) on the dense lattice.

    Returns:
        ``(m1, m2, m3, 3)`` with ``m = resolution * (n + 3) + 1`` nodes per axis
        spanning the box (its faces included, where ``v = 0``).
    """
    control = deformation.control
    dtype = jnp.result_type(float, control)
    h_min = min(deformation.knot_spacing)
    psi_max = deformation.max_displacement * h_min / (2 * _DERIVATIVE_BOUND * 3**0.5)
    psi = psi_max * jnp.tanh(control.astype(dtype))
    (b1, d1), (b2, d2), (b3, d3) = (
        tuple(jnp.asarray(x, dtype) for x in pair) for pair in _bases(deformation)
    )

    def grad(axis):  # (m1, m2, m3, 3): d psi_c / d q_axis
        m = [d1 if axis == 0 else b1, d2 if axis == 1 else b2, d3 if axis == 2 else b3]
        return jnp.einsum("ai,bj,ck,ijkd->abcd", *m, psi)

    g1, g2, g3 = grad(0), grad(1), grad(2)
    return jnp.stack(
        [
            g2[..., 2] - g3[..., 1],
            g3[..., 0] - g1[..., 2],
            g1[..., 1] - g2[..., 0],
        ],
        axis=-1,
    )


def _trilinear(field, g):
    """Trilinear interpolation of ``field`` (m1, m2, m3, C) at fractional node
    coordinates ``g`` (tuple of three broadcastable arrays), clamped to the
    lattice (the field is zero on its faces, so outside it is zero)."""
    shape = field.shape[:3]
    base, frac = [], []
    for a in range(3):
        x = jnp.clip(g[a], 0.0, shape[a] - 1.0)
        i = jnp.clip(jnp.floor(x), 0, shape[a] - 2).astype(jnp.int32)
        base.append(i)
        frac.append(x - i.astype(x.dtype))
    flat = field.reshape(-1, field.shape[-1])
    strides = (shape[1] * shape[2], shape[2], 1)
    out = 0.0
    for corner in range(8):
        bits = [(corner >> a) & 1 for a in range(3)]
        index = sum((base[a] + bits[a]) * strides[a] for a in range(3))
        weight = 1.0
        for a in range(3):
            weight = weight * (frac[a] if bits[a] else 1.0 - frac[a])
        out = out + weight[..., None] * flat[index]
    return out


def _node_coordinates(deformation, q, shape):
    return tuple(
        (q[a] - deformation.lower[a])
        * ((shape[a] - 1) / (deformation.upper[a] - deformation.lower[a]))
        for a in range(3)
    )


def displacement_grid(deformation: ResidualDeformation, *, inverse=True) -> jax.Array:
    """Displacement of ``phi^-1 = exp(-v)`` (or ``phi = exp(v)``) on the lattice.

    Args:
        deformation: the :class:`ResidualDeformation`.
        inverse: ``True`` for the pull-back map ``phi^-1`` (what rasterising
            needs), ``False`` for the forward map ``phi``.

    Returns:
        ``(m1, m2, m3, 3)`` displacements (mm, heart axes) at the dense nodes
        (see :func:`velocity_grid`); zero on the box faces.
    """
    v = velocity_grid(deformation)
    u = (-v if inverse else v) * (0.5**deformation.steps)
    shape = u.shape[:3]
    nodes = jnp.meshgrid(*(jnp.arange(n, dtype=u.dtype) for n in shape), indexing="ij")
    scale = [
        (n - 1) / (hi - lo)
        for n, lo, hi in zip(shape, deformation.lower, deformation.upper, strict=True)
    ]

    def square(_, u):  # u <- u + u o (id + u): the map composed with itself
        g = tuple(nodes[a] + u[..., a] * scale[a] for a in range(3))
        return u + _trilinear(u, g)

    return jax.lax.fori_loop(0, deformation.steps, square, u)


def heart_displacement(deformation, grid, rot, apex, p):
    """World displacement (mm) at world points ``p`` of a map given on the lattice.

    Args:
        deformation: the :class:`ResidualDeformation` (for its box).
        grid: ``(m1, m2, m3, 3)`` from :func:`displacement_grid`.
        rot, apex: the heart frame (``(3, 3)`` columns ``e_rv, e_3, e_long``;
            ``(3,)`` mm).
        p: tuple ``(x, y, z)`` of broadcastable world arrays (mm).

    Returns:
        Tuple of three world displacement arrays (mm); exactly zero where the
        grid is zero (so ``p + d`` is ``p`` bit for bit for zero control).
    """
    q = rotate(p, rot, apex)
    u = _trilinear(grid, _node_coordinates(deformation, q, grid.shape[:3]))
    return tuple(
        u[..., 0] * rot[r, 0] + u[..., 1] * rot[r, 1] + u[..., 2] * rot[r, 2]
        for r in range(3)
    )


def deform_points(subject, points, *, inverse=False, respiratory_phase=0.0):
    """Apply a subject's residual deformation ``phi`` (or ``phi^-1``) to points.

    Args:
        subject: one ``Subject`` whose ``deformation`` is set (``None`` gives the
            points back unchanged).
        points: ``(..., 3)`` world ``(x, y, z)`` in mm.
        inverse: apply ``phi^-1`` (the pull-back used to rasterise) instead of
            ``phi``.
        respiratory_phase: breath-hold position of the heart frame.

    Returns:
        ``(..., 3)`` world mm, the points' dtype.

    Example:
        >>> s = default_subject()
        >>> s = s.replace(deformation=residual_deformation(s))
        >>> deform_points(s, jnp.zeros((2, 3))).shape
        (2, 3)
    """
    points = jnp.asarray(points)
    if points.ndim < 1 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3); got {points.shape}")
    deformation = subject.deformation
    if deformation is None:
        return points
    check_deformation(deformation, "subject.deformation")
    return _deform(subject, points, inverse, respiratory_phase)


@functools.partial(jax.jit, static_argnames=("inverse",))
def _deform(subject, points, inverse, respiratory_phase):
    from ._heart import heart_pose

    deformation = subject.deformation
    pose = heart_pose(subject, respiratory_phase)
    grid = displacement_grid(deformation, inverse=inverse)
    p = tuple(points[..., c] for c in range(3))
    d = heart_displacement(deformation, grid, pose.rot, pose.apex, p)
    return jnp.stack([p[c] + d[c] for c in range(3)], axis=-1).astype(points.dtype)
