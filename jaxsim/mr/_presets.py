"""The seed-2021 contrast design: 3 SNR levels x 3 sequences x 3 tissue draws.

The virtual-population study this reproduces varied, per subject, the noise level
(high, medium, low SNR), the bSSFP sequence (TR, TE and flip "slightly altered"
around a clinical protocol) and the tissue properties (three draws from literature
distributions), for 27 contrasts. The values below are grounded in a real 1.5 T
Philips short-axis cine protocol (flip 60 deg, TR 3.1-3.2 ms, TE 1.56-1.59 ms) and
MRXCAT's default SNR of 20 (the medium level).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._sequence import BSSFPSequence
from ._tissues import TissueProperties, sample_tissue_properties

__all__ = ["SEED2021_SNR", "SEED2021_SEQUENCES", "seed2021_contrasts"]

#: High, medium and low myocardial SNR.
SEED2021_SNR: tuple[float, ...] = (40.0, 20.0, 10.0)

#: (TR s, TE s, flip rad) around the clinical protocol.
SEED2021_SEQUENCES: tuple[tuple[float, float, float], ...] = (
    (3.0e-3, 1.50e-3, math.radians(50.0)),
    (3.1e-3, 1.56e-3, math.radians(60.0)),
    (3.2e-3, 1.59e-3, math.radians(70.0)),
)


def seed2021_contrasts(key, *, field: float = 1.5):
    """The 27 contrasts of one subject, SNR-major, then sequence, then tissue draw.

    Args:
        key: PRNG key for the three tissue-property draws.
        field: 1.5 or 3 (tesla).

    Returns:
        ``(tissue, sequence, snr, index)``: :class:`TissueProperties` with arrays
        ``(27, n_tissues)``, :class:`BSSFPSequence` with ``(27,)`` leaves, ``(27,)``
        SNRs, and a ``(27, 3)`` int array of (snr level, sequence, tissue draw).
    """
    draws = sample_tissue_properties(key, 3, field=field)
    idx = jnp.array([(a, b, c) for a in range(3) for b in range(3) for c in range(3)])
    tissue = jax.tree_util.tree_map(lambda x: x[idx[:, 2]], draws)
    seq = jnp.asarray(SEED2021_SEQUENCES)[idx[:, 1]]
    sequence = BSSFPSequence(
        tr=seq[:, 0],
        te=seq[:, 1],
        flip=seq[:, 2],
        rf_phase_increment=jnp.full((27,), math.pi),
    )
    snr = jnp.asarray(SEED2021_SNR)[idx[:, 0]]
    return TissueProperties(tissue.pd, tissue.t1, tissue.t2), sequence, snr, idx
