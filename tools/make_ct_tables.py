"""Generate jaxsim/ct/data/{materials,spectra}.json offline (not a runtime dependency).

Run in a separate environment that has ``xraydb`` and ``spekpy``::

    python -m venv /tmp/ctpeer && /tmp/ctpeer/bin/pip install xraydb spekpy
    /tmp/ctpeer/bin/python tools/make_ct_tables.py

Mass attenuation coefficients (total, with coherent scattering) come from xraydb's
elemental tables (Elam, Ravel & Sieber 2002, built on NIST XCOM/FFAST data), mixed by
mass fraction with the tissue compositions of ICRU Report 44 as tabulated by NIST
(physics.nist.gov/PhysRefData/XrayMassCoef, Table 2). Tube spectra come from SpekPy
(Poludniowski et al. 2021) with its default physics model.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import spekpy
import xraydb

OUT = Path(__file__).resolve().parents[1] / "jaxsim" / "ct" / "data"
ENERGIES_KEV = np.arange(20, 151)  # 1 keV bins, 20..150 keV

# Mass fractions (ICRU-44 via NIST) and nominal densities (g/cm^3).
MATERIALS = {
    "air": (
        0.00120479,
        {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827},
        "Air, dry (near sea level), NIST",
    ),
    "water": (1.0, {"H": 0.111894, "O": 0.888106}, "Water, liquid, NIST"),
    "lung": (
        0.26,
        {
            "H": 0.103,
            "C": 0.105,
            "N": 0.031,
            "O": 0.749,
            "Na": 0.002,
            "P": 0.002,
            "S": 0.003,
            "Cl": 0.003,
            "K": 0.002,
        },
        "Lung tissue, ICRU-44 composition; density 0.26 g/cm^3 for inflated lung "
        "(ICRU-44 lists 1.05 for the tissue itself)",
    ),
    "adipose": (
        0.95,
        {
            "H": 0.114,
            "C": 0.598,
            "N": 0.007,
            "O": 0.278,
            "Na": 0.001,
            "S": 0.001,
            "Cl": 0.001,
        },
        "Adipose tissue, ICRU-44",
    ),
    "soft_tissue": (
        1.06,
        {
            "H": 0.102,
            "C": 0.143,
            "N": 0.034,
            "O": 0.708,
            "Na": 0.002,
            "P": 0.003,
            "S": 0.003,
            "Cl": 0.002,
            "K": 0.003,
        },
        "Tissue, soft, ICRU-44",
    ),
    "muscle": (
        1.05,
        {
            "H": 0.102,
            "C": 0.143,
            "N": 0.034,
            "O": 0.710,
            "Na": 0.001,
            "P": 0.002,
            "S": 0.003,
            "Cl": 0.001,
            "K": 0.004,
        },
        "Muscle, skeletal, ICRU-44",
    ),
    "myocardium": (
        1.05,
        {
            "H": 0.104,
            "C": 0.139,
            "N": 0.029,
            "O": 0.718,
            "Na": 0.001,
            "P": 0.002,
            "S": 0.002,
            "Cl": 0.002,
            "K": 0.003,
        },
        "Heart, healthy, ICRU-44",
    ),
    "blood": (
        1.06,
        {
            "H": 0.102,
            "C": 0.110,
            "N": 0.033,
            "O": 0.745,
            "Na": 0.001,
            "P": 0.001,
            "S": 0.002,
            "Cl": 0.003,
            "K": 0.002,
            "Fe": 0.001,
        },
        "Blood, whole, ICRU-44",
    ),
    "liver": (
        1.06,
        {
            "H": 0.102,
            "C": 0.139,
            "N": 0.030,
            "O": 0.716,
            "Na": 0.002,
            "P": 0.003,
            "S": 0.003,
            "Cl": 0.002,
            "K": 0.003,
        },
        "Liver, healthy, ICRU-44",
    ),
    "bone": (
        1.92,
        {
            "H": 0.034,
            "C": 0.155,
            "N": 0.042,
            "O": 0.435,
            "Na": 0.001,
            "Mg": 0.002,
            "P": 0.103,
            "S": 0.003,
            "Ca": 0.225,
        },
        "Bone, cortical, ICRU-44",
    ),
    "iodine": (4.93, {"I": 1.0}, "Iodine (element), for contrast agent"),
}

SPECTRA = {"80kVp": 80.0, "100kVp": 100.0, "120kVp": 120.0, "140kVp": 140.0}
ANODE_ANGLE_DEG = 12.0
FILTER_AL_MM = 6.0


def mass_attenuation(fractions: dict[str, float]) -> np.ndarray:
    total = sum(fractions.values())
    assert abs(total - 1.0) < 1e-6, total
    ev = ENERGIES_KEV * 1000.0
    return sum(w * xraydb.mu_elam(el, ev, kind="total") for el, w in fractions.items())


def spectrum(kvp: float) -> np.ndarray:
    """Photon fluence in 1 keV bins centred on ENERGIES_KEV, normalised to sum 1."""
    spek = spekpy.Spek(kvp=kvp, th=ANODE_ANGLE_DEG, dk=0.5)
    spek.filter("Al", FILTER_AL_MM)
    k, phi = spek.get_spectrum()
    binned = np.array([phi[np.abs(k - e) < 0.5].sum() for e in ENERGIES_KEV])
    return binned / binned.sum()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    materials = {
        name: {
            "density_g_cm3": density,
            "mass_fractions": comp,
            "source": src,
            "mu_over_rho_cm2_g": np.round(mass_attenuation(comp), 8).tolist(),
        }
        for name, (density, comp, src) in MATERIALS.items()
    }
    provenance = {
        "generator": "tools/make_ct_tables.py",
        "xraydb": xraydb.__version__,
        "spekpy": getattr(spekpy, "__version__", "2.5.4"),
        "python": platform.python_version(),
    }
    (OUT / "materials.json").write_text(
        json.dumps(
            {
                "description": "Mass attenuation coefficients (total, with coherent "
                "scattering) mu/rho in cm^2/g; ICRU-44 compositions via NIST; "
                "elemental data from xraydb (Elam et al. 2002).",
                "provenance": provenance,
                "energies_kev": ENERGIES_KEV.tolist(),
                "materials": materials,
            },
            indent=1,
        )
    )
    spectra = {
        name: np.round(spectrum(kvp), 10).tolist() for name, kvp in SPECTRA.items()
    }
    (OUT / "spectra.json").write_text(
        json.dumps(
            {
                "description": "X-ray tube photon fluence per 1 keV bin, normalised to "
                f"sum 1; tungsten anode {ANODE_ANGLE_DEG:g} deg, "
                f"{FILTER_AL_MM:g} mm Al "
                "total filtration; SpekPy default physics model.",
                "provenance": provenance,
                "energies_kev": ENERGIES_KEV.tolist(),
                "spectra": spectra,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
