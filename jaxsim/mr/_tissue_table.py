"""Literature MR properties (T1, T2, proton density) of the phantom's tissues.

Each entry gives mean and standard deviation at 1.5 T and 3 T. Times in seconds,
proton density as a fraction of pure water. Where a property has no direct in-vivo
source the entry says which assumption stands in for it.

Sources:
    [DAB14] Dabir D et al. Reference values for healthy human myocardium using a T1
        mapping methodology (MOLLI). J Cardiovasc Magn Reson 2014;16:69.
    [WAS13] Wassmuth R et al. Variability and homogeneity of CMR myocardial
        T2-mapping in volunteers. J Cardiovasc Magn Reson 2013;15:27 (1.5 T).
    [VKB13] von Knobelsdorff-Brenkenhoff F et al. Myocardial T1 and T2 mapping at
        3 T: reference values, influencing factors and implications. J Cardiovasc
        Magn Reson 2013;15:53.
    [STA05] Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in
        tissue at 3T. Magn Reson Med 2005;54:507-512 (1.5 T and 3 T; blood).
    [DEB04] de Bazelaire CMJ et al. MR imaging relaxation times of abdominal and
        pelvic tissues measured in vivo at 3.0 T: preliminary results. Radiology
        2004;230:652-659 (1.5 T and 3 T).
    [STD05] Stadler A et al. T1 mapping of the entire lung parenchyma. J Magn Reson
        Imaging 2005;21:759-764 (1.5 T).
    [MRX14] MRXCAT defaults: Wissmann L et al. MRXCAT: realistic numerical
        phantoms for cardiovascular magnetic resonance. J Cardiovasc Magn Reson
        2014;16:63 (cine parameter file: PD muscle 0.80, fat 0.70, blood 0.95,
        liver 0.90, bone 0.12; T1/T2 muscle 900/50 ms).
"""

from __future__ import annotations

from typing import NamedTuple


class Property(NamedTuple):
    """Mean and standard deviation of one property."""

    mean: float
    std: float


class TissueEntry(NamedTuple):
    """Relaxation and density of one tissue at one field strength, with sources."""

    t1: Property  # seconds
    t2: Property  # seconds
    pd: Property  # fraction of water
    source: str


def _ms(mean: float, std: float) -> Property:
    return Property(mean * 1e-3, std * 1e-3)


# Proton density spread: no population data exist; 5 percent of the mean is
# assumed for every tissue (seed 000 varied PD per subject by a similar amount).
def _pd(mean: float) -> Property:
    return Property(mean, 0.05 * mean)


_BLOOD_15 = TissueEntry(_ms(1441, 120), _ms(290, 30), _pd(0.95), "STA05; PD MRX14")
_BLOOD_30 = TissueEntry(_ms(1932, 85), _ms(275, 50), _pd(0.95), "STA05; PD MRX14")
_MYO_15 = TissueEntry(_ms(950, 21), _ms(52, 3.4), _pd(0.80), "DAB14, WAS13; PD MRX14")
_MYO_30 = TissueEntry(_ms(1052, 23), _ms(45, 3), _pd(0.80), "DAB14, VKB13; PD MRX14")

TABLE: dict[float, dict[str, TissueEntry]] = {
    1.5: {
        # Air: no signal; relaxation values are placeholders that keep kernels valid.
        "air": TissueEntry(_ms(1000, 0), _ms(50, 0), Property(0.0, 0.0), "no signal"),
        "lv_blood": _BLOOD_15,
        "rv_blood": _BLOOD_15,
        "lv_myocardium": _MYO_15,
        "rv_myocardium": _MYO_15,
        "la_blood": _BLOOD_15,
        "ra_blood": _BLOOD_15,
        "aorta": _BLOOD_15,
        "pulmonary_artery": _BLOOD_15,
        # Lung: T1 from STD05; T2 and PD are assumptions (parenchyma is ~20 percent
        # tissue by volume; T2 of the tissue fraction taken as that of muscle).
        "lung": TissueEntry(
            _ms(1199, 117), _ms(40, 8), _pd(0.20), "STD05; T2, PD assumed"
        ),
        "liver": TissueEntry(_ms(586, 39), _ms(46, 6), _pd(0.90), "DEB04; PD MRX14"),
        # Stomach wall and contents: no source; taken as MRXCAT's muscle defaults.
        "stomach": TissueEntry(_ms(900, 90), _ms(50, 5), _pd(0.80), "MRX14 muscle"),
        "spleen": TissueEntry(
            _ms(1057, 42), _ms(79, 15), _pd(0.90), "DEB04; PD as liver"
        ),
        # Bone (spine, ribs): marrow relaxation from DEB04, density from MRXCAT's bone.
        "bone": TissueEntry(
            _ms(549, 52), _ms(49, 8), _pd(0.12), "DEB04 marrow; PD MRX14"
        ),
        "fat": TissueEntry(_ms(343, 37), _ms(58, 4), _pd(0.70), "DEB04; PD MRX14"),
        "muscle": TissueEntry(_ms(856, 61), _ms(27, 8), _pd(0.80), "DEB04; PD MRX14"),
        "body": TissueEntry(_ms(900, 90), _ms(50, 5), _pd(0.80), "MRX14 muscle"),
    },
    3.0: {
        "air": TissueEntry(_ms(1000, 0), _ms(50, 0), Property(0.0, 0.0), "no signal"),
        "lv_blood": _BLOOD_30,
        "rv_blood": _BLOOD_30,
        "lv_myocardium": _MYO_30,
        "rv_myocardium": _MYO_30,
        "la_blood": _BLOOD_30,
        "ra_blood": _BLOOD_30,
        "aorta": _BLOOD_30,
        "pulmonary_artery": _BLOOD_30,
        # Lung at 3 T: no source at hand; the 1.5 T values with a 10 percent longer T1
        # and shorter T2 are assumed (the trend of soft tissue between field strengths).
        "lung": TissueEntry(
            _ms(1320, 130), _ms(35, 7), _pd(0.20), "assumed from 1.5 T"
        ),
        "liver": TissueEntry(_ms(809, 71), _ms(34, 4), _pd(0.90), "DEB04; PD MRX14"),
        "stomach": TissueEntry(
            _ms(990, 100), _ms(45, 5), _pd(0.80), "MRX14 muscle, +10% T1"
        ),
        "spleen": TissueEntry(
            _ms(1328, 31), _ms(61, 9), _pd(0.90), "DEB04; PD as liver"
        ),
        "bone": TissueEntry(
            _ms(586, 73), _ms(49, 4), _pd(0.12), "DEB04 marrow; PD MRX14"
        ),
        "fat": TissueEntry(_ms(382, 13), _ms(68, 4), _pd(0.70), "DEB04; PD MRX14"),
        "muscle": TissueEntry(_ms(898, 33), _ms(29, 4), _pd(0.80), "DEB04; PD MRX14"),
        "body": TissueEntry(
            _ms(990, 100), _ms(45, 5), _pd(0.80), "MRX14 muscle, +10% T1"
        ),
    },
}
