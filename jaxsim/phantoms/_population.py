"""Sampling virtual subjects from adult population statistics.

Sources of the distributions (means and standard deviations, rounded; adults,
SSFP cine CMR where applicable):

* LV end-diastolic and end-systolic volume, RV end-diastolic volume: Hudsmith LE,
  Petersen SE, Francis JM, Robson MD, Neubauer S. "Normal human left and right
  ventricular and left atrial dimensions using steady state free precession magnetic
  resonance imaging." J Cardiovasc Magn Reson 2005;7:775-782 (108 volunteers) — LV
  EDV 160 +/- 29 mL (men), 135 +/- 26 mL (women); LV ESV 50 +/- 16 mL and
  42 +/- 12 mL, i.e. an ejection fraction of about 69 % in both, used with an SD of
  6 %; RV EDV 190 +/- 33 mL and 148 +/- 35 mL, i.e. RV/LV EDV ratios of about 1.19
  and 1.10. ESV follows as ``edv * (1 - ef)``.
* LV wall thickness (end-diastole, mid-ventricular): about 8.5 +/- 1.2 mm in men and
  7.2 +/- 1.0 mm in women, of the order of the segmental values collected by
  Kawel-Boehm N et al. "Normal values for cardiovascular magnetic resonance in adults
  and children." J Cardiovasc Magn Reson 2015;17:29 (not transcribed from one
  table). With EDV this implies an LV mass (1.05 g/mL) of roughly 100-170 g.
* Chest depth and breadth (torso semi-axes = half of them): Gordon CC et al. "2012
  Anthropometric Survey of U.S. Army Personnel (ANSUR II)", Natick/TR-15/007, 2014 —
  chest depth about 254 +/- 20 mm (men), 238 +/- 20 mm (women); chest breadth about
  332 +/- 22 mm (men), 284 +/- 20 mm (women).
* Resting heart rate about 68 +/- 9 bpm; ejection time from Weissler AM, Harris WS,
  Schoenfeld CD. "Systolic time intervals in heart failure in man." Circulation
  1968;37:149-159: LVET = 0.413 - 0.0017 HR s (men), 0.418 - 0.0016 HR s (women),
  plus about 0.04 s of isovolumic contraction to reach end-systole.

Every normal is truncated at +/- 2.5 SD so that sampled subjects stay physical (and
inside the ranges enforced by ``check_subject``); EDV, body size and heart scale share
a latent "body size" factor (correlation about 0.5).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._subject import FIELD_SPECS, Subject, sex_code

__all__ = ["sample_subjects"]

_TRUNC = 2.5
_SIZE_LOADING = 0.7  # loading of size-related fields on the shared size factor

# name: (male mean, male sd, female mean, female sd, loads on body size)
_STATS = {
    "body_ap": (127.0, 10.0, 119.0, 10.0, True),
    "body_lateral": (166.0, 11.0, 142.0, 10.0, True),
    "torso_length": (600.0, 30.0, 560.0, 28.0, True),
    "fat_thickness": (12.0, 4.0, 17.0, 5.0, False),
    "muscle_thickness": (12.0, 2.0, 9.0, 1.8, False),
    "heart_scale": (1.0, 0.07, 0.92, 0.07, True),
    "edv": (160.0, 29.0, 135.0, 26.0, True),
    "wall_thickness": (8.5, 1.2, 7.2, 1.0, False),
    "lv_aspect": (2.0, 0.15, 2.0, 0.15, False),
    "longitudinal_shortening": (0.15, 0.03, 0.15, 0.03, False),
    "rv_lv_ratio": (1.19, 0.08, 1.1, 0.08, False),
    "rv_wall_thickness": (3.5, 0.5, 3.2, 0.5, False),
    "heart_azimuth": (0.75, 0.12, 0.75, 0.12, False),
    "heart_elevation": (0.45, 0.12, 0.45, 0.12, False),
    "heart_roll": (0.0, 0.1, 0.0, 0.1, False),
    "diaphragm_height": (-55.0, 10.0, -50.0, 10.0, False),
    "lung_scale": (1.0, 0.06, 0.93, 0.06, True),
    "liver_scale": (1.0, 0.07, 0.92, 0.07, True),
    "pericardial_fat": (2.5, 0.8, 2.0, 0.7, False),
    "respiratory_amplitude": (12.0, 3.0, 10.0, 3.0, False),
}
_EF = (0.69, 0.06)  # Hudsmith et al. 2005, both sexes
_HEART_RATE = (68.0, 9.0)  # bpm
_ES_TIME_SD = 0.02  # s
_OFFSET_SD = 6.0  # mm, heart position about its nominal place


def _sample_one(key, sex, dtype) -> Subject:
    sex_key, normal_key = jax.random.split(key)
    if sex is None:
        female = jax.random.bernoulli(sex_key).astype(dtype)
    else:
        female = jnp.asarray(sex, dtype)
    # one draw of all standard truncated normals (a small graph compiles fast)
    z = iter(
        jax.random.truncated_normal(
            normal_key, -_TRUNC, _TRUNC, (len(_STATS) + 7,), dtype=dtype
        )
    )
    size = next(z)
    values = {"sex": female}
    for name, (m_mean, m_sd, f_mean, f_sd, sized) in _STATS.items():
        mean = m_mean + female * (f_mean - m_mean)
        sd = m_sd + female * (f_sd - m_sd)
        zi = next(z)
        if sized:
            zi = _SIZE_LOADING * size + (1.0 - _SIZE_LOADING**2) ** 0.5 * zi
        values[name] = mean + sd * zi
    ef = _EF[0] + _EF[1] * next(z)
    values["esv"] = values["edv"] * (1.0 - ef)
    heart_rate = _HEART_RATE[0] + _HEART_RATE[1] * next(z)
    lvet = 0.413 - 0.0017 * heart_rate + female * (0.005 + 0.0001 * heart_rate)
    values["rr_interval"] = 60.0 / heart_rate
    values["es_time"] = 0.04 + lvet + _ES_TIME_SD * next(z)
    values["heart_offset"] = _OFFSET_SD * jnp.stack([next(z), next(z), next(z)])
    return Subject(**{name: values[name] for name in FIELD_SPECS})


def sample_subjects(key, n: int, *, sex=None, dtype=None) -> Subject:
    """Draw ``n`` adult subjects from population statistics.

    Subject ``i`` depends only on ``jax.random.fold_in(key, i)`` (and ``sex``), so
    the first subjects of a larger draw equal a smaller draw with the same key.

    Args:
        key: a JAX PRNG key.
        n: number of subjects (static, >= 1).
        sex: ``None`` (each subject male or female with probability 1/2),
            ``"male"`` or ``"female"`` (or 0 / 1).
        dtype: float dtype of the leaves (default: JAX's default float).

    Returns:
        A ``Subject`` whose leaves have leading axis ``n`` (``heart_offset``:
        ``(n, 3)``).

    Raises:
        ValueError: ``n < 1`` or an unknown ``sex``.

    Example:
        >>> subjects = sample_subjects(jax.random.key(0), 8, sex="female")
        >>> subjects.edv.shape
        (8,)
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    code = None if sex is None else sex_code(sex)
    dtype = dtype or jnp.zeros(()).dtype
    return _sample(key, n, code, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _sample(key, n, code, dtype):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    return jax.vmap(lambda k: _sample_one(k, code, dtype))(keys)
