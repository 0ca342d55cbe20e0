"""The MR receive-chain configuration: one frozen pytree for every MR simulator.

Counts and modes (coil count, combination, in-plane refinement, fully sampled
centre lines) are static fields: changing them compiles new code. Physical
magnitudes (SNR or noise sigma, B0 and bias strengths, window taper, acceleration)
are leaves: a jitted simulator traced once serves every value, so a
domain-randomised training run compiles once. A magnitude left ``None`` switches
its effect off (a different, static structure); ``0.0`` keeps the effect in the
graph with zero strength.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxsim.kernels.checks import check_range

__all__ = ["MRAcquisition", "COMBINATIONS", "check_acquisition"]

COMBINATIONS = ("rss", "sensitivity")
MAX_OVERSAMPLE = 8


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MRAcquisition:
    """How MR images are received: k-space, coils, noise, field imperfections.

    Attributes:
        snr: target myocardial SNR (MRXCAT's definition: noise sigma per channel
            and component = mean noise-free myocardial magnitude / snr); leaf.
        noise_std: noise sigma per channel and component set directly, in image
            units (instead of ``snr``); leaf. Neither: no noise.
        b0_std: standard deviation (Hz) of a random smooth B0 field map; leaf or
            ``None`` (no field map).
        bias_std: standard deviation of the log of a random smooth receive bias;
            leaf or ``None``.
        tukey_alpha: Tukey window taper in [0, 1] on the cropped k-space; leaf or
            ``None`` (no window).
        acceleration: Cartesian undersampling factor >= 1 with zero filling; leaf
            or ``None`` (fully sampled).
        n_coils: static; receive coils (1: a uniform coil; more: Biot-Savart loops).
        coil_combination: static; ``"rss"`` or ``"sensitivity"`` (Roemer, known
            maps).
        oversample: static; in-plane refinement of the simulation grid whose
            k-space is cropped to the target matrix (1: no crop), in [1, 8].
        center_lines: static; fully sampled phase-encoding lines at the k-space
            centre when undersampling.

    Leaves may carry a leading contrast axis for
    :func:`~jaxsim.mr.simulate_cine_contrasts`.

    Example:
        >>> acq = MRAcquisition(snr=20.0, n_coils=4, b0_std=30.0)
    """

    snr: jax.Array | None = None
    noise_std: jax.Array | None = None
    b0_std: jax.Array | None = None
    bias_std: jax.Array | None = None
    tukey_alpha: jax.Array | None = None
    acceleration: jax.Array | None = None
    n_coils: int = dataclasses.field(default=1, metadata=dict(static=True))
    coil_combination: str = dataclasses.field(default="rss", metadata=dict(static=True))
    oversample: int = dataclasses.field(default=2, metadata=dict(static=True))
    center_lines: int = dataclasses.field(default=16, metadata=dict(static=True))

    def __post_init__(self):
        # Static fields only: leaves may be tracers or placeholders here.
        for name, low, high in (
            ("n_coils", 1, None),
            ("oversample", 1, MAX_OVERSAMPLE),
            ("center_lines", 1, None),
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or int(value) != value
                or value < low
                or (high is not None and value > high)
            ):
                bound = f"[{low}, {high}]" if high else f">= {low}"
                raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.coil_combination not in COMBINATIONS:
            raise ValueError(
                f"coil_combination must be one of {COMBINATIONS}; got "
                f"{self.coil_combination!r}"
            )

    @property
    def with_noise(self) -> bool:
        """Whether noise is added (``snr`` or ``noise_std`` given; static)."""
        return self.snr is not None or self.noise_std is not None

    def replace(self, **changes) -> MRAcquisition:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def check_acquisition(acq: MRAcquisition, name: str = "acquisition") -> None:
    """Raise ``ValueError`` for invalid concrete magnitudes (tracers are skipped)."""
    if not isinstance(acq, MRAcquisition):
        raise TypeError(f"{name} must be an MRAcquisition; got {type(acq).__name__}")
    if acq.snr is not None and acq.noise_std is not None:
        raise ValueError(f"{name}: give snr or noise_std, not both")
    checks = {
        "snr": dict(low=0.0),
        "noise_std": dict(low=0.0, low_inclusive=True),
        "b0_std": dict(low=0.0, low_inclusive=True, unit="Hz"),
        "bias_std": dict(low=0.0, low_inclusive=True),
        "tukey_alpha": dict(low=0.0, high=1.0, low_inclusive=True),
        "acceleration": dict(low=1.0, low_inclusive=True),
    }
    for field, bounds in checks.items():
        value = getattr(acq, field)
        if value is not None:
            check_range(f"{name}.{field}", jnp.asarray(value), **bounds)
