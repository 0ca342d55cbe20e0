"""Where training batches come from: the simulator, a database, real images.

Every source returns ``(images, labels)`` batches of the same layout: 2D slices
``(n, H, W)`` (or stacks ``(n, nz, H, W)``) at the network's pixel size, float32
intensities normalised per image (:func:`~jaxsim.train.normalize`) and uint8
labels in the task scheme. A batch is a function of a PRNG key only, so a
resumed run draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.io import Database, LabelledCase, is_population_database, load_cases
from jaxsim.labels import ACDC, LabelScheme, task_labels
from jaxsim.population import SamplerSpec, check_spec, sample_batch

from ._transforms import normalize, resample_in_plane

__all__ = [
    "Preprocessing",
    "SimulatedData",
    "SliceData",
    "DatabaseData",
    "slices_from_cases",
    "open_data",
]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images are brought to the network, the same at training and test time.

    Attributes:
        shape: ``(H, W)`` network input size (pixels).
        spacing: in-plane pixel size the network sees, mm.
        percentile: intensity percentile that maps to 1 (per slice, for 2D and
            3D networks alike).
        slices: ``None`` for 2D networks (inputs are slices); for 3D networks the
            number of consecutive slices in a stack (inputs ``(slices, H, W)``;
            the slices keep their own spacing, only the in-plane grid is
            resampled).
    """

    shape: tuple[int, int] = (128, 128)
    spacing: float = 2.5
    percentile: float = 99.5
    slices: int | None = None

    def __post_init__(self):
        if self.slices is not None and (
            isinstance(self.slices, bool) or int(self.slices) != self.slices
            or self.slices < 1
        ):  # fmt: skip
            raise ValueError(
                f"slices must be None or an integer >= 1; got {self.slices}"
            )
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 2 or min(shape) < 8:
            raise ValueError(f"shape must be (H, W) with sides >= 8; got {shape}")
        object.__setattr__(self, "shape", shape)
        if not self.spacing > 0:
            raise ValueError(f"spacing must be > 0 mm; got {self.spacing}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must lie in (50, 100]; got {self.percentile}")

    def volume_slices(self, image, labels, spacing_yx):
        """A volume ``(nz, ny, nx)`` as normalised slices ``(nz, H, W)`` (labels
        ``None`` allowed)."""
        image, labels = resample_in_plane(
            image, labels, spacing_yx, target_spacing=self.spacing, out_shape=self.shape
        )
        return normalize(image, percentile=self.percentile), labels


class SimulatedData:
    """Batches drawn on device by :func:`jaxsim.population.sample_batch`.

    The sampler's slice size and pixel-size range follow the preprocessing: the
    pixel size is drawn within 20 % of ``preprocessing.spacing`` (a scale
    augmentation the real data gets from resampling).
    """

    def __init__(self, preprocessing: Preprocessing, spec: SamplerSpec | None = None):
        s = preprocessing.spacing
        base = SamplerSpec() if spec is None else spec
        shape = preprocessing.shape
        if preprocessing.slices is not None:
            shape = (preprocessing.slices, *shape)
        self.spec = base.replace(
            shape=shape,
            in_plane_spacing=(0.8 * s, 1.2 * s),
            scheme=ACDC,
            normalize=False,
        )
        self.percentile = preprocessing.percentile

    def batch(self, key, n: int):
        b = sample_batch(key, n, self.spec)
        h, w = b.images.shape[-2:]  # per slice, stacks too (as real volumes)
        images = normalize(b.images.reshape(-1, h, w), percentile=self.percentile)
        images = images.reshape(b.images.shape)
        return images.astype(jnp.float32), b.labels

    def describe(self) -> dict:
        """The layout and every range the sampler draws from (so a run records
        the simulation it saw, whatever the library's defaults become)."""
        ranges = {
            f.name: [float(v) for v in getattr(self.spec, f.name)]
            for f in dataclasses.fields(self.spec)
            if not f.metadata.get("static")
        }
        return {"kind": "sim", "shape": list(self.spec.shape), "ranges": ranges}


class SliceData:
    """Batches of random slices from arrays held on device.

    Args:
        images: ``(N, H, W)`` normalised slices (or ``(N, D, H, W)`` stacks).
        labels: the same shape, uint8 task labels.
        names: optional case name per slice (for reports).
    """

    def __init__(self, images, labels, names=None, kind: str = "slices"):
        images, labels = jnp.asarray(images, jnp.float32), jnp.asarray(labels)
        if images.shape != labels.shape or images.ndim not in (3, 4):
            raise ValueError(
                "images and labels must both be (N, H, W) or (N, D, H, W); got "
                f"{images.shape} and {labels.shape}"
            )
        if images.shape[0] == 0:
            raise ValueError("no slices to train on")
        self.images, self.labels = images, labels.astype(jnp.uint8)
        self.names = list(names) if names is not None else None
        self.kind = kind

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, key, n: int):
        idx = jax.random.randint(key, (n,), 0, len(self))
        return self.images[idx], self.labels[idx]

    def describe(self) -> dict:
        return {"kind": self.kind, "slices": len(self)}


