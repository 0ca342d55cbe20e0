"""Simulation of one label set (subject x phase) of a design, over local devices."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxsim.mr import acquire_cine, contrast_keys, material_box, prepare_anatomy

from ._design import PopulationDesign

__all__ = ["LabelSet", "simulate_label_set"]


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """The records of one (subject, phase): images, labels and per-record values."""

    index: int
    subject: int
    phase: int
    cardiac_phase: float
    labels: np.ndarray  # (nz, ny, nx) uint8
    images: np.ndarray  # (n_contrasts, nz, ny, nx) float32
    affine: np.ndarray  # (4, 4)
    records: dict[str, np.ndarray]  # each (n_contrasts, ...)


@jax.jit
def _acquire_batch(keys, tissue, sequence, acquisition, anatomy, material=None):
    def one(key, t, s, a):
        image, sigma, _ = acquire_cine(key, anatomy, t, s, a, material=material)
        return image[0], sigma

    return jax.vmap(one)(keys, tissue, sequence, acquisition)


def _pad(tree, n):
    """Pad the leading axis of every leaf to ``n`` by repeating the last row."""

    def pad(a):
        extra = n - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, 0)])

    return jax.tree_util.tree_map(pad, tree)


def simulate_label_set(
    design: PopulationDesign, label_set: int, *, subjects=None, devices=None
) -> LabelSet:
    """Simulate every contrast of one (subject, phase) of ``design``.

    The anatomy is rasterised once; contrasts are simulated in batches of
    ``preset.contrast_batch``, each batch split over ``devices`` (default: all
    local JAX devices) along the contrast axis. Results do not depend on the
    number of devices.

    Args:
        design: the population design.
        label_set: ``subject * 2 + phase``.
        subjects: the design's batched subjects (pass to avoid resampling).
        devices: devices to spread contrasts over.

    Returns:
        :class:`LabelSet`.
    """
    p = design.preset
    subjects = design.subjects() if subjects is None else subjects
    s, phase = divmod(label_set, design.n_phases)
    subject = jax.tree_util.tree_map(lambda a: a[s], subjects)
    geometry = design.geometry(subject)
    cardiac_phase = design.cardiac_phases(subject)[phase]
    tissue, sequence, snr, idx = design.contrasts(s)
    acquisition = design.acquisition(snr=snr)
    material = design.material(s)
    anatomy = prepare_anatomy(
        subject,
        geometry,
        acquisition,
        cardiac_phases=(cardiac_phase,),
        material_box=None if material is None else material_box(subject),
    )
    if material is not None:
        material = jnp.asarray(material, anatomy.fractions.dtype)
    keys = contrast_keys(design.noise_key(label_set), design.n_contrasts)

    devices = list(jax.local_devices() if devices is None else devices)
    mesh = Mesh(np.array(devices), ("contrast",))
    batch_sharding = NamedSharding(mesh, PartitionSpec("contrast"))
    replicated = NamedSharding(mesh, PartitionSpec())
    anatomy = jax.device_put(anatomy, replicated)
    step = -(-p.contrast_batch // len(devices)) * len(devices)
    images, sigmas = [], []
    for start in range(0, design.n_contrasts, step):
        stop = min(start + step, design.n_contrasts)
        batch = jax.tree_util.tree_map(
            lambda a: a[start:stop],  # noqa: B023
            (keys, tissue, sequence, acquisition),
        )
        batch = jax.device_put(_pad(batch, step), batch_sharding)
        img, sig = _acquire_batch(*batch, anatomy, material)
        images.append(np.asarray(img)[: stop - start])
        sigmas.append(np.asarray(sig)[: stop - start])

    n = design.n_contrasts
    records = {
        "subject": np.full(n, s, np.int32),
        "phase_index": np.full(n, phase, np.int8),
        "cardiac_phase": np.full(n, cardiac_phase, np.float32),
        "contrast": np.asarray(p.contrasts, np.int16),
        "snr_level": np.asarray(idx[:, 0], np.int8),
        "sequence_index": np.asarray(idx[:, 1], np.int8),
        "tissue_draw": np.asarray(idx[:, 2], np.int8),
        "snr": np.asarray(snr, np.float32),
        "tr": np.asarray(sequence.tr, np.float32),
        "te": np.asarray(sequence.te, np.float32),
        "flip": np.asarray(sequence.flip, np.float32),
        "pd": np.asarray(tissue.pd, np.float32),
        "t1": np.asarray(tissue.t1, np.float32),
        "t2": np.asarray(tissue.t2, np.float32),
        "noise_std": np.concatenate(sigmas).astype(np.float32),
        "label_index": np.full(n, label_set, np.int32),
    }
    return LabelSet(
        index=label_set,
        subject=s,
        phase=phase,
        cardiac_phase=cardiac_phase,
        labels=np.asarray(anatomy.labels[0]),
        images=np.concatenate(images).astype(np.float32),
        affine=np.asarray(geometry.affine, np.float64),
        records=records,
    )
