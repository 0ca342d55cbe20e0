"""One differentiable chain: latents -> generators -> phantom -> MR -> enhancer ->
segmentation network -> loss.

:class:`SimulationChain` joins the learned pieces of jaxsim into one traceable
function. A shape latent decodes (:class:`~jaxsim.models.ShapeGLO`) to a valid
subject with its residual deformation; a material latent decodes
(:class:`~jaxsim.models.MaterialGLO`) to a heart-attached map of PD/T1/T2
modulations; the subject is planned a short-axis slice, rasterised and imaged by
the cine bSSFP physics with that map (noise off, so the loss is a smooth function
of every input); the SPADE enhancer (:func:`~jaxsim.train.enhance`) turns the
rendering realistic, conditioned on the phantom's own soft labels; a segmentation
network segments it; the loss is nnU-Net's Dice + cross-entropy against the soft
labels. Everything — the latents, any subject field, the tissue properties, the
sequence parameters and every network weight — is an input of one function that
``jax.jit`` compiles and ``jax.grad`` differentiates.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsim.labels import ACDC, task_fractions
from jaxsim.losses import dice_ce_loss
from jaxsim.mr import MRAcquisition, acquire_cine, material_box, prepare_anatomy
from jaxsim.phantoms import FIELD_SPECS, short_axis_geometry

from ._enhance import enhance
from ._transforms import normalize

__all__ = ["SimulationChain"]


@dataclasses.dataclass(frozen=True)
class _Layout:
    shape: tuple[int, int]
    spacing: tuple[float, float, float]
    cardiac_phase: float
    percentile: float


class SimulationChain:
    """Latents to a segmentation loss through the simulator, as one function.

    Args:
        shape_model: a :class:`~jaxsim.models.ShapeGLO`.
        material_model: a :class:`~jaxsim.models.MaterialGLO` (``None``: no
            material map).
        enhancer: a :class:`~jaxsim.models.SPADEGenerator` trained by
            ``jaxsim enhance`` (``None``: the physics image goes to the
            segmenter).
        segmenter: a 2D segmentation network ``(B, H, W, 1) -> (B, H, W, 4)``
            logits (e.g. :class:`~jaxsim.models.UNet`).
        shape: ``(H, W)`` pixels of the simulated slice (multiples of the
            enhancer's factor, 32 with five upsamplings).
        spacing: ``(slice thickness, sy, sx)`` mm of the slice.
        cardiac_phase: in [0, 1) (0: end-diastole).
        percentile: intensity normalisation of the rendering, as in training.

    The networks are used in evaluation mode (a fixed function of their weights);
    :meth:`parameters` splits out their weights, :meth:`loss` is pure in them.
    """

    def __init__(
        self,
        shape_model,
        material_model,
        enhancer,
        segmenter,
        *,
        shape=(32, 32),
        spacing=(8.0, 4.0, 4.0),
        cardiac_phase: float = 0.0,
        percentile: float = 99.5,
    ):
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2 or min(shape) < 8:
            raise ValueError(f"shape must be (H, W) with sides >= 8; got {shape}")
        factor = 1 if enhancer is None else int(enhancer.factor)
        if any(n % factor for n in shape):
            raise ValueError(
                f"shape must be multiples of the enhancer's factor {factor}; got "
                f"{shape}"
            )
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three sizes > 0 mm; got {spacing}")
        if not 0.0 <= cardiac_phase < 1.0:
            raise ValueError(f"cardiac_phase must lie in [0, 1); got {cardiac_phase}")
        self.layout = _Layout(shape, spacing, float(cardiac_phase), float(percentile))
        self.box = None
        if material_model is not None:
            self.box = material_box(shape_model.template)
        modules = {
            "shape": shape_model,
            "material": material_model,
            "enhancer": enhancer,
            "segmenter": segmenter,
        }
        self.graphs, self.rest = {}, {}
        self._params = {}
        for name, module in modules.items():
            if module is None:
                continue
            module.eval()
            graph, params, rest = nnx.split(module, nnx.Param, ...)
            self.graphs[name], self._params[name], self.rest[name] = (
                graph,
                params,
                rest,
            )

    def parameters(self) -> dict:
        """Every network's weights ``{"shape", "material", "enhancer",
        "segmenter"}`` (the ones present), as pytrees of arrays."""
        return jax.tree.map(lambda x: x, self._params)

    def cast(self, dtype) -> SimulationChain:
        """Cast every network's floating-point weights and state (e.g. spectral
        norm vectors) to ``dtype`` in place (``jnp.float64`` under x64 for
        finite-difference checks); returns ``self``."""

        def cast(a):
            if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating):
                return a.astype(dtype)
            return a

        self._params = jax.tree.map(cast, self._params)
        self.rest = jax.tree.map(cast, self.rest)
        return self

    def _module(self, name, params):
        return nnx.merge(self.graphs[name], params[name], self.rest[name])

    def forward(
        self,
        params: dict,
        z_shape,
        z_material=None,
        *,
        tissue,
        sequence,
        overrides: dict | None = None,
    ) -> dict:
        """Run the chain (pure in every argument; ``jit``/``grad`` it).

        Args:
            params: :meth:`parameters` (or changed copies).
            z_shape: ``(K,)`` shape latent.
            z_material: ``(K',)`` material latent (with a material model).
            tissue: :class:`~jaxsim.mr.TissueProperties`, ``(n_tissues,)`` leaves.
            sequence: :class:`~jaxsim.mr.BSSFPSequence`.
            overrides: ``{Subject field: value}`` replacing decoded fields (e.g.
                the heart's position), so they are inputs too.

        Returns:
            ``{"subject", "physics" (H, W), "enhanced" (H, W), "labels"
            (H, W, 4) soft ACDC classes, "logits" (H, W, 4), "loss"}``.
        """
        lay = self.layout
        shape_model = self._module("shape", params)
        subject = shape_model.subjects(jnp.asarray(z_shape)[None])
        subject = jax.tree.map(lambda a: a[0], subject)
        if overrides:
            unknown = set(overrides) - set(FIELD_SPECS)
            if unknown:
                raise ValueError(f"overrides names no Subject field: {sorted(unknown)}")
            subject = subject.replace(**overrides)
        geometry = short_axis_geometry(
            subject, spacing=lay.spacing, shape=(1, *lay.shape)
        )
        material = None
        if "material" in self.graphs:
            if z_material is None:
                raise ValueError("z_material is needed with a material model")
            material = self._module("material", params)(jnp.asarray(z_material)[None])[
                0
            ]
        acquisition = MRAcquisition(oversample=1)
        anatomy = prepare_anatomy(
            subject,
            geometry,
            acquisition,
            cardiac_phases=(lay.cardiac_phase,),
            need_myo=False,
            material_box=None if material is None else self.box,
        )
        key = jax.random.key(0)  # unused: no noise, field map or undersampling
        image, _, _ = acquire_cine(
            key, anatomy, tissue, sequence, acquisition, material=material
        )
        physics = normalize(image[0], percentile=lay.percentile)  # (1, H, W)
        # soft ACDC classes (H, W, 4); clipped: rounding leaves |x| ~ 1e-8 outside
        labels = jnp.clip(
            jnp.moveaxis(task_fractions(anatomy.fractions[0], ACDC), 0, -1), 0.0, 1.0
        )
        enhanced = physics
        if "enhancer" in self.graphs:
            enhanced = enhance(self._module("enhancer", params), physics, labels)
        logits = self._module("segmenter", params)(enhanced[..., None])
        loss = dice_ce_loss(logits, labels)
        return {
            "subject": subject,
            "physics": physics[0],
            "enhanced": enhanced[0],
            "labels": labels[0],
            "logits": logits[0],
            "loss": loss,
        }

    def loss(self, params, z_shape, z_material=None, *, tissue, sequence,
             overrides=None):  # fmt: skip
        """The scalar loss of :meth:`forward`."""
        return self.forward(
            params,
            z_shape,
            z_material,
            tissue=tissue,
            sequence=sequence,
            overrides=overrides,
        )["loss"]
