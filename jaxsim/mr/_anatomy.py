"""Anatomy prepared once for many MR acquisitions: fractions, labels, coils."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.geometry import ImageGeometry
from jaxsim.kernels.checks import check_range, is_concrete
from jaxsim.labels import TISSUE_INDEX
from jaxsim.phantoms import label_map, tissue_fractions

from ._acquisition import MRAcquisition
from ._coils import coil_sensitivities
from ._material import material_coordinates

__all__ = ["Anatomy", "refine_in_plane", "prepare_anatomy", "check_phases"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Anatomy:
    """A subject rasterised for MR acquisition.

    Attributes:
        fractions: ``(P, n_tissues, nz, ny*o, nx*o)`` tissue fractions on the
            in-plane refined grid (``o`` the acquisition's oversampling), one per
            cardiac phase.
        labels: ``(P, nz, ny, nx)`` uint8 tissue labels at target resolution.
        myo_mask: ``(nz, ny, nx)`` bool LV myocardium of the first phase (the SNR
            reference).
        coil_maps: ``(n_coils, nz, ny, nx)`` complex receive sensitivities.
        material_coords: ``(P, 3, nz, ny*o, nx*o)`` box coordinates of each fine
            voxel's material point (:func:`~jaxsim.mr.material_coordinates`), or
            ``None`` when prepared without a material box.
    """

    fractions: jax.Array
    labels: jax.Array
    myo_mask: jax.Array
    coil_maps: jax.Array
    material_coords: jax.Array | None = None


def refine_in_plane(geometry: ImageGeometry, factor: int) -> ImageGeometry:
    """The same field of view sampled ``factor`` times finer along y and x.

    Voxel centres of the fine grid are placed so that the fine grid's voxels tile
    the coarse grid's voxels exactly. The nominal spacing (if any) follows.
    """
    if factor == 1:
        return geometry
    a = geometry.affine
    scale = jnp.diag(jnp.asarray([1.0 / factor, 1.0 / factor, 1.0, 1.0], a.dtype))
    shift = -(factor - 1) / (2 * factor)
    offset = jnp.asarray([shift, shift, 0.0, 1.0], a.dtype)
    affine = (a @ scale).at[:, 3].set(a @ offset)
    nz, ny, nx = geometry.shape
    nominal = geometry.nominal_spacing
    if nominal is not None:
        nominal = (nominal[0], nominal[1] / factor, nominal[2] / factor)
    return ImageGeometry(
        affine=affine, shape=(nz, ny * factor, nx * factor), nominal_spacing=nominal
    )


def check_phases(cardiac_phases) -> jax.Array:
    """Cardiac phases as a 1D array (eagerly checked in [0, 1) when concrete)."""
    phases = jnp.atleast_1d(jnp.asarray(cardiac_phases))
    if phases.ndim != 1 or phases.shape[0] == 0:
        raise ValueError("cardiac_phases must be a non-empty 1D sequence of phases")
    check_range(
        "cardiac_phases",
        phases,
        low=0.0,
        high=1.0,
        low_inclusive=True,
        high_inclusive=False,
    )
    return phases.astype(jnp.result_type(float, phases))


def prepare_anatomy(
    subject,
    geometry: ImageGeometry,
    acquisition: MRAcquisition,
    *,
    cardiac_phases=(0.0,),
    supersample=None,
    need_myo: bool = True,
    material_box=None,
) -> Anatomy:
    """Rasterise a subject once for many acquisitions (traceable).

    Args:
        subject: a :class:`~jaxsim.phantoms.Subject` (scalar leaves; may be traced).
        geometry: target grid ``(nz, ny, nx)`` (may be traced).
        acquisition: supplies the oversampling and coil count.
        cardiac_phases: ``(P,)`` phases in [0, 1) (may be traced; P is static).
        supersample: phantom sub-samples per fine voxel (default: the phantom's).
        need_myo: raise if a concrete first-phase label map has no LV myocardium
            and the acquisition sets noise by ``snr``.
        material_box: a :class:`~jaxsim.mr.MaterialBox` to prepare material
            coordinates for (needed by ``acquire_cine(..., material=...)``).

    Returns:
        :class:`Anatomy`.
    """
    phases = check_phases(cardiac_phases)
    kwargs = {} if supersample is None else {"supersample": supersample}
    fine = refine_in_plane(geometry, acquisition.oversample)
    n = phases.shape[0]
    fractions = jnp.stack(
        [
            tissue_fractions(subject, fine, cardiac_phase=phases[p], **kwargs)
            for p in range(n)
        ]
    )
    labels = jnp.stack(
        [
            label_map(subject, geometry, cardiac_phase=phases[p], **kwargs)
            for p in range(n)
        ]
    )
    myo = labels[0] == TISSUE_INDEX["lv_myocardium"]
    if need_myo and acquisition.snr is not None and is_concrete(myo):
        if not np.any(np.asarray(myo)):
            raise ValueError(
                "acquisition.snr needs LV myocardium in the first phase's image to "
                "set the noise level; the grid contains none (set noise_std instead)"
            )
    maps = coil_sensitivities(geometry, acquisition.n_coils)
    coords = None
    if material_box is not None:
        coords = material_coordinates(
            subject, fine, material_box, cardiac_phases=phases
        )
    return Anatomy(
        fractions=fractions,
        labels=labels,
        myo_mask=myo,
        coil_maps=maps,
        material_coords=coords,
    )
