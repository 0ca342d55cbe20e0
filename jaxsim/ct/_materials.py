"""X-ray attenuation of body materials and tube spectra, from shipped tables.

The tables in ``jaxsim/ct/data`` were generated offline by ``tools/make_ct_tables.py``
(xraydb elemental cross-sections mixed with ICRU-44 compositions; SpekPy spectra); the
JSON files carry their provenance. Nothing here needs those packages at run time.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import jax.numpy as jnp
import numpy as np

IODINE_DENSITY_NOTE = "iodine concentration is in mg/mL (= g/L) of elemental iodine"


@functools.cache
def _table(name: str) -> dict:
    text = resources.files("jaxsim.ct").joinpath("data", name).read_text()
    return json.loads(text)


def energies() -> np.ndarray:
    """Energy grid of the tables, keV, float64 ``(131,)`` (20..150 keV, 1 keV)."""
    return np.asarray(_table("materials.json")["energies_kev"], np.float64)


def material_names() -> tuple[str, ...]:
    """Names of the tabulated materials (``air``, ``water``, ``lung``, ...)."""
    return tuple(_table("materials.json")["materials"])


def spectrum_names() -> tuple[str, ...]:
    """Names of the shipped tube spectra (``80kVp`` ... ``140kVp``)."""
    return tuple(_table("spectra.json")["spectra"])


def _material(name: str) -> dict:
    table = _table("materials.json")["materials"]
    if name not in table:
        raise ValueError(f"material must be one of {tuple(table)}; got {name!r}")
    return table[name]


def density(name: str) -> float:
    """Nominal density of a material, g/cm^3."""
    return float(_material(name)["density_g_cm3"])


def attenuation(name: str, energy=None, *, density_g_cm3: float | None = None):
    """Linear attenuation coefficient of a material, 1/mm.

    Args:
        name: a material from :func:`material_names`.
        energy: photon energies in keV (any shape, within 20..150); ``None`` for the
            table grid. Between grid points log-log interpolation is used.
        density_g_cm3: override the nominal density.

    Returns:
        float64 NumPy array of the shape of ``energy`` (or ``(131,)``), 1/mm.

    Raises:
        ValueError: unknown material or energy outside 20..150 keV.
    """
    entry = _material(name)
    rho = entry["density_g_cm3"] if density_g_cm3 is None else density_g_cm3
    mass = np.asarray(entry["mu_over_rho_cm2_g"], np.float64)
    if energy is None:
        return mass * rho / 10.0
    e = np.asarray(energy, np.float64)
    grid = energies()
    if np.any(e < grid[0]) or np.any(e > grid[-1]):
        raise ValueError(f"energy must lie in [{grid[0]:g}, {grid[-1]:g}] keV; got {e}")
    logmu = np.interp(np.log(e), np.log(grid), np.log(mass))
    return np.exp(logmu) * rho / 10.0


def iodine_attenuation(concentration_mg_ml, energy=None):
    """Attenuation added by dissolved iodine, 1/mm, at ``concentration`` mg/mL."""
    mu_per_g_cm3 = attenuation("iodine", energy, density_g_cm3=1.0)
    return np.asarray(concentration_mg_ml, np.float64) * 1e-3 * mu_per_g_cm3


def blood_with_iodine(concentration_mg_ml: float, energy=None) -> np.ndarray:
    """Attenuation (1/mm) of whole blood holding iodine at ``concentration`` mg/mL.

    The mixture rule: blood's own attenuation plus the iodine mass times iodine's
    mass attenuation (the small volume the contrast agent displaces is neglected).
    """
    if concentration_mg_ml < 0:
        raise ValueError(f"concentration_mg_ml must be >= 0; got {concentration_mg_ml}")
    extra = iodine_attenuation(concentration_mg_ml, energy)
    return attenuation("blood", energy) + extra


def spectrum(name: str = "120kVp", *, dtype=jnp.float32):
    """A shipped tube spectrum: ``(energies_keV, weights)``, each ``(131,)``.

    Weights are photon fluence per 1 keV bin normalised to sum 1 (tungsten anode,
    12 deg, 6 mm Al; SpekPy). Returns jax arrays of ``dtype``.
    """
    spectra = _table("spectra.json")["spectra"]
    if name not in spectra:
        raise ValueError(f"spectrum must be one of {tuple(spectra)}; got {name!r}")
    return jnp.asarray(energies(), dtype), jnp.asarray(spectra[name], dtype)


def monochromatic(energy_kev: float, *, dtype=jnp.float32):
    """A one-bin "spectrum" at ``energy_kev`` (20..150 keV), as :func:`spectrum`."""
    grid = energies()
    if not grid[0] <= energy_kev <= grid[-1]:
        raise ValueError(
            f"energy_kev must lie in [{grid[0]:g}, {grid[-1]:g}] keV; got {energy_kev}"
        )
    return jnp.asarray([energy_kev], dtype), jnp.ones((1,), dtype)
