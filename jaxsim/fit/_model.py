"""The forward model of the fit: labels -> fractions -> bSSFP -> bias -> noise.

A simulated image is rendered on the *real* label map: the one-hot class maps are
blurred in-plane and across slices by Gaussians of learnable widths (partial
volume at class boundaries and the slice profile), each class gets the bSSFP
steady-state echo of its (PD, T1, T2) at the sequence's flip angle times a
mean-one log-normal voxel heterogeneity of learnable width (trabeculation, flow,
...), the mixture is multiplied by a receiver scale and a smooth
bias field ``exp(polynomial of degree 2 in z, y, x)``, and goes through
:func:`jaxsim.mr.acquire_cine` (Cartesian k-space, uniform coil, complex Gaussian
noise of standard deviation ``sigma`` per component, magnitude), so the noise is
Rician as in the real magnitude image. The noise is reparameterised: a fixed key
gives fixed standard normals that ``sigma`` scales, so the image is a smooth
function of every parameter.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxsim.mr import (
    Anatomy,
    BSSFPSequence,
    MRAcquisition,
    TissueProperties,
    acquire_cine,
)

from ._data import FitData

__all__ = ["FitParameters", "N_BIAS", "bias_field", "class_fractions", "render"]

#: Number of bias-field polynomial coefficients (degree 2 in z, y, x, no constant).
N_BIAS = 9


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitParameters:
    """Parameters of the fitted simulation (physical values; all leaves).

    Attributes:
        pd: ``(n_classes + 1,)`` proton density per class, the last the background.
        t1: ``(n_classes + 1,)`` longitudinal relaxation times, s.
        t2: ``(n_classes + 1,)`` transverse relaxation times, s.
        flip: flip angle, rad.
        scale: receiver scale (real intensity units per unit magnetization).
        sigma: noise standard deviation per real/imaginary component, real
            intensity units.
        pv_width: standard deviation of the in-plane partial-volume blur, mm.
        pv_width_z: standard deviation of the through-plane blur (slice profile),
            mm.
        texture: ``(n_classes,)`` standard deviation of the log of a
            multiplicative voxel-wise heterogeneity of each fitted class
            (trabeculation, flow, anything that widens a class beyond noise).
        bias: ``(9,)`` coefficients of ``log(bias)`` on the terms
            ``z, y, x, z^2, y^2, x^2, zy, zx, yx`` of coordinates normalised to
            [-1, 1] over the crop.
    """

    pd: jax.Array
    t1: jax.Array
    t2: jax.Array
    flip: jax.Array
    scale: jax.Array
    sigma: jax.Array
    pv_width: jax.Array
    pv_width_z: jax.Array
    texture: jax.Array
    bias: jax.Array

    def tissue(self) -> TissueProperties:
        """The per-class relaxation properties as :class:`TissueProperties`."""
        return TissueProperties(pd=self.pd, t1=self.t1, t2=self.t2)


def bias_field(coeffs, coords):
    """``exp(sum_k c_k b_k)`` over the degree-2 monomials of normalised coordinates.

    Args:
        coeffs: ``(9,)`` coefficients (see :class:`FitParameters`).
        coords: ``(3, nz, ny, nx)`` normalised coordinates.

    Returns:
        ``(nz, ny, nx)`` positive multiplicative field.
    """
    z, y, x = coords
    basis = jnp.stack([z, y, x, z * z, y * y, x * x, z * y, z * x, y * x])
    return jnp.exp(jnp.tensordot(coeffs, basis, axes=1))


def _circular_gaussian(n, sigma_vox, dtype):
    """DFT of a sampled, wrapped Gaussian of ``n`` points summing to 1 (real)."""
    d = jnp.minimum(jnp.arange(n), n - jnp.arange(n)).astype(dtype)
    w = jnp.exp(-0.5 * (d / sigma_vox) ** 2)
    return jnp.real(jnp.fft.fft(w / jnp.sum(w)))  # symmetric kernel: real DFT


def _blur_z(fractions, width, sz):
    """Gaussian blur across slices (dense: few slices), rows normalised to 1."""
    nz = fractions.shape[-3]
    k = jnp.arange(nz, dtype=fractions.dtype)
    w = jnp.exp(-0.5 * ((k[:, None] - k[None, :]) * sz / width) ** 2)
    w = w / jnp.sum(w, axis=1, keepdims=True)
    return jnp.einsum("ij,cjyx->ciyx", w, fractions)


def class_fractions(onehot, pv_width, spacing, pv_width_z=None):
    """Partial-volume fractions: one-hot class maps blurred in-plane.

    Args:
        onehot: ``(n, nz, ny, nx)`` one-hot maps (sum 1 per voxel), the last the
            background; the blur is circular in-plane, so classes should keep a
            few widths away from the edge.
        pv_width: Gaussian standard deviation in mm, > 0 (traced).
        spacing: ``(sz, sy, sx)`` mm (static).
        pv_width_z: through-plane Gaussian standard deviation in mm, or ``None``
            for none (traced).

    Returns:
        ``(n, nz, ny, nx)`` fractions, still summing to 1 per voxel.
    """
    # Circular convolution by FFT (the one-hot spectra are constants, so a step
    # costs one inverse FFT per class); the crop's margin keeps wrap-around away
    # from the classes. The background channel is the remainder, so fractions
    # sum to 1 exactly.
    ny, nx = onehot.shape[-2:]
    hy = _circular_gaussian(ny, pv_width / spacing[1], onehot.dtype)
    hx = _circular_gaussian(nx, pv_width / spacing[2], onehot.dtype)
    spectra = jnp.fft.fft2(onehot[:-1])
    classes = jnp.real(jnp.fft.ifft2(spectra * (hy[:, None] * hx[None, :])))
    if pv_width_z is not None:
        classes = _blur_z(classes, pv_width_z, spacing[0])
    return jnp.concatenate([classes, 1.0 - jnp.sum(classes, 0, keepdims=True)])


def reference_mask(data: FitData):
    """The noise reference region: LV myocardium if fitted, else every class."""
    if "lv_myocardium" in data.classes:
        return data.onehot[data.classes.index("lv_myocardium")] > 0.5
    return data.onehot[-1] < 0.5


def render(params: FitParameters, data: FitData, sequence: BSSFPSequence, *, key):
    """Simulated magnitude image on the real label map (differentiable).

    Args:
        params: :class:`FitParameters` with ``n_classes + 1`` tissue entries.
        data: the prepared real data (label maps, coordinates, spacing).
        sequence: the bSSFP readout; its ``flip`` is replaced by ``params.flip``.
        key: PRNG key of the (reparameterised) noise; keep it fixed while fitting.

    Returns:
        ``(nz, ny, nx)`` magnitude image in real intensity units.
    """
    fractions = class_fractions(
        data.onehot, params.pv_width, data.spacing, params.pv_width_z
    )
    k_noise, k_texture = jax.random.split(key)
    # Mean-one log-normal heterogeneity per class, from fixed standard normals.
    z = jax.random.normal(k_texture, data.onehot.shape[1:], fractions.dtype)
    h = params.texture[:, None, None, None]
    texture = jnp.exp(h * z - 0.5 * h * h)
    texture = jnp.concatenate([texture, jnp.ones_like(texture[:1])])
    gain = params.scale * bias_field(params.bias, data.coords)
    # Bias and texture are linear in the signal, so they can ride on fractions.
    weighted = fractions * texture * gain
    seq = dataclasses.replace(sequence, flip=params.flip)
    coil = jnp.ones((1, *data.image.shape), jnp.result_type(1j, data.image.dtype))
    anatomy = Anatomy(
        fractions=weighted[None],
        labels=jnp.zeros((1, *data.image.shape), jnp.uint8),
        myo_mask=reference_mask(data),
        coil_maps=coil,
    )
    acquisition = MRAcquisition(noise_std=params.sigma, oversample=1)
    image, _, _ = acquire_cine(k_noise, anatomy, params.tissue(), seq, acquisition)
    return image[0]
