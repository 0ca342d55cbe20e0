"""Cine bSSFP images of the phantom: MRXCAT's acquisition model, differentiable.

Pipeline (per cardiac phase): tissue fractions on a grid refined in-plane by the
acquisition's ``oversample`` -> per-tissue bSSFP echo (steady state or transient)
mixed by the fractions -> optional smooth B0 field map (per-voxel off-resonance,
so real banding) and receive bias field -> the receive chain of
:func:`~jaxsim.mr.acquire_images` (k-space crop, window, coils, noise,
undersampling, combination).

Every entry point is traceable: subject, geometry, tissue properties, sequence and
the acquisition's magnitudes may be tracers, so ``jit(vmap(grad(...)))`` over a
batch of subjects, each with its own planned geometry, works.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from jaxsim.geometry import ImageGeometry

from ._acquisition import MRAcquisition, check_acquisition
from ._anatomy import Anatomy, prepare_anatomy
from ._fields import apply_bias, b0_map
from ._material import (
    MaterialBox,
    check_material,
    material_box,
    material_change,
    sample_material,
)
from ._receive import acquire_images
from ._sequence import BSSFPSequence, check_sequence, tissue_signals
from ._tissues import TissueProperties, check_tissue, default_tissue_properties

__all__ = [
    "CineResult",
    "acquire_cine",
    "simulate_cine",
    "simulate_cine_contrasts",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CineResult:
    """Output of :func:`simulate_cine` (and the other MR simulators).

    Attributes:
        image: ``(n_phases, nz, ny, nx)`` magnitude images (JAX's default float).
        labels: ``(n_phases, nz, ny, nx)`` uint8 label maps (indices into TISSUES).
        noise_std: scalar, the per-channel, per-component noise sigma (0 without
            noise).
        coil_images: ``(n_phases, n_coils, nz, ny, nx)`` complex coil images, or
            ``None`` unless requested.
        coil_maps: ``(n_coils, nz, ny, nx)`` complex sensitivities, or ``None``.
    """

    image: jax.Array
    labels: jax.Array
    noise_std: jax.Array
    coil_images: jax.Array | None = None
    coil_maps: jax.Array | None = None


@partial(jax.jit, static_argnames=("return_coils",))
def acquire_cine(
    key,
    anatomy: Anatomy,
    tissue: TissueProperties,
    sequence: BSSFPSequence,
    acquisition: MRAcquisition,
    *,
    return_coils: bool = False,
    material=None,
):
    """Cine frames of prepared anatomy (jit, vmap-able over contrasts).

    Args:
        key: PRNG key (streams ``"mr.b0"``, ``"mr.bias"``, ``"mr.noise"``,
            ``"mr.mask"``).
        anatomy: from :func:`~jaxsim.mr.prepare_anatomy` with the same
            acquisition's ``oversample`` and ``n_coils``.
        tissue: :class:`TissueProperties` with ``(n_tissues,)`` arrays.
        sequence: :class:`BSSFPSequence`.
        acquisition: :class:`MRAcquisition`.
        return_coils: also return the complex coil images.
        material: optional ``(9, g1, g2, g3)`` material map of log-modulations
            (see :mod:`jaxsim.mr` ``MaterialBox``); needs an anatomy prepared with
            a ``material_box``. An all-zero map gives the image without one, bit
            for bit (to float rounding with a B0 field map); any map is
            differentiable.

    Returns:
        ``(image (n_phases, nz, ny, nx), sigma, coil_images or None)``.
    """
    fractions = anatomy.fractions
    dtype = fractions.dtype
    df = b0_map(key, fractions.shape[-3:], acquisition, dtype)
    off = 0.0
    if df is not None:
        bcast = jax.tree_util.tree_map(lambda a: a[:, None, None, None], tissue)
        off = df[None]
        signals = tissue_signals(bcast, sequence, off)  # (T, nz, fy, fx)
        images = jnp.sum(fractions * signals[None], axis=1)
    else:
        signals = tissue_signals(tissue, sequence)
        # two real contractions: XLA:CPU contracts complex-by-real ~20x slower
        re = jnp.einsum("t,ptzyx->pzyx", jnp.real(signals), fractions)
        im = jnp.einsum("t,ptzyx->pzyx", jnp.imag(signals), fractions)
        images = jax.lax.complex(re, im)
    if material is not None:
        if anatomy.material_coords is None:
            raise ValueError(
                "material needs an anatomy prepared with a material_box "
                "(prepare_anatomy(..., material_box=material_box(subject)))"
            )
        check_material(material)

        # Barriers keep XLA from sharing sub-expressions between the base image
        # and the modulated echoes, which would fuse (and round) the base image
        # differently from the path without a material. Without a field map the
        # zero map's image is then the plain one bit for bit; with one, XLA still
        # fuses the per-voxel echoes differently (equal to float rounding).
        images = jax.lax.optimization_barrier(images)
        t, q, o, s = jax.lax.optimization_barrier((tissue, sequence, off, signals))

        def change(f, coords):
            m = sample_material(material.astype(dtype), coords)
            return material_change(f, t, q, m, s, o)

        images = images + jax.vmap(change)(fractions, anatomy.material_coords)
    images = apply_bias(key, images, acquisition)
    return acquire_images(
        key,
        images,
        anatomy.myo_mask,
        anatomy.coil_maps,
        acquisition,
        return_coils=return_coils,
    )


def _defaults(tissue, sequence, acquisition, field):
    tissue = default_tissue_properties(field) if tissue is None else tissue
    sequence = BSSFPSequence() if sequence is None else sequence
    acquisition = MRAcquisition() if acquisition is None else acquisition
    check_acquisition(acquisition)
    return tissue, sequence, acquisition


def simulate_cine(
    key,
    subject,
    geometry: ImageGeometry,
    *,
    cardiac_phases=(0.0,),
    tissue: TissueProperties | None = None,
    sequence: BSSFPSequence | None = None,
    acquisition: MRAcquisition | None = None,
    field: float = 1.5,
    supersample=None,
    return_coils: bool = False,
    material=None,
    box: MaterialBox | None = None,
) -> CineResult:
    """Simulate cine bSSFP frames of one phantom subject on any (oblique) grid.

    Args:
        key: PRNG key (noise, field maps, undersampling mask).
        subject: a :class:`~jaxsim.phantoms.Subject` (scalar leaves).
        geometry: target image grid ``(nz, ny, nx)``, e.g. from
            :func:`~jaxsim.phantoms.short_axis_geometry` (may be planned inside a
            traced function).
        cardiac_phases: phases in [0, 1) (0 is end-diastole); may be traced.
        tissue: per-tissue PD/T1/T2; default the literature means at ``field``.
        sequence: :class:`BSSFPSequence`; default TR 3.1 ms, TE 1.55 ms, 60 deg.
        acquisition: :class:`MRAcquisition` (coils, noise, k-space, field
            imperfections); default one uniform coil, no noise, 2x oversampling.
        field: 1.5 or 3 (tesla), for the default tissue properties.
        supersample: phantom sub-samples per fine voxel (default: the phantom's).
        return_coils: also return complex coil images and coil maps.
        material: optional ``(9, g1, g2, g3)`` material map (log-modulations of
            PD, T1, T2 per tissue group; see ``jaxsim.mr.MaterialBox``); zeros
            give the image without one, bit for bit (to float rounding with a
            B0 field map).
        box: the map's :class:`~jaxsim.mr.MaterialBox` in the heart frame
            (default :func:`~jaxsim.mr.material_box` of a concrete subject).

    Returns:
        :class:`CineResult`.

    Raises:
        ValueError: for invalid options, a material map of the wrong shape or
            taking a tissue out of ``PROPERTY_RANGES``, or ``acquisition.snr``
            set when the first phase's label map has no LV myocardium (the SNR
            reference is undefined).

    Example:
        >>> s = default_subject()
        >>> g = short_axis_geometry(s, shape=(2, 64, 64), spacing=(8.0, 4.0, 4.0))
        >>> simulate_cine(jax.random.key(0), s, g,
        ...               acquisition=MRAcquisition(snr=20.0)).image.shape
        (1, 2, 64, 64)
    """
    tissue, sequence, acquisition = _defaults(tissue, sequence, acquisition, field)
    check_tissue(tissue)
    check_sequence(sequence)
    if material is not None:
        check_material(material, tissue)
        box = material_box(subject) if box is None else box
    anatomy = prepare_anatomy(
        subject,
        geometry,
        acquisition,
        cardiac_phases=cardiac_phases,
        supersample=supersample,
        material_box=None if material is None else box,
    )
    image, sigma, coils = acquire_cine(
        key,
        anatomy,
        tissue,
        sequence,
        acquisition,
        return_coils=return_coils,
        material=material,
    )
    return CineResult(
        image=image,
        labels=anatomy.labels,
        noise_std=sigma,
        coil_images=coils,
        coil_maps=anatomy.coil_maps if return_coils else None,
    )


def contrast_keys(key, n: int):
    """Key of contrast ``c``: ``fold_in(key, c)`` (as one :func:`simulate_cine`
    call with that key would receive)."""
    return jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(n))


def simulate_cine_contrasts(
    key,
    subject,
    geometry: ImageGeometry,
    *,
    tissue: TissueProperties,
    sequence: BSSFPSequence,
    acquisition: MRAcquisition,
    cardiac_phases=(0.0,),
    supersample=None,
) -> CineResult:
    """Many contrasts of one anatomy: the phantom is rasterised once, then the
    acquisition is ``vmap``-ed over contrasts.

    Args:
        tissue: :class:`TissueProperties` with arrays ``(n_contrasts, n_tissues)``.
        sequence: :class:`BSSFPSequence` whose leaves have shape ``(n_contrasts,)``.
        acquisition: :class:`MRAcquisition` whose leaves are scalars (shared) or
            ``(n_contrasts,)``.
        Other arguments as in :func:`simulate_cine`. Contrast ``c`` gets exactly
        the image ``simulate_cine(jax.random.fold_in(key, c), ...)`` would give.

    Returns:
        :class:`CineResult` whose ``image`` is ``(n_contrasts, n_phases, nz, ny,
        nx)``, ``labels`` ``(n_phases, nz, ny, nx)`` and ``noise_std``
        ``(n_contrasts,)``.
    """
    check_acquisition(acquisition)
    if jnp.ndim(tissue.pd) != 2:
        raise ValueError(
            f"tissue must have shape (n_contrasts, n_tissues); got {tissue.pd.shape}"
        )
    n = tissue.pd.shape[0]
    if jnp.ndim(sequence.tr) != 1 or jnp.shape(sequence.tr)[0] != n:
        raise ValueError(f"sequence leaves must have shape (n_contrasts={n},)")
    acquisition = broadcast_contrasts(acquisition, n)
    check_tissue(tissue)
    check_sequence(sequence)
    anatomy = prepare_anatomy(
        subject,
        geometry,
        acquisition,
        cardiac_phases=cardiac_phases,
        supersample=supersample,
    )

    def one(k, t, s, a):
        return acquire_cine(k, anatomy, t, s, a)[:2]

    image, sigma = jax.vmap(one)(contrast_keys(key, n), tissue, sequence, acquisition)
    return CineResult(image=image, labels=anatomy.labels, noise_std=sigma)


def broadcast_contrasts(acquisition: MRAcquisition, n: int) -> MRAcquisition:
    """Every leaf of ``acquisition`` broadcast to a leading axis of ``n``."""

    def widen(a):
        a = jnp.asarray(a)
        if a.ndim == 0:
            return jnp.broadcast_to(a, (n,))
        if a.shape[0] != n:
            raise ValueError(
                f"acquisition leaves must be scalars or have shape (n_contrasts={n},);"
                f" got {a.shape}"
            )
        return a

    return jax.tree_util.tree_map(widen, acquisition)
