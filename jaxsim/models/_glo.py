"""Shape generator for Generative Latent Optimisation (GLO): latent -> subject.

The seed generator (seed 004) maps a latent code to the parameters of a
statistical shape model. Ours maps it to the open phantom's own parameters: a
change of the template subject's unconstrained anatomy parameters (through the
:mod:`jaxsim.parameters` bijection, so every output is a valid ``Subject``) and
the control values of a volume-preserving residual deformation
(:class:`jaxsim.phantoms.ResidualDeformation`) for shapes beyond the analytic
family. The deformation's box is fixed (from the template), so one compiled
rasteriser serves every latent.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsim.parameters import field_slices, from_unconstrained, to_unconstrained
from jaxsim.phantoms import (
    ResidualDeformation,
    Subject,
    check_subject,
    default_subject,
    deformation_box,
)

__all__ = ["SHAPE_FIELDS", "ShapeGLO"]

#: Subject fields the generator changes: those a patient twin fits (the LV/RV
#: sizes, wall thickness, LV elongation and long-axis shortening). The heart's
#: placement in the torso stays the template's: its pose relative to a real
#: stack is a per-case nuisance of training, not part of the shape.
SHAPE_FIELDS = (
    "edv",
    "esv",
    "wall_thickness",
    "lv_aspect",
    "longitudinal_shortening",
    "rv_lv_ratio",
)


class ShapeGLO(nnx.Module):
    """MLP generator: latent ``z`` -> anatomy change + residual deformation.

    ``z (B, latent_dim) -> Linear(hidden) -> tanh -> Linear(hidden) -> tanh`` then
    two linear heads: ``(B, len(SHAPE_FIELDS))`` changes of the template's
    unconstrained parameters and ``(B, *grid_shape, 3)`` deformation control
    values. The heads start at zero (unless ``zero_init=False``): every latent
    then decodes to the template, and the heads' gradients (hidden features times
    the loss gradient) are non-zero, so training moves away from it.

    Args:
        latent_dim: latent size ``K`` (>= 1).
        hidden: width of the two hidden layers (>= 1).
        grid_shape: deformation control points along ``e_rv, e_3, e_long``.
        template: the subject supplying every field the generator does not change
            and the deformation's box (default: the mean male,
            :func:`jaxsim.phantoms.default_subject`); one concrete subject.
        max_displacement: bound (mm) on the deformation.
        box_margin: mm of deformation box around the template's ventricles.
        zero_init: start the heads at zero (the template for every latent).
        rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
        >>> g = ShapeGLO(latent_dim=4, hidden=8, grid_shape=(2, 2, 2),
        ...              rngs=nnx.Rngs(0))
        >>> g.subjects(jnp.zeros((3, 4))).edv.shape
        (3,)
    """

    def __init__(
        self,
        latent_dim: int = 16,
        hidden: int = 64,
        grid_shape=(6, 6, 7),
        template: Subject | None = None,
        max_displacement: float = 30.0,
        *,
        box_margin: float = 20.0,
        zero_init: bool = True,
        rngs: nnx.Rngs,
    ):
        for name, value in (("latent_dim", latent_dim), ("hidden", hidden)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        grid_shape = tuple(int(n) for n in grid_shape)
        if len(grid_shape) != 3 or not all(1 <= n <= 32 for n in grid_shape):
            raise ValueError(
                f"grid_shape must be three ints in [1, 32]; got {grid_shape}"
            )
        md = float(max_displacement)
        if not (math.isfinite(md) and 0 < md <= 100):
            raise ValueError(f"max_displacement must lie in (0, 100] mm; got {md!r}")
        template = default_subject("male") if template is None else template
        if not isinstance(template, Subject):
            raise TypeError(
                f"template must be a Subject; got {type(template).__name__}"
            )
        if jnp.ndim(template.edv) != 0:
            raise ValueError("template must be one subject, not a batch")
        check_subject(template, "template")
        self.latent_dim, self.hidden, self.grid_shape = (
            int(latent_dim),
            hidden,
            grid_shape,
        )
        self.max_displacement = md
        # Static data (not nnx.Variables): the template without deformation, the
        # box and the field mask travel with the class, not in checkpoints.
        self.template = nnx.data(template.replace(deformation=None))
        lower, upper = deformation_box(template, margin=box_margin)
        self.box = (tuple(lower), tuple(upper))
        slices = field_slices(template)
        self.indices = tuple(
            i
            for name in SHAPE_FIELDS
            for i in range(slices[name].start, slices[name].stop)
        )
        n_control = int(np.prod(grid_shape)) * 3
        head_init = (
            nnx.initializers.zeros_init()
            if zero_init
            else nnx.initializers.lecun_normal()
        )
        self.fc1 = nnx.Linear(latent_dim, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.subject_head = nnx.Linear(
            hidden, len(self.indices), kernel_init=head_init, rngs=rngs
        )
        self.control_head = nnx.Linear(
            hidden, n_control, kernel_init=head_init, rngs=rngs
        )

    def __call__(self, z) -> tuple[jax.Array, jax.Array]:
        """Raw outputs of latents ``z`` ``(B, latent_dim)`` float.

        Returns:
            ``(delta, control)``: ``(B, len(SHAPE_FIELDS))`` changes of the
            template's unconstrained parameters and ``(B, *grid_shape, 3)``
            unconstrained deformation control values.
        """
        z = jnp.asarray(z)
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z must have shape (B, {self.latent_dim}); got {tuple(z.shape)}"
            )
        h = jnp.tanh(self.fc1(z))
        h = jnp.tanh(self.fc2(h))
        delta = self.subject_head(h)
        control = self.control_head(h).reshape(z.shape[0], *self.grid_shape, 3)
        return delta, control

    def unconstrained(self, delta) -> jax.Array:
        """The full unconstrained subject vectors ``(B, n)`` of changes ``delta``."""
        u0 = to_unconstrained(self.template).astype(delta.dtype)
        return (
            jnp.broadcast_to(u0, (delta.shape[0], u0.shape[-1]))
            .at[:, jnp.asarray(self.indices)]
            .add(delta)
        )

    def decode(self, delta, control) -> Subject:
        """A batched valid ``Subject`` ``(B,)`` of raw outputs, deformation set."""
        subject = from_unconstrained(self.unconstrained(delta), self.template)
        return subject.replace(deformation=self.deformation(control))

    def deformation(self, control) -> ResidualDeformation:
        """The :class:`ResidualDeformation` of control values ``(..., *grid, 3)``
        on the generator's fixed box."""
        return ResidualDeformation(
            control=control,
            lower=self.box[0],
            upper=self.box[1],
            max_displacement=self.max_displacement,
        )

    def subjects(self, z) -> Subject:
        """Batched valid ``Subject`` of latents ``z`` ``(B, latent_dim)``: every
        field has a leading axis ``B`` and ``deformation.control`` is
        ``(B, *grid_shape, 3)`` (index one with ``jax.tree.map(lambda a: a[i],
        subject)``)."""
        return self.decode(*self(z))

    def config(self) -> dict:
        """JSON-able constructor arguments (the template is stored separately)."""
        return {
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "grid_shape": list(self.grid_shape),
            "max_displacement": self.max_displacement,
            "box": [list(self.box[0]), list(self.box[1])],
        }
