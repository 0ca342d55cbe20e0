"""SPAMM-tagged cine of the phantom: tags that deform with the myocardium.

Pipeline per frame: tissue fractions on the in-plane refined grid (as for cine) ->
each fine voxel's end-diastolic position (:func:`~jaxsim.phantoms.
end_diastolic_positions`), projected on the image's in-plane axes -> SPAMM pattern
there (tags are material: they were laid down at end-diastole) -> per tissue, tag
fading by T1 recovery and the RF-spoiled readout train up to the frame's time ->
gradient-echo signal ``Mz sin(flip) exp(-TE/T2)`` mixed by the fractions -> the cine
acquisition path (k-space crop, window, coils, noise, undersampling, combination).

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
from jaxsim.kernels._checks import check_range
from jaxsim.phantoms import (
    TISSUE_INDEX,
    TISSUES,
    end_diastolic_positions,
)

from ._cine import (
    CineResult,
    _check_options,
    _smooth_field,
    acquire_images,
    prepare_anatomy,
    refine_in_plane,
)
from ._tissues import TissueProperties, default_tissue_properties

__all__ = ["TaggingSequence", "acquire_tagged", "simulate_tagged"]

BLOOD = tuple(
    TISSUE_INDEX[n]
    for n in ("lv_blood", "rv_blood", "la_blood", "ra_blood", "aorta")
    + ("pulmonary_artery",)
)


READOUT_FLIP = math.radians(10.0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TaggingSequence:
    """SPAMM preparation and its RF-spoiled gradient-echo cine readout.

    Attributes:
        tag_spacing: tag period in mm.
        flip_total: total flip of each tagging train in radians.
        angle: in-plane angle (radians) of the first encoding direction, measured
            from the image column (x) axis towards the row (y) axis.
        readout_flip: readout flip angle in radians, in [0, pi/2).
        tr: readout repetition time in seconds.
        te: echo time in seconds.
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
        blood[list(BLOOD)] = True
        w = jnp.where(blood, -jnp.expm1(-t / blood_washout), 0.0)
    mean = _pattern_mean(seq)
    return readout * a * (1.0 - w), readout * (b + a * w * mean)


def _ed_in_plane(subject, fine: ImageGeometry, phase, centre, axes):
    points = fine.voxel_centers()  # (nz, fy, fx, 3)
    ed = end_diastolic_positions(subject, points, phase) - centre
    return ed @ axes[0], ed @ axes[1]


@partial(
    jax.jit,
    static_argnames=(
        "oversample",
        "tukey_alpha",
        "combination",
        "with_noise",
        "return_coils",
        "blood_washout",
        "b0_std",
        "bias_std",
    ),
)
def acquire_tagged(
    key,
    fractions,
    ed_uv,
    myo_mask,
    coil_maps,
    tissue: TissueProperties,
    sequence: TaggingSequence,
    frame_times,
    snr,
    mask=None,
    *,
    oversample: int = 2,
    tukey_alpha: float | None = None,
    combination: str = "rss",
    with_noise: bool = True,
    return_coils: bool = False,
    blood_washout: float | None = 0.1,
    b0_std: float = 0.0,
    bias_std: float = 0.0,
):
    """Tagged frames from precomputed fractions and ED positions (jit, vmap-able).

    Args:
        key: PRNG key (noise).
        fractions: ``(n_frames, n_tissues, nz, ny*oversample, nx*oversample)``.
        ed_uv: pair of ``(n_frames, nz, ny*oversample, nx*oversample)`` in-plane
            coordinates (mm, along the image's x and y axes) of each fine voxel's
            end-diastolic position.
        myo_mask, coil_maps, snr, mask: as for :func:`~jaxsim.mr.acquire_cine`.
        tissue: :class:`TissueProperties` with ``(n_tissues,)`` arrays.
        sequence: :class:`TaggingSequence`.
        frame_times: ``(n_frames,)`` seconds since tagging.
        oversample, tukey_alpha, combination, with_noise, return_coils,
            blood_washout, b0_std, bias_std: see :func:`simulate_tagged`.

    Returns:
        ``(image (n_frames, nz, ny, nx), sigma, coil_images or None)``.
    """
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
    _, _, nz, fy, fx = fractions.shape
    if b0_std > 0:  # gradient echo: off-resonance only adds the phase 2 pi df TE
        df = _smooth_field(jax.random.fold_in(key, 1), (nz, fy, fx), b0_std)
        images = images * jnp.exp(2j * jnp.pi * sequence.te * df)
    if bias_std > 0:
        bias = _smooth_field(jax.random.fold_in(key, 2), (nz, fy, fx), bias_std)
        images = images * jnp.exp(bias)
    return acquire_images(
        key,
        images,
        myo_mask,
        coil_maps,
        snr,
        mask,
        oversample=oversample,
        tukey_alpha=tukey_alpha,
        combination=combination,
        with_noise=with_noise,
        return_coils=return_coils,
    )


def _check_sequence(seq: TaggingSequence) -> None:
    check_range("tag_spacing", seq.tag_spacing, low=0.0, high=None, unit="mm")
    check_range(
        "flip_total",
        seq.flip_total,
        low=0.0,
        high=2 * math.pi,
        low_inclusive=True,
        unit="rad",
    )
    check_range("angle", seq.angle, low=None, high=None)
    check_range(
        "readout_flip",
        seq.readout_flip,
        low=0.0,
        high=math.pi / 2,
        low_inclusive=True,
        high_inclusive=False,
        unit="rad",
    )
    check_range("tr", seq.tr, low=0.0, high=None, unit="s")
    check_range("te", seq.te, low=0.0, high=None, unit="s")
    spamm_mz(0.0, spacing=1.0, flip_total=0.0, weights=seq.weights)  # weights check


