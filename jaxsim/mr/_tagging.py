"""SPAMM-tagged cine of the phantom: tags that deform with the myocardium.

Pipeline per frame: tissue fractions on the in-plane refined grid (as for cine) ->
each fine voxel's end-diastolic position (:func:`~jaxsim.phantoms.
end_diastolic_positions`), projected on the image's in-plane axes -> SPAMM pattern
there (tags are material: they were laid down at end-diastole) -> per tissue, tag
fading by T1 recovery and the RF-spoiled readout train up to the frame's time ->
gradient-echo signal ``Mz sin(flip) exp(-TE/T2)`` mixed by the fractions -> the
receive chain shared with cine (:func:`~jaxsim.mr.acquire_images`).

Model choices: magnetization is fully relaxed (``Mz = PD``) before tagging; the tissue
``t2`` stands in for T2* during TE; blood does not keep its tags: inflowing blood
replaces the tagged pattern by its mean with the time constant ``blood_washout``.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.geometry import ImageGeometry
from jaxsim.kernels import spamm_mz, spamm_pattern, tag_fading
from jaxsim.kernels.checks import check_range
from jaxsim.labels import TISSUES, tissue_indices
from jaxsim.parameters import FieldBounds, ParameterSpec, register_parameters
from jaxsim.phantoms import end_diastolic_positions

from ._acquisition import MRAcquisition, check_acquisition
from ._anatomy import Anatomy, check_phases, prepare_anatomy, refine_in_plane
from ._cine import CineResult
from ._fields import apply_bias, b0_map
from ._receive import acquire_images
from ._tissues import TissueProperties, check_tissue, default_tissue_properties

__all__ = [
    "TaggingSequence",
    "TAGGING_RANGES",
    "acquire_tagged",
    "simulate_tagged",
    "tagged_coefficients",
]

#: Allowed values of the tagging sequence: ``(low, high)`` per field (mm, rad, s);
#: ``"tr"`` as a bound means the same sequence's TR. Validation and the
#: unconstrained bijection use this one table.
TAGGING_RANGES: dict[str, tuple] = {
    "tag_spacing": (0.0, None),
    "flip_total": (0.0, 2 * math.pi),
    "angle": (None, None),
    "readout_flip": (0.0, math.pi / 2),
    "tr": (0.0, 0.1),
    "te": (0.0, "tr"),
}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TaggingSequence:
    """SPAMM preparation and its RF-spoiled gradient-echo cine readout.

    Attributes:
        tag_spacing: tag period in mm.
        flip_total: total flip of each tagging train in radians, in [0, 2 pi].
        angle: in-plane angle (radians) of the first encoding direction, measured
            from the image column (x) axis towards the row (y) axis.
        readout_flip: readout flip angle in radians, in [0, pi/2).
        tr: readout repetition time in seconds (one pulse per TR since tagging).
        te: echo time in seconds, in (0, tr].
        weights: static sub-pulse weights (``(1, 3, 3, 1)``: 1-3-3-1 SPAMM).
        grid: static; two orthogonal trains (grid tags) or one (line tags).
    """

    tag_spacing: jax.Array = 8.0
    flip_total: jax.Array = math.pi / 2
    angle: jax.Array = 0.0
    readout_flip: jax.Array = math.radians(10.0)
    tr: jax.Array = 4.5e-3
    te: jax.Array = 2.0e-3
    weights: tuple = dataclasses.field(default=(1, 3, 3, 1), metadata=dict(static=True))
    grid: bool = dataclasses.field(default=True, metadata=dict(static=True))

    def __post_init__(self):
        object.__setattr__(self, "weights", tuple(self.weights))
        object.__setattr__(self, "grid", bool(self.grid))

    def replace(self, **changes) -> TaggingSequence:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _pattern_mean(seq: TaggingSequence):
    """Spatial mean of the normalised pattern (exact: a trig polynomial of low
    degree sampled over one period)."""
    n = 4 * len(seq.weights)
    pos = seq.tag_spacing * jnp.arange(n) / n
    one = jnp.mean(
        spamm_mz(
            pos, spacing=seq.tag_spacing, flip_total=seq.flip_total, weights=seq.weights
        )
    )
    return one * one if seq.grid else one


def tagged_coefficients(tissue, seq: TaggingSequence, frame_times, blood_washout):
    """Per frame and tissue, ``(c_tag, c_const)`` with signal ``c_tag m + c_const``.

    ``m`` is the normalised tag pattern at the voxel's ED position. Shapes
    ``(n_frames, n_tissues)``.
    """
    t = frame_times[:, None]
    kw = dict(t1=tissue.t1, m0=tissue.pd, flip=seq.readout_flip, tr=seq.tr)
    b = tag_fading(0.0, t, **kw)
    a = tag_fading(tissue.pd, t, **kw) - b  # decay of the tagged part
    readout = jnp.sin(seq.readout_flip) * jnp.exp(-seq.te / tissue.t2)
    if blood_washout is None:
        w = jnp.zeros_like(a)
    else:
        blood = np.zeros(len(TISSUES), bool)
        blood[list(tissue_indices("blood"))] = True
        w = jnp.where(blood, -jnp.expm1(-t / blood_washout), 0.0)
    mean = _pattern_mean(seq)
    return readout * a * (1.0 - w), readout * (b + a * w * mean)


def ed_in_plane(subject, geometry: ImageGeometry, fine: ImageGeometry, phases):
    """In-plane coordinates (mm along the image's x and y axes, from the grid
    centre) of each fine voxel's end-diastolic position, per phase: a pair of
    ``(P, nz, fy, fx)`` arrays."""
    centre, axes = geometry.center, geometry.axes
    points = fine.voxel_centers()  # (nz, fy, fx, 3)
    us, vs = [], []
    for p in range(phases.shape[0]):
        ed = end_diastolic_positions(subject, points, phases[p]) - centre
        us.append(ed @ axes[0])
        vs.append(ed @ axes[1])
    return jnp.stack(us), jnp.stack(vs)


@partial(jax.jit, static_argnames=("return_coils",))
def acquire_tagged(
    key,
    anatomy: Anatomy,
    ed_uv,
    tissue: TissueProperties,
    sequence: TaggingSequence,
    frame_times,
    acquisition: MRAcquisition,
    blood_washout=0.1,
    *,
    return_coils: bool = False,
):
    """Tagged frames from prepared anatomy and ED positions (jit, vmap-able).

    Args:
        key: PRNG key (streams ``"mr.b0"``, ``"mr.bias"``, ``"mr.noise"``,
            ``"mr.mask"``).
        anatomy: from :func:`~jaxsim.mr.prepare_anatomy`.
        ed_uv: pair of ``(n_frames, nz, ny*o, nx*o)`` in-plane coordinates (mm,
            along the image's x and y axes) of each fine voxel's end-diastolic
            position.
        tissue: :class:`TissueProperties` with ``(n_tissues,)`` arrays.
        sequence: :class:`TaggingSequence`.
        frame_times: ``(n_frames,)`` seconds since tagging.
        acquisition: :class:`MRAcquisition`.
        blood_washout: seconds over which inflowing blood replaces the tagged
            pattern by its mean (may be traced); ``None`` keeps blood tags.
        return_coils: also return the complex coil images.

    Returns:
        ``(image (n_frames, nz, ny, nx), sigma, coil_images or None)``.
    """
    fractions = anatomy.fractions
    pattern = spamm_pattern(
        ed_uv[0],
        ed_uv[1],
        spacing=sequence.tag_spacing,
        flip_total=sequence.flip_total,
        angle=sequence.angle,
        grid=sequence.grid,
        weights=sequence.weights,
    )
    c_tag, c_const = tagged_coefficients(tissue, sequence, frame_times, blood_washout)
    images = pattern * jnp.einsum("pt,ptzyx->pzyx", c_tag, fractions)
    images = images + jnp.einsum("pt,ptzyx->pzyx", c_const, fractions)
    df = b0_map(key, fractions.shape[-3:], acquisition, fractions.dtype)
    if df is not None:  # gradient echo: off-resonance only adds the phase 2 pi df TE
        images = images * jnp.exp(2j * jnp.pi * sequence.te * df)
    images = apply_bias(key, images, acquisition)
    return acquire_images(
        key,
        images,
        anatomy.myo_mask,
        anatomy.coil_maps,
        acquisition,
        return_coils=return_coils,
    )


def check_tagging(seq: TaggingSequence, name: str = "sequence") -> None:
    """Raise ``ValueError`` if concrete values leave :data:`TAGGING_RANGES`."""
    if not isinstance(seq, TaggingSequence):
        raise TypeError(f"{name} must be a TaggingSequence; got {type(seq).__name__}")
    r = TAGGING_RANGES
    check_range(f"{name}.tag_spacing", seq.tag_spacing, low=0.0, unit="mm")
    check_range(
        f"{name}.flip_total",
        seq.flip_total,
        low=r["flip_total"][0],
        high=r["flip_total"][1],
        low_inclusive=True,
        unit="rad",
    )
    check_range(f"{name}.angle", seq.angle)
    check_range(
        f"{name}.readout_flip",
        seq.readout_flip,
        low=r["readout_flip"][0],
        high=r["readout_flip"][1],
        low_inclusive=True,
        high_inclusive=False,
        unit="rad",
    )
    check_range(f"{name}.tr", seq.tr, low=r["tr"][0], high=r["tr"][1], unit="s")
    check_range(f"{name}.te", seq.te, low=0.0, unit="s")
    check_range(
        f"{name}.te - {name}.tr",
        jnp.asarray(seq.te) - jnp.asarray(seq.tr),
        high=0.0,
        unit="s (TE must not exceed TR)",
    )
    spamm_mz(0.0, spacing=1.0, flip_total=0.0, weights=seq.weights)  # weights check


def simulate_tagged(
    key,
    subject,
    geometry: ImageGeometry,
    *,
    cardiac_phases=(0.0,),
    tissue: TissueProperties | None = None,
    sequence: TaggingSequence | None = None,
    acquisition: MRAcquisition | None = None,
    field: float = 1.5,
    supersample=None,
    return_coils: bool = False,
    blood_washout=0.1,
) -> CineResult:
    """Simulate SPAMM-tagged cine frames of one phantom subject.

    Tagging happens at end-diastole (phase 0); a frame at phase ``p`` is read
    ``p * subject.rr_interval`` seconds later. The tag pattern is evaluated at each
    tissue point's end-diastolic position, so the tags deform with the heart, and
    fades per tissue by T1 recovery and the spoiled readout pulses. B0
    (``acquisition.b0_std``) adds the gradient-echo phase ``2 pi df TE``.

    Args:
        key: PRNG key (noise, field maps, undersampling mask).
        subject: a :class:`~jaxsim.phantoms.Subject` (scalar leaves).
        geometry: target image grid ``(nz, ny, nx)``; tags are laid out in its
            in-plane axes, with a tag centre at the grid's centre.
        cardiac_phases: phases in [0, 1) (0 is end-diastole = tagging time).
        sequence: :class:`TaggingSequence`; default 8 mm 1-3-3-1 grid tags, 10 deg
            readout, TR 4.5 ms, TE 2 ms.
        blood_washout: seconds over which inflowing blood replaces the tagged
            pattern by its mean; ``None`` keeps blood tags like tissue's.
        tissue, acquisition, field, supersample, return_coils: as for
            :func:`~jaxsim.mr.simulate_cine`.

    Returns:
        :class:`~jaxsim.mr.CineResult` (images ``(n_frames, nz, ny, nx)``).

    Raises:
        ValueError: for invalid options.

    Example:
        >>> s = default_subject()
        >>> g = short_axis_geometry(s, shape=(1, 64, 64), spacing=(8.0, 4.0, 4.0))
        >>> simulate_tagged(jax.random.key(0), s, g, cardiac_phases=(0.0, 0.3),
        ...                 acquisition=MRAcquisition(oversample=1)).image.shape
        (2, 1, 64, 64)
    """
    sequence = TaggingSequence() if sequence is None else sequence
    acquisition = MRAcquisition() if acquisition is None else acquisition
    tissue = default_tissue_properties(field) if tissue is None else tissue
    check_tagging(sequence)
    check_acquisition(acquisition)
    check_tissue(tissue)
    if blood_washout is not None:
        check_range("blood_washout", blood_washout, low=0.0, unit="s")
    phases = check_phases(cardiac_phases)
    anatomy = prepare_anatomy(
        subject,
        geometry,
        acquisition,
        cardiac_phases=phases,
        supersample=supersample,
    )
    fine = refine_in_plane(geometry, acquisition.oversample)
    ed_uv = ed_in_plane(subject, geometry, fine, phases)
    times = phases.astype(anatomy.fractions.dtype) * subject.rr_interval
    image, sigma, coils = acquire_tagged(
        key,
        anatomy,
        ed_uv,
        tissue,
        sequence,
        times,
        acquisition,
        blood_washout,
        return_coils=return_coils,
    )
    return CineResult(
        image=image,
        labels=anatomy.labels,
        noise_std=sigma,
        coil_images=coils,
        coil_maps=anatomy.coil_maps if return_coils else None,
    )


register_parameters(
    TaggingSequence,
    ParameterSpec(
        fields=(
            FieldBounds("tag_spacing", *TAGGING_RANGES["tag_spacing"]),
            FieldBounds("flip_total", *TAGGING_RANGES["flip_total"]),
            FieldBounds("angle", *TAGGING_RANGES["angle"]),
            FieldBounds("readout_flip", *TAGGING_RANGES["readout_flip"]),
            FieldBounds("tr", *TAGGING_RANGES["tr"]),
            FieldBounds("te", TAGGING_RANGES["te"][0], lambda v: v["tr"]),
        )
    ),
)
