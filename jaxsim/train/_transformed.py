"""Training data seen through an image-to-image network (sim-to-real translation).

:class:`TransformedData` wraps any training source (the on-device simulator, a
database) and passes every image of every batch through a trained translator
(CUT, FastCUT or CycleGAN from ``jaxsim translate train``) before the
segmentation network sees it; the labels are the simulation's own. This is the
downstream measure of a translation: a network trained on translated instead of
raw simulations, evaluated on real images.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from ._transforms import normalize
from ._translate import load_translator, to_unit_range

__all__ = ["TransformedData"]


@nnx.jit
def _translate(generator, x):
    return generator(x)


class TransformedData:
    """A data source whose images pass through a translation network.

    Args:
        base: a source with ``batch(key, n) -> (images (n, H, W), labels)`` of
            normalised 2D slices (``SimulatedData``, ``DatabaseData``).
        run_dir: a translation run (``jaxsim translate train``); its generator
            maps source slices (in ``[-1, 1]``) to target-looking slices.
        preprocessing: the segmentation network's input layout; its shape and
            pixel size must equal the translator's (the translator saw slices at
            that size).

    Raises:
        ValueError: 3D inputs, or a layout other than the translator's.
    """

    def __init__(self, base, run_dir: str | os.PathLike, preprocessing):
        generator, layout, meta = load_translator(run_dir)
        if preprocessing.slices is not None:
            raise ValueError("a translator transforms 2D slices; use a 2D network")
        if (tuple(layout.shape), float(layout.spacing)) != (
            tuple(preprocessing.shape),
            float(preprocessing.spacing),
        ):
            raise ValueError(
                f"the translator in {run_dir} was trained on {layout.shape[0]}x"
                f"{layout.shape[1]} slices at {layout.spacing} mm; train the "
                f"segmentation network at the same --shape and --spacing (got "
                f"{preprocessing.shape[0]}x{preprocessing.shape[1]} at "
                f"{preprocessing.spacing} mm)"
            )
        generator.eval()
        self.base = base
        self.generator = generator
        self.percentile = preprocessing.percentile
        self.run_dir = str(Path(run_dir).resolve())
        self.meta = meta

    def batch(self, key, n: int):
        images, labels = self.base.batch(key, n)
        out = _translate(self.generator, to_unit_range(images))[..., 0]
        # back to the layout the network expects: per-slice percentile scaling
        out = normalize((out + 1.0) * 0.5, percentile=self.percentile)
        return jnp.asarray(out, jnp.float32), labels

    def describe(self) -> dict:
        config = self.meta.get("config", {})
        return {
            **self.base.describe(),
            "translated_by": {
                "model": self.run_dir,
                "method": config.get("method"),
                "step": int(self.meta.get("step", 0)),
            },
        }
