"""Physics-driven cine-to-tagged transform for real images (seed 003's method, timed).

A real bSSFP cine image is turned into a tagged-looking gradient-echo image: its
contrast is changed by a power law (the seed's element-wise square root grossly maps
bSSFP to GRE contrast), and it is multiplied by the longitudinal magnetization of a
SPAMM pattern (Bloch-simulated binomial trains, :func:`~jaxsim.kernels.spamm_pattern`)
faded to each frame's time after tagging by T1 recovery and the RF-spoiled readout
(:func:`~jaxsim.kernels.tag_fading`). A real image carries no motion field, so the
tags do not deform here (use :func:`~jaxsim.mr.simulate_tagged` for deforming tags);
labels are unchanged by the transform.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxsim.kernels import spamm_pattern, tag_fading
from jaxsim.kernels.checks import check_finite, check_range

from ._tagging import TaggingSequence

__all__ = ["cine_to_tagged"]


def _pixel_spacing(pixel_spacing):
    sp = np.asarray(pixel_spacing, dtype=np.float64)
    if sp.ndim == 0:
        sp = np.array([sp, sp])
    if sp.shape != (2,):
        raise ValueError(
            f"pixel_spacing must be a scalar or (sy, sx) in mm; got {pixel_spacing!r}"
        )
    check_range("pixel_spacing", sp, low=0.0, high=None, unit="mm")
    return float(sp[0]), float(sp[1])


def cine_to_tagged(
    image,
    *,
    pixel_spacing,
    tag_spacing,
    flip_total,
    angle=0.0,
    frame_times=None,
    grid: bool = True,
    weights=(1, 3, 3, 1),
    t1=1.0,
    readout_flip=TaggingSequence.readout_flip,
    tr=4.5e-3,
    contrast_exponent=0.5,
):
    """Transform cine magnitude images into SPAMM-tagged-looking images.

    ``out = max(image) * (image / max(image)) ** contrast_exponent * Mz(x, t)``
    where ``Mz`` is the SPAMM pattern (equilibrium 1) faded to ``t``. The tag grid
    is centred on the image centre.

    Args:
        image: ``(..., ny, nx)`` non-negative magnitude images (e.g. ``(nz, ny,
            nx)`` or ``(nt, nz, ny, nx)``), any scale.
        pixel_spacing: in-plane pixel size in mm, a scalar or ``(sy, sx)``.
        tag_spacing: tag period in mm, > 0 (seed 003: 5 pixels).
        flip_total: total flip of each tagging train in radians, in [0, 2 pi]
            (seed 003: 70 degrees).
        angle: in-plane angle of the first encoding direction in radians (from
            the x (column) axis towards y (rows)).
        frame_times: seconds since tagging, broadcast against ``image.shape[:-2]``
            (e.g. ``(nt, 1)`` for ``(nt, nz, ny, nx)``); ``None``: 0 (fresh tags).
        grid: grid tags (two orthogonal trains) or line tags.
        weights: sub-pulse weights of each train.
        t1: T1 (s) with which the tags fade, > 0 (about myocardium's: 1 s at 1.5 T).
        readout_flip: RF-spoiled readout flip (rad) in [0, pi/2); 0 for free T1
            recovery only.
        tr: readout TR in seconds, > 0.
        contrast_exponent: power applied to the normalised image, > 0 (0.5: the
            seed's square root; 1: no contrast change).

    Returns:
        Array of ``image``'s shape (float32, float64 under x64); differentiable in
        the image and every physical parameter.

    Raises:
        ValueError: for negative or non-finite images, or parameters out of range.

    Example:
        >>> img = jnp.ones((2, 32, 32))
        >>> cine_to_tagged(img, pixel_spacing=1.5, tag_spacing=7.0,
        ...                flip_total=1.22).shape
        (2, 32, 32)
    """
    image = jnp.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dims (ny, nx); got {image.shape}")
    check_range("image", image, low=0.0, low_inclusive=True, high=None)
    sy, sx = _pixel_spacing(pixel_spacing)
    check_range("contrast_exponent", contrast_exponent, low=0.0, high=None)
    check_range("t1", t1, low=0.0, high=None, unit="s")
    check_finite("angle", angle)
    dtype = jnp.result_type(float, image)
    image = image.astype(dtype)
    ny, nx = image.shape[-2:]
    y = (jnp.arange(ny, dtype=dtype) - (ny - 1) / 2) * sy
    x = (jnp.arange(nx, dtype=dtype) - (nx - 1) / 2) * sx
    mz = spamm_pattern(
        x[None, :],
        y[:, None],
        spacing=tag_spacing,
        flip_total=flip_total,
        angle=angle,
        grid=grid,
        weights=weights,
    )
    if frame_times is not None:
        times = jnp.asarray(frame_times, dtype)
        try:
            np.broadcast_shapes(times.shape, image.shape[:-2])
        except ValueError:
            raise ValueError(
                f"frame_times of shape {times.shape} must broadcast against "
                f"image.shape[:-2] = {image.shape[:-2]}"
            ) from None
        mz = tag_fading(mz, times[..., None, None], t1=t1, flip=readout_flip, tr=tr)
    peak = jnp.max(image)
    safe = jnp.where(peak > 0, peak, 1.0)
    positive = image > 0
    # double where: a finite (zero) gradient at black pixels, where x**0.5 has none
    base = jnp.where(positive, image / safe, 1.0)
    contrast = jnp.where(positive, safe * base**contrast_exponent, 0.0)
    return (contrast * mz).astype(dtype)
