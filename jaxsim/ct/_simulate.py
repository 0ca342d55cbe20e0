"""CT acquisition of a subject or a tissue-fraction volume: projections, noise, FDK.

Traceable end to end: subjects, planned geometries (traced affines), materials and
acquisition magnitudes may be tracers (``jit``, ``vmap``, ``grad``); sizes (grid,
views, detector, chunks) are static. Validation and memory planning run eagerly at
the public boundary. Inside, the phantom is rasterised in slabs of slices straight
into basis-material maps, and views are projected, attenuated, made noisy and
log-transformed in chunks, so memory stays within the plan of :mod:`._memory`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.geometry import ImageGeometry
from jaxsim.kernels import ConeBeamGeometry, VolumeGeometry, cone_beam_project, fdk
from jaxsim.kernels.checks import check_range
from jaxsim.random import stream

from ._acquisition import CTAcquisition, check_acquisition, scanner_geometry
from ._memory import CTMemoryPlan, plan_ct_memory
from ._noise import detected_counts, log_transform
from ._physics import reduced_basis, transmission, water_correction, water_reference
from ._tissue_materials import CTMaterials, as_ct_materials, check_materials

__all__ = [
    "CTResult",
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING",
    "simulate_ct",
    "simulate_ct_from_fractions",
    "plan_ct",
    "to_hu",
]

#: Default reconstruction grid of :func:`simulate_ct`: an axial chest volume
#: ``(nz, ny, nx)`` of 2.5 mm voxels centred on the heart.
DEFAULT_SHAPE = (48, 160, 160)
DEFAULT_SPACING = (2.5, 2.5, 2.5)


def to_hu(mu: jax.Array, mu_water, mu_air=0.0) -> jax.Array:
    """Hounsfield units ``1000 (mu - mu_water) / (mu_water - mu_air)``."""
    return 1000.0 * (mu - mu_water) / (mu_water - mu_air)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CTResult:
    """A simulated CT acquisition (a pytree: it can leave ``jit`` and ``vmap``).

    Attributes:
        projections: ``(n_views, n_v, n_u)`` measured line integrals (noisy, before
            beam-hardening correction), float.
        image: ``(nz, ny, nx)`` FDK reconstruction in HU, float.
        labels: ``(nz, ny, nx)`` uint8 tissue labels on the reconstruction grid.
        geom: the scan geometry (pixel counts static, distances and angles leaves).
        mu_water: effective water attenuation used for HU, 1/mm.
    """

    projections: jax.Array
    image: jax.Array
    labels: jax.Array
    geom: ConeBeamGeometry
    mu_water: jax.Array


def _basis_weights(materials: CTMaterials, energies, dtype):
    """``(rank, n_tissues)`` tissue -> projected-map weights, and the curves
    ``(rank, n_energies)`` (1/mm per unit map) they multiply."""
    coeffs, curves = reduced_basis(materials.basis, energies)
    weights = jnp.asarray(coeffs.T, dtype) @ materials.mixing().astype(dtype)
    return weights, jnp.asarray(curves, dtype)


def _measure(key, maps, vol_geom, geom, acq, curves, chunk):
    """Measured line integrals of basis maps, and their beam-hardening correction.

    Args:
        maps: ``(nz, rank, ny, nx)`` projected maps (slice-major, as rasterised).
        chunk: views per chunk (static); noise is drawn per view from
            ``fold_in(stream(key, "ct.noise"), view)``, so the chunking does not
            change the draw.

    Returns:
        ``(measured, corrected)``, each ``(n_views, n_v, n_u)``: the correction
        runs per chunk, so its table look-ups never span all views.
    """
    dtype = maps.dtype
    rank = maps.shape[1]
    weights = acq.weights(dtype)
    noise_key = stream(key, "ct.noise")
    n = geom.n_angles
    n_chunks = -(-n // chunk)
    angles = jnp.pad(jnp.asarray(geom.angles, dtype), (0, n_chunks * chunk - n))
    views = jnp.arange(n_chunks * chunk)

    def one_chunk(item):
        chunk_angles, chunk_views = item
        g = dataclasses.replace(geom, angles=chunk_angles)

        def project(r):
            volume = jax.lax.dynamic_index_in_dim(maps, r, axis=1, keepdims=False)
            return cone_beam_project(volume, vol_geom, g)

        lines = jax.lax.map(project, jnp.arange(rank))  # (rank, c, n_v, n_u)
        trans = transmission(lines, curves, weights)

        def detect(view, t):
            return detected_counts(
                t,
                key=jax.random.fold_in(noise_key, view),
                i0=acq.i0,
                noise=acq.noise,
                electronic_sigma=acq.electronic_sigma,
            )

        counts = jax.vmap(detect)(chunk_views, trans)
        measured = log_transform(counts, i0=acq.i0)
        if not acq.beam_hardening_correction:
            return measured, measured
        return measured, water_correction(measured, weights, acq.energies())

    if n_chunks == 1:
        return one_chunk((angles, views))
    items = (angles.reshape(n_chunks, chunk), views.reshape(n_chunks, chunk))
    # checkpoint: under reverse mode each chunk is recomputed, not stored
    out = jax.lax.map(jax.checkpoint(one_chunk), items)
    shape = (n_chunks * chunk, geom.n_v, geom.n_u)
    return tuple(x.reshape(shape)[:n] for x in out)


def _reconstruct(corrected, vol_geom, geom, acq):
    """FDK image in HU and the water attenuation, from corrected line integrals."""
    weights = acq.weights(corrected.dtype)
    mu_water, mu_air = water_reference(weights, acq.energies())
    mu = fdk(corrected, vol_geom, geom, filter=acq.filter, short_scan=False)
    return to_hu(mu, mu_water, mu_air), mu_water


@functools.partial(jax.jit, static_argnames=("chunk",))
def _scan_fractions(key, fractions, vol_geom, geom, materials, acq, chunk):
    weights, curves = _basis_weights(materials, acq.energies(), fractions.dtype)
    maps = jnp.einsum("rt,tzyx->zryx", weights, fractions)
    measured, corrected = _measure(key, maps, vol_geom, geom, acq, curves, chunk)
    image, mu_water = _reconstruct(corrected, vol_geom, geom, acq)
    labels = jnp.argmax(fractions, axis=0).astype(jnp.uint8)
    return CTResult(measured, image, labels, geom, mu_water)


def _slab_geometry(geometry: ImageGeometry, k0, size: int) -> ImageGeometry:
    """Slices ``k0 .. k0 + size - 1`` of a grid (``k0`` may be traced)."""
    affine = geometry.affine
    origin = affine[:3, 3] + k0 * affine[:3, 2]
    return ImageGeometry(
        affine=affine.at[:3, 3].set(origin),
        shape=(size, *geometry.shape[1:]),
        nominal_spacing=geometry.nominal_spacing,
    )


def _rasterise(subject, geometry, cardiac_phase, weights, supersample, slab):
    """Basis maps ``(nz, rank, ny, nx)`` and uint8 labels ``(nz, ny, nx)``,
    rasterised ``slab`` slices at a time (the fractions never exist whole)."""
    from jaxsim.phantoms import tissue_fractions

    def one(k0):
        g = (
            geometry
            if slab == geometry.shape[0]
            else _slab_geometry(geometry, k0, slab)
        )
        f = tissue_fractions(
            subject, g, cardiac_phase=cardiac_phase, supersample=supersample
        )
        maps = jnp.einsum("rt,tzyx->zryx", weights.astype(f.dtype), f)
        return maps, jnp.argmax(f, axis=0).astype(jnp.uint8)

    nz, ny, nx = geometry.shape
    if slab == nz:
        return one(0)
    maps, labels = jax.lax.map(one, jnp.arange(0, nz, slab))
    return maps.reshape(nz, -1, ny, nx), labels.reshape(nz, ny, nx)


@functools.partial(jax.jit, static_argnames=("supersample", "chunk", "slab"))
def _scan_subject(
    key, subject, geometry, cardiac_phase, vol_geom, geom, materials, acq,
    supersample, chunk, slab,
):  # fmt: skip
    dtype = geometry.affine.dtype
    weights, curves = _basis_weights(materials, acq.energies(), dtype)
    maps, labels = _rasterise(
        subject, geometry, cardiac_phase, weights, supersample, slab
    )
    measured, corrected = _measure(key, maps, vol_geom, geom, acq, curves, chunk)
    image, mu_water = _reconstruct(corrected, vol_geom, geom, acq)
    return CTResult(measured, image, labels, geom, mu_water)


def plan_ct(
    vol_geom: VolumeGeometry,
    acquisition: CTAcquisition | None = None,
    *,
    materials: CTMaterials | None = None,
    dtype=None,
    rasterise: bool = True,
    max_memory: int | None = None,
    check: bool = True,
) -> tuple[ConeBeamGeometry, CTMemoryPlan]:
    """The scan geometry and memory plan of a simulation, before running it.

    Args:
        vol_geom: the reconstruction grid in the scanner.
        acquisition: the scan (default :class:`CTAcquisition`).
        materials: the tissue materials (their basis sets the projected rank).
        dtype: float dtype of the simulation (default JAX's default float).
        rasterise: whether the phantom is rasterised (:func:`simulate_ct`) or
            fractions are given (:func:`simulate_ct_from_fractions`).
        max_memory: bytes the process may use at its peak (default: what it holds
            plus 85 % of the memory available now).
        check: raise when the job cannot fit; ``False`` returns the plan of the
            smallest chunks anyway (``plan.fits`` is then false).

    Returns:
        ``(geom, plan)``: the :class:`~jaxsim.kernels.ConeBeamGeometry` and the
        :class:`~jaxsim.ct.CTMemoryPlan` (``peak_bytes`` is the estimate).

    Raises:
        ValueError: the job cannot fit in the memory (the message names the
            estimate; only with ``check``), or the scan is invalid.
    """
    acq = CTAcquisition() if acquisition is None else acquisition
    materials = as_ct_materials(materials)
    geom = scanner_geometry(vol_geom, acq)
    itemsize = np.dtype(dtype or jnp.zeros(()).dtype).itemsize
    rank = reduced_basis(materials.basis, acq.energies())[1].shape[0]
    plan = plan_ct_memory(
        vol_geom.shape,
        n_views=acq.n_views,
        detector=(geom.n_v, geom.n_u),
        n_basis=rank,
        n_tissues=len(materials.tissues),
        itemsize=itemsize,
        rasterise=rasterise,
        max_memory=max_memory,
        check=check,
    )
    return geom, plan


def _prepare(materials, acquisition, tissues):
    acq = CTAcquisition() if acquisition is None else acquisition
    check_acquisition(acq)
    materials = as_ct_materials(materials, tissues)
    check_materials(materials)
    return materials, acq


def simulate_ct_from_fractions(
    key: jax.Array,
    fractions: jax.Array,
    vol_geom: VolumeGeometry,
    *,
    tissues: tuple[str, ...] | None = None,
    materials: CTMaterials | None = None,
    acquisition: CTAcquisition | None = None,
    max_memory: int | None = None,
) -> CTResult:
    """Simulate a cone-beam CT scan of a partial-volume tissue map.

    Tissues become basis-material maps (:class:`~jaxsim.ct.CTMaterials`); each
    independent attenuation curve of the basis is projected once; Beer-Lambert
    over the beam's energy bins gives the transmission; the detector adds photon
    (Poisson or Gaussian) and electronic noise; the log transform, a water
    beam-hardening correction and FDK give the image in HU.

    Args:
        key: PRNG key for the noise.
        fractions: ``(n_tissues, nz, ny, nx)`` float fractions summing to 1 per
            voxel, channels ordered as ``tissues``.
        vol_geom: placement of the grid in the scanner (also the reconstruction
            grid).
        tissues: channel names; default ``materials.tissues``, else
            :data:`jaxsim.labels.TISSUES`.
        materials: :class:`~jaxsim.ct.CTMaterials` (or a table ``tissue ->
            (fractions, iodine mg/mL)``); default the built-in table.
        acquisition: the scan, beam, detector and reconstruction
            (default :class:`~jaxsim.ct.CTAcquisition`).
        max_memory: bytes the process may use at its peak (see :func:`plan_ct`).

    Returns:
        A :class:`CTResult`; float results have the dtype of ``fractions``.

    Raises:
        ValueError: wrong fractions shape, invalid materials or acquisition, or a
            job that cannot fit in memory.
    """
    fractions = jnp.asarray(fractions)
    if tissues is None and isinstance(materials, CTMaterials):
        tissues = materials.tissues
    materials, acq = _prepare(materials, acquisition, tissues)
    expected = (len(materials.tissues), *vol_geom.shape)
    if fractions.shape != expected:
        raise ValueError(f"fractions must have shape {expected}; got {fractions.shape}")
    geom, plan = plan_ct(
        vol_geom,
        acq,
        materials=materials,
        dtype=fractions.dtype,
        rasterise=False,
        max_memory=max_memory,
    )
    result = _scan_fractions(
        key, fractions, vol_geom, geom, materials, acq, plan.views_per_chunk
    )
    # the planned scan itself (float64 angles when concrete), not its jit copy
    return dataclasses.replace(result, geom=geom)


def _scanner_grid(geometry: ImageGeometry, acq: CTAcquisition) -> VolumeGeometry:
    spacing = geometry.static_spacing()
    if spacing is None:
        if acq.detector is None:
            raise ValueError(
                "geometry has a traced affine and no static spacing, so the detector "
                "cannot be sized: plan the grid with concrete spacing "
                "(axial_geometry, short_axis_geometry or ImageGeometry.from_axes "
                "record it as nominal_spacing), or give "
                "acquisition=CTAcquisition(detector=(n_v, n_u), ...)"
            )
        spacing = tuple(geometry.spacing[i] for i in range(3))
    return VolumeGeometry(geometry.shape, spacing)


def simulate_ct(
    key: jax.Array,
    subject,
    *,
    geometry: ImageGeometry | None = None,
    cardiac_phase=0.0,
    materials: CTMaterials | None = None,
    acquisition: CTAcquisition | None = None,
    supersample=2,
    max_memory: int | None = None,
) -> CTResult:
    """Cone-beam CT of a virtual subject: projections, FDK image in HU, labels.

    The phantom is rasterised on ``geometry`` and scanned in that grid's own frame:
    the rotation axis is the grid's ``k`` axis through its centre, so an axial grid
    gives an axial scan. Everything physical may be traced: ``jax.jit(jax.vmap(
    jax.grad(loss)))`` over subjects, each with a geometry planned inside the traced
    function, works; the grid spacing must then be static
    (``ImageGeometry.static_spacing()``, recorded by the planners) or the detector
    given (``acquisition.detector``).

    Args:
        key: PRNG key for the noise (stream ``"ct.noise"``, one key per view).
        subject: one :class:`jaxsim.phantoms.Subject`.
        geometry: the reconstruction grid; default :data:`DEFAULT_SHAPE` voxels of
            :data:`DEFAULT_SPACING` mm on an axial grid centred on the heart.
        cardiac_phase: in [0, 1); 0 is end-diastole.
        materials: :class:`~jaxsim.ct.CTMaterials` (default the built-in table).
        acquisition: :class:`~jaxsim.ct.CTAcquisition` (default 120 kVp, 360 views,
            1e5 photons, Poisson noise, Shepp-Logan FDK).
        supersample: phantom sub-samples per voxel (see
            :func:`jaxsim.phantoms.tissue_fractions`).
        max_memory: bytes the process may use at its peak (see :func:`plan_ct`).

    Returns:
        A :class:`CTResult` whose ``labels`` are the phantom's tissue labels on the
        reconstruction grid; float results have the geometry's dtype.

    Raises:
        ValueError: invalid subject, materials or acquisition; a grid without
            static spacing and no ``acquisition.detector``; a job that cannot fit
            in memory (the message names the estimate).

    Example:
        >>> s = default_subject("male")
        >>> g = axial_geometry(s, spacing=(8.0, 8.0, 8.0), shape=(4, 48, 48))
        >>> res = simulate_ct(jax.random.key(0), s, geometry=g,
        ...                   acquisition=CTAcquisition(n_views=60))
        >>> res.image.shape
        (4, 48, 48)
    """
    from jaxsim.phantoms import TISSUES, axial_geometry, check_subject

    materials, acq = _prepare(materials, acquisition, TISSUES)
    check_subject(subject)
    check_range(
        "cardiac_phase",
        cardiac_phase,
        low=0.0,
        high=1.0,
        low_inclusive=True,
        high_inclusive=False,
    )
    if geometry is None:
        geometry = axial_geometry(subject, spacing=DEFAULT_SPACING, shape=DEFAULT_SHAPE)
    if not isinstance(geometry, ImageGeometry):
        raise TypeError(
            f"geometry must be an ImageGeometry; got {type(geometry).__name__}"
        )
    vol_geom = _scanner_grid(geometry, acq)
    geom, plan = plan_ct(
        vol_geom,
        acq,
        materials=materials,
        dtype=geometry.affine.dtype,
        max_memory=max_memory,
    )
    result = _scan_subject(
        key,
        subject,
        geometry,
        cardiac_phase,
        vol_geom,
        geom,
        materials,
        acq,
        supersample,
        plan.views_per_chunk,
        plan.slices_per_slab,
    )
    return dataclasses.replace(result, geom=geom)