def simulate_tagged(
    key,
    subject,
    geometry: ImageGeometry,
    *,
    cardiac_phases=(0.0,),
    tag_spacing=8.0,
    flip_total=math.pi / 2,
    angle=0.0,
    grid: bool = True,
    weights=(1, 3, 3, 1),
    readout_flip=READOUT_FLIP,
    tr=4.5e-3,
    te=2.0e-3,
    blood_washout: float | None = 0.1,
    tissue: TissueProperties | None = None,
    snr: float | None = None,
    n_coils: int = 1,
    coil_combination: str = "rss",
    oversample: int = 2,
    tukey_alpha: float | None = None,
    acceleration: float = 1.0,
    center_lines: int = 16,
    b0_std: float = 0.0,
    bias_std: float = 0.0,
    field: float = 1.5,
    supersample=None,
    return_coils: bool = False,
) -> CineResult:
    """Simulate SPAMM-tagged cine frames of one phantom subject.

    Tagging happens at end-diastole (phase 0); a frame at phase ``p`` is read
    ``p * subject.rr_interval`` seconds later. The tag pattern is evaluated at each
    tissue point's end-diastolic position, so the tags deform with the heart, and
    fades per tissue by T1 recovery and the spoiled readout pulses.

    Args:
        key: PRNG key (noise).
        subject: a :class:`~jaxsim.phantoms.Subject` (scalar leaves).
        geometry: target image grid ``(nz, ny, nx)``; tags are laid out in its
            in-plane axes, with a tag centre at the grid's centre.
        cardiac_phases: phases in [0, 1) (0 is end-diastole = tagging time).
        tag_spacing: tag period in mm, > 0.
        flip_total: total flip of each tagging train in radians, in [0, 2 pi].
        angle: in-plane tag angle in radians (first encoding direction from the
            image x axis towards y).
        grid: grid tags (two orthogonal trains) or line tags (one).
        weights: sub-pulse weights of each train.
        readout_flip: RF-spoiled readout flip in radians, in [0, pi/2).
        tr: readout TR in seconds (one pulse per TR since tagging).
        te: echo time in seconds.
        blood_washout: seconds over which inflowing blood replaces the tagged
            pattern by its mean; ``None`` keeps blood tags like tissue's.
        b0_std: standard deviation (Hz) of a random smooth B0 field map; in this
            spoiled gradient echo it adds the phase ``2 pi df TE`` (0: none).
        tissue, snr, n_coils, coil_combination, oversample, tukey_alpha,
            acceleration, center_lines, bias_std, field, supersample, return_coils:
            as for :func:`~jaxsim.mr.simulate_cine`.

    Returns:
        :class:`~jaxsim.mr.CineResult` (images ``(n_frames, nz, ny, nx)`` float32).

    Raises:
        ValueError: for invalid options.

    Example:
        >>> s = default_subject()
        >>> g = short_axis_geometry(s, shape=(1, 64, 64), spacing=(8.0, 4.0, 4.0))
        >>> simulate_tagged(jax.random.key(0), s, g, cardiac_phases=(0.0, 0.3),
        ...                 oversample=1).image.shape
        (2, 1, 64, 64)
    """
    phases = _check_options(
        snr,
        n_coils,
        oversample,
        tukey_alpha,
        acceleration,
        coil_combination,
        b0_std,
        bias_std,
        cardiac_phases,
    )
    if blood_washout is not None:
        check_range("blood_washout", blood_washout, low=0.0, high=None, unit="s")
    seq = TaggingSequence(
        tag_spacing, flip_total, angle, readout_flip, tr, te, tuple(weights), bool(grid)
    )
    _check_sequence(seq)
    tissue = default_tissue_properties(field) if tissue is None else tissue
    check_range("tissue.t1", tissue.t1, low=0.0, high=None, unit="s")
    check_range("tissue.t2", tissue.t2, low=0.0, high=None, unit="s")
    fractions, labels, myo, maps, mask = prepare_anatomy(
        key,
        subject,
        geometry,
        phases,
        n_coils,
        oversample,
        acceleration,
        center_lines,
        supersample=supersample,
        need_myo=snr is not None,
    )
    fine = refine_in_plane(geometry, oversample)
    centre, axes = geometry.center, geometry.axes
    uv = [_ed_in_plane(subject, fine, p, centre, axes) for p in phases]
    ed_uv = (jnp.stack([u for u, _ in uv]), jnp.stack([v for _, v in uv]))
    times = jnp.asarray(phases, fractions.dtype) * subject.rr_interval
    image, sigma, coils = acquire_tagged(
        jax.random.fold_in(key, 0),
        fractions,
        ed_uv,
        myo,
        maps,
        tissue,
        seq,
        times,
        1.0 if snr is None else snr,
        mask,
        oversample=oversample,
        tukey_alpha=tukey_alpha,
        combination=coil_combination,
        with_noise=snr is not None,
        return_coils=return_coils,
        blood_washout=None if blood_washout is None else float(blood_washout),
        b0_std=float(b0_std),
        bias_std=float(bias_std),
    )
    return CineResult(
        image=image.astype(jnp.float32),
        labels=labels,
        noise_std=sigma,
        coil_images=coils,
        coil_maps=maps if return_coils else None,
    )
