"""Applying a trained translation model to volumes and whole databases.

A record's volume is translated slice by slice at the pixel size the model was
trained at and brought back to the record's own grid, so its labels and geometry
stay valid: each slice is divided by its 99.5th percentile (the training
normalisation), resampled (linear) to the model's pixel size, padded to a
multiple of 4 by edge replication, translated, cropped, resampled back and
multiplied by the same percentile (the translated database keeps the source's
intensity scale).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.io import Database, map_database

from ._data import Preprocessing
from ._translate import load_translator, to_unit_range

__all__ = ["slice_scale", "translate_database", "translate_volume"]


def slice_scale(volume: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Per-slice intensity scale of ``volume (nz, ny, nx)``: the
    ``ceil((1 - percentile/100) n)``-th largest value (as
    :func:`~jaxsim.train.normalize`), 1 where it is not positive; ``(nz,)``."""
    flat = np.asarray(volume, np.float64).reshape(volume.shape[0], -1)
    k = max(1, math.ceil((1.0 - percentile / 100.0) * flat.shape[1]))
    scale = np.sort(flat, axis=1)[:, -k]
    return np.where(scale > 0, scale, 1.0)


@jax.jit
def _run(model, x):
    return model(x)


def translate_volume(
    generator,
    volume: np.ndarray,
    spacing_yx: tuple[float, float],
    preprocessing: Preprocessing,
    *,
    batch: int = 8,
) -> np.ndarray:
    """Translate every slice of a volume, keeping its grid and intensity scale.

    Args:
        generator: the source-to-target network (``(B, H, W, 1)`` in [-1, 1]).
        volume: ``(nz, ny, nx)`` magnitudes, any positive scale.
        spacing_yx: the volume's in-plane pixel size ``(sy, sx)``, mm.
        preprocessing: the model's layout (its ``spacing`` and ``percentile``).
        batch: slices per network call.

    Returns:
        ``(nz, ny, nx)`` float32, non-negative, on the same grid.
    """
    volume = np.asarray(volume, np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be (nz, ny, nx); got shape {volume.shape}")
    nz, ny, nx = volume.shape
    scale = slice_scale(volume, preprocessing.percentile).astype(np.float32)
    x = volume / scale[:, None, None]
    sy, sx = (float(s) for s in spacing_yx)
    h = max(4, round(ny * sy / preprocessing.spacing))
    w = max(4, round(nx * sx / preprocessing.spacing))
    ph, pw = -h % 4, -w % 4
    out = []
    for i in range(0, nz, batch):
        part = jnp.asarray(x[i : i + batch])
        part = jax.image.resize(part, (part.shape[0], h, w), "linear")
        part = jnp.pad(part, ((0, 0), (0, ph), (0, pw)), mode="edge")
        y = _run(generator, to_unit_range(part))[..., 0]
        y = (y[:, :h, :w] + 1.0) * 0.5
        y = jax.image.resize(y, (y.shape[0], ny, nx), "linear")
        out.append(np.asarray(y))
    result = np.concatenate(out) * scale[:, None, None]
    return np.clip(result, 0.0, None).astype(np.float32)


def translate_database(
    model_dir: str | os.PathLike,
    source: str | os.PathLike,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop=None,
) -> dict:
    """Write ``path``: the database ``source`` with every image translated by the
    model trained in ``model_dir``.

    Labels, geometry, records and subjects are carried over unchanged; the file
    gains the attribute ``translated_by`` (JSON: the model folder, method, step
    and configuration).

    Returns:
        ``{"records": n, "bytes": size, "seconds": wall time}``.

    Raises:
        FileNotFoundError: no model or no database.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    import time

    from tqdm.auto import tqdm

    generator, preprocessing, meta = load_translator(model_dir)
    with Database(source) as db:
        n = int(np.asarray(db.complete_flags).sum())
        spacing = {}
        for r in np.flatnonzero(np.asarray(db.complete_flags)):
            geom = db.geometry(int(r))
            spacing[int(r)] = tuple(float(s) for s in np.asarray(geom.spacing))[1:]

    def transform(record: int, image: np.ndarray) -> np.ndarray:
        return translate_volume(generator, image, spacing[record], preprocessing)

    attrs = {
        "translated_by": {
            "model": str(Path(model_dir).resolve()),
            "method": meta["config"]["method"],
            "step": meta["step"],
            "config": meta["config"],
        }
    }
    bar = tqdm(total=n, desc="translate", unit="record", disable=not progress)

    def tick(done: int) -> None:
        bar.update(done - bar.n)

    t0 = time.perf_counter()
    try:
        out = map_database(
            source, path, transform, attrs=attrs, overwrite=overwrite, stop=stop,
            progress=tick,
        )  # fmt: skip
    finally:
        bar.close()
    return {**out, "seconds": time.perf_counter() - t0}
