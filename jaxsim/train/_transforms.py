"""Image transforms on device: resampling, normalisation and augmentation.

Everything works on batches of images ``(B, *spatial)`` with integer label maps of
the same shape, ``spatial = (ny, nx)`` for slices or ``(nz, ny, nx)`` for stacks
(3D stacks are transformed in-plane, the same way for every slice: cine stacks are
thick-sliced). Geometric transforms map output pixel centres to input coordinates
by an in-plane affine (plus an optional smooth elastic displacement) and
interpolate linearly (images) or by nearest neighbour (labels); outside the input,
images are 0 and labels background.

The same :func:`resample_in_plane` brings real images to the network's pixel size
at training and at test time, and :func:`normalize` scales intensities the same
way, so preprocessing never differs between the two.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxsim.population import kth_largest

__all__ = [
    "Augmentation",
    "augment",
    "normalize",
    "resample_in_plane",
    "warp_in_plane",
]


def normalize(image, *, percentile: float = 99.5):
    """Divide each image by its ``percentile`` of intensities (computed over the
    last two (2D) or three axes), so tissue contrast, not scanner scale, is seen.

    Args:
        image: ``(B, *spatial)`` non-negative magnitudes.
        percentile: in (50, 100].

    Returns:
        Same shape, float; an all-zero image stays zero.
    """
    image = jnp.asarray(image)
    flat = image.reshape(image.shape[0], -1)
    k = max(1, math.ceil((1.0 - percentile / 100.0) * flat.shape[1]))
    scale = kth_largest(flat, k)
    scale = jnp.where(scale > 0, scale, 1.0)
    return image / scale.reshape((-1,) + (1,) * (image.ndim - 1))


def _sample(volume, coords, order):
    """``volume (..., ny, nx)`` sampled at in-plane ``coords (2, H, W)`` (y, x)."""

    def one(plane):
        return jax.scipy.ndimage.map_coordinates(
            plane, list(coords), order=order, mode="constant", cval=0
        )

    flat = volume.reshape(-1, *volume.shape[-2:])
    out = jax.vmap(one)(flat)
    return out.reshape(*volume.shape[:-2], *coords.shape[1:])


def warp_in_plane(image, labels, matrix, offset, out_shape, displacement=None):
    """Resample ``image``/``labels`` ``(..., ny, nx)`` onto an output grid.

    Output pixel ``p = (row, col)`` reads input coordinates
    ``matrix @ (p - c_out) + c_in + offset (+ displacement[:, p])`` (pixels), with
    ``c`` the grid centres.

    Args:
        image: ``(..., ny, nx)`` float.
        labels: ``(..., ny, nx)`` int, or ``None``.
        matrix: ``(2, 2)`` in-plane matrix (input pixels per output pixel).
        offset: ``(2,)`` shift in input pixels.
        out_shape: ``(H, W)`` static.
        displacement: optional ``(2, H, W)`` extra shift in input pixels.

    Returns:
        ``(image (..., H, W), labels (..., H, W) or None)``.
    """
    h, w = out_shape
    ny, nx = image.shape[-2:]
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=image.dtype) - (h - 1) / 2,
        jnp.arange(w, dtype=image.dtype) - (w - 1) / 2,
        indexing="ij",
    )
    grid = jnp.stack([rows, cols])  # (2, H, W)
    centre = jnp.asarray([(ny - 1) / 2, (nx - 1) / 2], image.dtype)
    coords = jnp.einsum("ij,jhw->ihw", matrix.astype(image.dtype), grid)
    coords = coords + (centre + offset.astype(image.dtype))[:, None, None]
    if displacement is not None:
        coords = coords + displacement
    out_image = _sample(image, coords, order=1)
    out_labels = None
    if labels is not None:
        out_labels = _sample(labels.astype(jnp.int32), coords, order=0)
        out_labels = out_labels.astype(labels.dtype)
    return out_image, out_labels


def resample_in_plane(image, labels, spacing, *, target_spacing, out_shape):
    """Bring a volume to the network's in-plane pixel size, centred.

    Args:
        image: ``(..., ny, nx)`` float (a slice or a stack).
        labels: ``(..., ny, nx)`` int or ``None``.
        spacing: ``(sy, sx)`` mm of the input pixels.
        target_spacing: output pixel size, mm (square pixels).
        out_shape: ``(H, W)`` output size; the field of view is cropped or padded
            (with zeros / background) around the centre.

    Returns:
        ``(image (..., H, W), labels (..., H, W) or None)``.
    """
    sy, sx = (float(s) for s in spacing)
    t = float(target_spacing)
    matrix = jnp.asarray([[t / sy, 0.0], [0.0, t / sx]])
    image = jnp.asarray(image, jnp.float32)
    labels = None if labels is None else jnp.asarray(labels)
    return warp_in_plane(image, labels, matrix, jnp.zeros(2), tuple(out_shape))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random augmentation of training batches; ranges are ``(low, high)`` leaves
    drawn uniformly per image (probabilities in [0, 1]).

    Attributes:
        rotation: in-plane rotation, rad.
        scale: isotropic zoom factor (>1 enlarges the anatomy).
        flip: probability of mirroring each in-plane axis.
        elastic: peak of a smooth random displacement, output pixels.
        gamma: exponent applied to the normalised intensities.
        contrast: multiplicative contrast factor around the mean.
        noise: standard deviation of additive Gaussian noise (normalised units).
        bias: strength of a smooth multiplicative bias (std of its log).
        blur: Gaussian blur standard deviation, pixels.
        low_resolution: pixel-size factor of a simulated lower resolution (1:
            off), applied as the equivalent blur.
        probability: probability of applying each intensity transform.
    """

    rotation: tuple = (-math.pi, math.pi)
    scale: tuple = (0.8, 1.25)
    flip: float = 0.5
    elastic: tuple = (0.0, 4.0)
    gamma: tuple = (0.7, 1.5)
    contrast: tuple = (0.75, 1.25)
    noise: tuple = (0.0, 0.05)
    bias: tuple = (0.0, 0.3)
    blur: tuple = (0.0, 1.0)
    low_resolution: tuple = (1.0, 2.0)
    probability: float = 0.3