def slices_from_cases(cases: list[LabelledCase], preprocessing: Preprocessing):
    """Every slice of every case at the network's pixel size, and the case name of
    each slice; for 3D networks (``preprocessing.slices``) every stack of that
    many consecutive slices (stride 1; a shorter volume is padded with empty
    slices at its end)."""
    images, labels, names = [], [], []
    for case in cases:
        img, lab = preprocessing.volume_slices(
            case.image, case.labels, case.spacing[1:]
        )
        img, lab = np.asarray(img), np.asarray(lab)
        if preprocessing.slices is not None:
            img, lab = _stacks(img, lab, preprocessing.slices)
        images.append(img)
        labels.append(lab)
        names += [case.name] * img.shape[0]
    return np.concatenate(images), np.concatenate(labels), names


def _pad_slices(volume, depth: int):
    """``volume (nz, ...)`` padded with zero slices at its end to ``depth``."""
    missing = depth - volume.shape[0]
    if missing <= 0:
        return volume
    return np.concatenate(
        [volume, np.zeros((missing, *volume.shape[1:]), volume.dtype)]
    )


def _stacks(image, labels, depth: int):
    """All windows of ``depth`` consecutive slices: ``(n, depth, H, W)``."""
    image, labels = _pad_slices(image, depth), _pad_slices(labels, depth)
    n = image.shape[0] - depth + 1
    idx = np.arange(n)[:, None] + np.arange(depth)[None]
    return image[idx], labels[idx]


class DatabaseData:
    """Random slices of a jaxsim population database, read from disk per batch.

    Tissue labels map to the scheme's classes; each record's own geometry gives
    its pixel size. Batches depend only on the key (a NumPy generator seeded from
    it picks the records and slices).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        preprocessing: Preprocessing,
        scheme: LabelScheme = ACDC,
    ):
        self.path = Path(path)
        self.db = Database(self.path)
        self.records = np.flatnonzero(np.asarray(self.db.complete_flags))
        self.n_records = len(self.records)
        if self.n_records == 0:
            raise ValueError(f"{self.path} holds no complete records")
        self.nz = int(self.db.record(int(self.records[0]))[0].shape[0])
        self.preprocessing = preprocessing
        self.scheme = scheme

    def batch(self, key, n: int):
        seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
        rng = np.random.default_rng(seed)
        images, labels = [], []
        depth = self.preprocessing.slices
        span = 1 if depth is None else depth
        picks = self.records[rng.integers(0, self.n_records, n)]
        starts = rng.integers(0, max(1, self.nz - span + 1), n)
        for r, k in zip(picks, starts, strict=True):
            image, tissue, geometry = self.db.record(int(r))
            spacing = tuple(float(s) for s in np.asarray(geometry.spacing))[1:]
            lab = task_labels(np.asarray(tissue[k : k + span]), self.scheme)
            img, lab = self.preprocessing.volume_slices(
                image[k : k + span], lab, spacing
            )
            img, lab = np.asarray(img), np.asarray(lab)
            if depth is None:
                img, lab = img[0], lab[0]
            else:
                img, lab = _pad_slices(img, depth), _pad_slices(lab, depth)
            images.append(img)
            labels.append(lab)
        return jnp.stack(images), jnp.stack(labels)

    def describe(self) -> dict:
        return {"kind": "database", "path": str(self.path), "records": self.n_records}


def sampler_spec(overrides=None) -> SamplerSpec:
    """A :class:`SamplerSpec` with fields overridden from JSON values (lists
    become tuples); unknown fields are refused by name."""
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(SamplerSpec)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"sampler options {unknown} are not SamplerSpec fields; known: "
            f"{sorted(known - {'scheme', 'shape'})}"
        )
    if "shape" in overrides or "scheme" in overrides:
        raise ValueError("sampler options cannot set shape or scheme (the run does)")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    spec = SamplerSpec().replace(**values)
    check_spec(spec)
    return spec


def open_data(
    spec: str,
    preprocessing: Preprocessing,
    *,
    spacing=None,
    label_map=None,
    scheme: LabelScheme = ACDC,
    sampler=None,
):
    """A data source from a specification: ``"sim"``, a database ``.h5`` made by
    ``jaxsim population``, or a folder (or file) of real labelled cases.

    Args:
        spec: the data specification.
        preprocessing: the network's input layout.
        spacing: ``(sz, sy, sx)`` mm for real files that store none (HDF5).
        label_map: ``{file value: class value}`` for real labels.
        scheme: the task's label scheme.
        sampler: ``SamplerSpec`` field overrides for ``"sim"``.

    Raises:
        ValueError, FileNotFoundError: unknown specification, missing path, or a
            folder without labelled cases.
    """
    if spec == "sim":
        return SimulatedData(preprocessing, sampler_spec(sampler))
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"--data {spec}: no such file or folder (give 'sim', a database .h5 or "
            "a folder of labelled images)"
        )
    if is_population_database(path):
        return DatabaseData(path, preprocessing, scheme)
    cases = load_cases(
        path, spacing=spacing, label_map=label_map, n_classes=scheme.n_classes
    )
    images, labels, names = slices_from_cases(cases, preprocessing)
    return SliceData(images, labels, names, kind="real")
