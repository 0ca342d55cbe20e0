"""Polychromatic Beer-Lambert physics on basis-material line integrals.

Attenuation is linear in the material maps, so each independent attenuation curve
of the basis (materials and dissolved iodine) is projected once; the energy
dependence is then applied on the detector:
``I/I0 = sum_E w(E) exp(-sum_b mu_b(E) L_b)``. The curves span a space of low rank
(four for the default basis over 20-150 keV), which is what is projected.

Energies are static (NumPy); spectrum weights and material mixtures may be traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._materials import attenuation
from ._tissue_materials import IODINE

# Rank kept from the material attenuation curves (relative singular-value cut-off).
_BASIS_TOLERANCE = 1e-6
# Water thicknesses of the beam-hardening correction table, mm.
_WATER_MM = np.linspace(0.0, 1000.0, 4001)


def basis_attenuation(names: tuple[str, ...], energies) -> np.ndarray:
    """``(n_basis, n_energies)`` attenuation (1/mm) per unit basis-map value:
    materials at nominal density, iodine per g/cm^3 (float64, static)."""
    rows = [
        attenuation(n, energies, density_g_cm3=1.0 if n == IODINE else None)
        for n in names
    ]
    return np.stack(rows)


def reduced_basis(names: tuple[str, ...], energies) -> tuple[np.ndarray, np.ndarray]:
    """Exact-to-rounding low-rank factor ``mu = coeffs @ curves`` of the basis.

    Args:
        names: basis names (materials, then ``"iodine"``).
        energies: static energy grid, keV.

    Returns:
        float64 ``coeffs`` ``(n_basis, rank)`` and ``curves`` ``(rank, n_energies)``
        (1/mm per unit map), ``rank`` the number of singular values above
        ``1e-6`` of the largest.
    """
    mu = basis_attenuation(names, np.asarray(energies, np.float64))
    u, s, vt = np.linalg.svd(mu, full_matrices=False)
    rank = int(np.sum(s > _BASIS_TOLERANCE * s[0]))
    return u[:, :rank] * s[:rank], vt[:rank]


def transmission(
    line_integrals: jax.Array, mu: jax.Array, weights: jax.Array
) -> jax.Array:
    """Spectrum-weighted transmitted fraction ``sum_E w_E exp(-sum_b mu_bE L_b)``.

    Args:
        line_integrals: ``(n_basis, ...)`` basis line integrals (mm x map units).
        mu: ``(n_basis, n_energies)`` attenuation per map unit, 1/mm.
        weights: ``(n_energies,)`` spectrum weights summing to 1.

    Returns:
        ``(...)`` transmission in [0, 1]. Energies are looped (``lax.scan``) so memory
        holds one projection set, not one per energy.
    """
    mu = jnp.asarray(mu, line_integrals.dtype)
    weights = jnp.asarray(weights, line_integrals.dtype)

    def step(total, item):
        mu_e, w_e = item
        exponent = jnp.tensordot(mu_e, line_integrals, axes=1)
        return total + w_e * jnp.exp(-exponent), None

    init = jnp.zeros(line_integrals.shape[1:], line_integrals.dtype)
    total, _ = jax.lax.scan(step, init, (mu.T, weights))
    return total


def _hardened(weights, energies, water_mm):
    """Spectrum after ``water_mm`` of water, renormalised (traced weights)."""
    if water_mm == 0:
        return weights
    filt = np.exp(-attenuation("water", energies) * water_mm)
    w = weights * jnp.asarray(filt, weights.dtype)
    return w / jnp.sum(w)


def water_reference(weights, energies) -> tuple[jax.Array, jax.Array]:
    """Effective attenuation (1/mm) of water and air for a spectrum (mean over E).

    Args:
        weights: ``(n_energies,)`` spectrum weights summing to 1 (may be traced).
        energies: static energy grid, keV.

    Returns:
        ``(mu_water, mu_air)`` scalars of the weights' dtype.
    """
    weights = jnp.asarray(weights)
    e = np.asarray(energies, np.float64)
    mu = jnp.asarray(np.stack([attenuation("water", e), attenuation("air", e)]))
    mu_water, mu_air = mu.astype(weights.dtype) @ weights
    return mu_water, mu_air


def water_correction(projections, weights, energies):
    """First-order beam-hardening correction: polychromatic water -> monochromatic.

    A measured line integral ``p`` is mapped to ``mu_ref * L`` where ``L`` is the
    water thickness that would give ``p`` with this spectrum and ``mu_ref`` the
    effective water attenuation (:func:`water_reference`). Identity for a
    monochromatic beam. Differentiable in ``projections`` and ``weights``.

    Args:
        projections: measured line integrals, any shape, float.
        weights: ``(n_energies,)`` spectrum weights summing to 1 (may be traced).
        energies: static energy grid, keV.

    Returns:
        Corrected line integrals, shape and dtype of ``projections``.
    """
    dtype = projections.dtype
    weights = jnp.asarray(weights, dtype)
    mu_w = np.asarray(attenuation("water", np.asarray(energies, np.float64)))
    thickness = jnp.asarray(_WATER_MM, dtype)
    table = jnp.exp(-jnp.asarray(np.outer(_WATER_MM, mu_w), dtype)) @ weights
    poly = -jnp.log(table)
    mu_ref = jnp.asarray(mu_w, dtype) @ weights
    return mu_ref * jnp.interp(projections, poly, thickness)