def _uniform(key, pair):
    return jax.random.uniform(key, (), minval=pair[0], maxval=pair[1])


def _smooth_noise(key, shape, cells: int = 4):
    """Smooth random field ``shape`` (H, W) from a uniform [-1, 1] coarse grid
    (cubic interpolation overshoots: values reach about +-1.5)."""
    h, w = shape
    coarse = jax.random.uniform(key, (cells, cells), minval=-1.0, maxval=1.0)
    return jax.image.resize(coarse, (h, w), method="cubic")


def _gaussian_blur(image, sigma):
    """Separable Gaussian blur of the last two axes (sigma in pixels, traced)."""
    radius = 4
    x = jnp.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = jnp.exp(-0.5 * (x / jnp.maximum(sigma, 1e-3)) ** 2)
    kernel = jnp.where(sigma > 1e-3, kernel / jnp.sum(kernel), (x == 0).astype(x.dtype))

    def conv(line):
        return jnp.convolve(line, kernel, mode="same")

    flat = image.reshape(-1, *image.shape[-2:])
    out = jax.vmap(jax.vmap(conv))(flat)
    out = jax.vmap(jax.vmap(conv, in_axes=1, out_axes=1))(out)
    return out.reshape(image.shape)


def _augment_one(key, image, labels, aug: Augmentation):
    keys = jax.random.split(key, 16)
    h, w = image.shape[-2:]
    angle = _uniform(keys[0], aug.rotation)
    zoom = _uniform(keys[1], aug.scale)
    flips = jnp.where(jax.random.bernoulli(keys[2], aug.flip, (2,)), -1.0, 1.0)
    c, s = jnp.cos(angle), jnp.sin(angle)
    matrix = jnp.asarray([[c, -s], [s, c]]) * flips[None, :] / zoom
    amplitude = _uniform(keys[3], aug.elastic)
    field = jnp.stack([_smooth_noise(keys[4], (h, w)), _smooth_noise(keys[5], (h, w))])
    image, labels = warp_in_plane(
        image, labels, matrix, jnp.zeros(2), (h, w), amplitude * field
    )
    on = jax.random.bernoulli(keys[6], aug.probability, (6,))
    # Simulated low resolution: a pixel ``lo`` times larger loses detail as a blur
    # of about half its width (sampling a band-limited image).
    lo = _uniform(keys[7], aug.low_resolution)
    image = jnp.where(on[0], _gaussian_blur(image, 0.5 * (lo - 1.0)), image)
    image = jnp.where(on[1], _gaussian_blur(image, _uniform(keys[8], aug.blur)), image)
    bias = jnp.exp(_uniform(keys[9], aug.bias) * _smooth_noise(keys[10], (h, w), 3))
    image = jnp.where(on[2], image * bias, image)
    mean = jnp.mean(image)
    image = jnp.where(
        on[3], (image - mean) * _uniform(keys[11], aug.contrast) + mean, image
    )
    gamma = _uniform(keys[12], aug.gamma)
    image = jnp.where(on[4], jnp.maximum(image, 0.0) ** gamma, image)
    noise = _uniform(keys[13], aug.noise) * jax.random.normal(keys[14], image.shape)
    image = jnp.where(on[5], image + noise, image)
    return image, labels


def augment(key, images, labels, augmentation: Augmentation | None = None):
    """Augment a batch on device (jit/vmap-safe; one draw per image).

    Args:
        key: PRNG key.
        images: ``(B, *spatial)`` float, normalised.
        labels: ``(B, *spatial)`` int.
        augmentation: the ranges (default :class:`Augmentation`).

    Returns:
        ``(images, labels)`` of the same shapes and dtypes.
    """
    aug = Augmentation() if augmentation is None else augmentation
    keys = jax.random.split(key, images.shape[0])
    out, labels = jax.vmap(lambda k, i, l_: _augment_one(k, i, l_, aug))(
        keys, images, labels
    )
    return out.astype(images.dtype), labels.astype(labels.dtype)
