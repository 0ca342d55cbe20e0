"""Applying a trained enhancer to volumes and whole databases.

A record's volume is enhanced slice by slice at the pixel size the model was
trained at, conditioned on the record's own labels, and brought back to the
record's grid, so labels and geometry stay valid: each slice is divided by its
99.5th percentile (the training normalisation), resampled (linear; labels
nearest) to the model's pixel size, padded by edge replication to a multiple of
the generator's ``2^n``, enhanced, cropped, resampled back and multiplied by
the same percentile (the database keeps its intensity scale).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.io import Database, map_database
from jaxsim.labels import ACDC, task_labels
from jaxsim.phantoms import TISSUES

from ._data import Preprocessing
from ._enhance_run import _enhance_jit, load_enhancer
from ._translate_apply import slice_scale

__all__ = ["enhance_database", "enhance_volume"]


def enhance_volume(
    generator,
    volume: np.ndarray,
    labels: np.ndarray,
    spacing_yx: tuple[float, float],
    preprocessing: Preprocessing,
    *,
    batch: int = 8,
) -> np.ndarray:
    """Enhance every slice of a volume, keeping its grid and intensity scale.

    Args:
        generator: the enhancer (:func:`~jaxsim.train.load_enhancer`).
        volume: ``(nz, ny, nx)`` physics magnitudes, any positive scale.
        labels: ``(nz, ny, nx)`` integer ACDC labels (0..3) of the volume.
        spacing_yx: the volume's in-plane pixel size ``(sy, sx)``, mm.
        preprocessing: the model's layout (its ``spacing`` and ``percentile``).
        batch: slices per network call.

    Returns:
        ``(nz, ny, nx)`` float32, non-negative, on the same grid.

    Raises:
        ValueError: shapes differ, or labels outside 0..3.
    """
    volume = np.asarray(volume, np.float32)
    labels = np.asarray(labels)
    if volume.ndim != 3 or labels.shape != volume.shape:
        raise ValueError(
            "volume and labels must both be (nz, ny, nx); got "
            f"{volume.shape} and {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= ACDC.n_classes):
        raise ValueError(
            f"labels must hold ACDC values 0..{ACDC.n_classes - 1}; got "
            f"{labels.min()}..{labels.max()}"
        )
    nz, ny, nx = volume.shape
    scale = slice_scale(volume, preprocessing.percentile).astype(np.float32)
    x = volume / scale[:, None, None]
    sy, sx = (float(s) for s in spacing_yx)
    f = generator.factor
    h = max(f, round(ny * sy / preprocessing.spacing))
    w = max(f, round(nx * sx / preprocessing.spacing))
    ph, pw = -h % f, -w % f
    pad = ((0, 0), (0, ph), (0, pw))
    out = []
    for i in range(0, nz, batch):
        part = jnp.asarray(x[i : i + batch])
        lab = jnp.asarray(labels[i : i + batch], jnp.int32)
        n = part.shape[0]
        part = jnp.pad(jax.image.resize(part, (n, h, w), "linear"), pad, mode="edge")
        lab = jax.image.resize(lab.astype(jnp.float32), (n, h, w), "nearest")
        lab = jnp.pad(lab.astype(jnp.int32), pad, mode="edge")
        y = _enhance_jit(generator, part, lab)[:, :h, :w]
        y = jax.image.resize(y, (n, ny, nx), "linear")
        out.append(np.asarray(y))
    result = np.concatenate(out) * scale[:, None, None]
    return np.clip(result, 0.0, None).astype(np.float32)


def enhance_database(
    model_dir: str | os.PathLike,
    db_in: str | os.PathLike,
    db_out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop=None,
) -> dict:
    """Write ``db_out``: the database ``db_in`` with every image enhanced by the
    model trained in ``model_dir``, conditioned on the database's own labels
    (its tissue label maps mapped to ACDC classes).

    Labels, geometry, records and subjects are carried over unchanged (the
    standard schema; the file opens with :class:`jaxsim.io.Database`); the file
    gains the attribute ``enhanced_by`` (JSON: the model folder, step and
    configuration).

    Returns:
        ``{"records": n, "bytes": size, "seconds": wall time}``.

    Raises:
        FileNotFoundError: no model or no database.
        FileExistsError: ``db_out`` exists and ``overwrite`` is false.
        ValueError: the database's label maps are not of this phantom's tissues.
    """
    from tqdm.auto import tqdm

    generator, preprocessing, meta = load_enhancer(model_dir)
    if not Path(db_in).exists():
        raise FileNotFoundError(f"{db_in}: no such database")
    with Database(db_in) as db:
        if list(db.tissue_names) != list(TISSUES):
            raise ValueError(
                f"{db_in} labels tissues {db.tissue_names}, not this phantom's "
                f"{list(TISSUES)}: its label maps cannot be mapped to ACDC classes"
            )
        n = int(np.asarray(db.complete_flags).sum())
        spacing = {}
        for r in np.flatnonzero(np.asarray(db.complete_flags)):
            geom = db.geometry(int(r))
            spacing[int(r)] = tuple(float(s) for s in np.asarray(geom.spacing))[1:]
        n_contrasts = db.n_contrasts
    cache: dict[int, np.ndarray] = {}
    reader = Database(db_in)

    def transform(record: int, image: np.ndarray) -> np.ndarray:
        label_set = record // n_contrasts
        if label_set not in cache:
            cache.clear()  # records come label set by label set
            cache[label_set] = task_labels(reader.record(record)[1], ACDC)
        return enhance_volume(
            generator, image, cache[label_set], spacing[record], preprocessing
        )

    attrs = {
        "enhanced_by": {
            "model": str(Path(model_dir).resolve()),
            "method": "spade",
            "step": meta["step"],
            "config": meta["config"],
        }
    }
    bar = tqdm(total=n, desc="enhance", unit="record", disable=not progress)

    def tick(done: int) -> None:
        bar.update(done - bar.n)

    t0 = time.perf_counter()
    try:
        out = map_database(
            db_in, db_out, transform, attrs=attrs, overwrite=overwrite, stop=stop,
            progress=tick,
        )  # fmt: skip
    finally:
        bar.close()
        reader.close()
    return {**out, "seconds": time.perf_counter() - t0}
