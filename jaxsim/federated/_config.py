"""The settings of a federated run, shared by the server and every site.

The configuration travels to the sites inside each message (as JSON in a
``ConfigRecord``), so a site needs nothing but its own data folder; under
``flwr run`` it is read from the app's run configuration instead.
"""

from __future__ import annotations

import dataclasses
import json
import math

__all__ = ["FederatedConfig", "STRATEGIES", "CPU_MODEL_OPTIONS"]

#: Server-side aggregation rules (see :mod:`jaxsim.federated._aggregate`).
STRATEGIES = ("fedavg", "fedprox", "fedadam")

#: A U-Net small enough for a 2-core CPU (the ``--reference`` size is
#: ``jaxsim.train.DEFAULT_MODEL_OPTIONS["unet2d"]``).
CPU_MODEL_OPTIONS = {
    "channels": [8, 16, 32, 64],
    "strides": [2, 2, 2],
    "num_res_units": 1,
    "norm": "instance",
}


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def _non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}")


def _positive(name, value, upper=math.inf):
    if isinstance(value, bool) or not (0.0 < float(value) < upper):
        raise ValueError(f"{name} must lie in (0, {upper}); got {value!r}")


@dataclasses.dataclass(frozen=True)
class FederatedConfig:
    """Everything a federated run needs (saved as ``RUN_DIR/federated.json``).

    Attributes:
        task: registered federated task (:func:`jaxsim.federated.task_names`):
            ``"direct"`` (FedAvg of a U-Net on the sites' real slices), ``"local"``
            (each site trains alone; the baseline), ``"sim-fl"`` (shared shape and
            material generators, a site-local enhancer, the U-Net trained on
            rendered data; :mod:`jaxsim.federated._simfl`).
        strategy: ``"fedavg"``, ``"fedprox"`` (FedAvg plus the proximal term
            ``mu/2 ||w - w_global||^2`` in every site's loss) or ``"fedadam"``
            (server Adam on the averaged update, Reddi et al. 2021, with
            Flower's formulas).
        rounds: federated rounds.
        local_steps: optimisation steps per site and round.
        batch_size: slices per local step.
        learning_rate: the sites' Adam learning rate.
        proximal_mu: FedProx's ``mu`` (``fedprox`` only).
        server_learning_rate, beta_1, beta_2, tau: FedAdam's ``eta``,
            ``beta_1``, ``beta_2`` and ``tau`` (``fedadam`` only).
        finetune_steps: local fine-tuning steps of the final global network at
            each site before its last evaluation (0: none).
        model: network name (``jaxsim.train.TRAINABLE_MODELS``, 2D ones).
        model_options: network options (default: a small CPU-sized U-Net).
        shape: ``(H, W)`` network input in pixels.
        spacing: in-plane pixel size the network sees, mm.
        loss: ``"dice_ce"`` or ``"focal_tversky"``.
        augment: on-device augmentation of the local batches.
        data_spacing: ``(sz, sy, sx)`` mm for site files that store none (HDF5).
        label_map: ``{file value: ACDC value}`` of the sites' label files.
        test_fraction: share of each site's patients held out for evaluation.
        tta: flip test-time averaging at evaluation.
        seed: seed of the initial network, the site splits and every batch.
        shape_rounds, material_rounds: ``sim-fl``'s rounds of shape GLO and of
            material GLO before the segmentation rounds.
        shape_steps, material_steps: local GLO steps per round (round 1 first
            runs the shape generator's warm start).
        invert_steps: rasteriser steps of a GLO inversion (the generator frozen):
            a site's twins, and the reconstruction of its held-out cases.
        enhancer_steps: steps of a site's own SPADE enhancer (0: none, the
            U-Net trains on the physics renderings).
        sim_subjects: subjects a site draws and renders (ED and ES) for ``sim-fl``.
        shape_options, material_options, enhancer_options: overrides of
            :class:`~jaxsim.train.ShapeGLOConfig`,
            :class:`~jaxsim.train.MaterialGLOConfig` and
            :class:`~jaxsim.train.EnhancerConfig` fields (``sim-fl``).
    """

    task: str = "direct"
    strategy: str = "fedavg"
    rounds: int = 10
    local_steps: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-3
    proximal_mu: float = 0.01
    server_learning_rate: float = 1e-2
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3
    finetune_steps: int = 20
    model: str = "unet2d"
    model_options: dict = dataclasses.field(
        default_factory=lambda: dict(CPU_MODEL_OPTIONS)
    )
    shape: tuple = (128, 128)
    spacing: float = 2.5
    loss: str = "dice_ce"
    augment: bool = True
    data_spacing: tuple | None = None
    label_map: dict | None = None
    test_fraction: float = 0.5
    tta: bool = True
    seed: int = 0
    shape_rounds: int = 3
    shape_steps: int = 20
    material_rounds: int = 2
    material_steps: int = 10
    invert_steps: int = 20
    enhancer_steps: int = 100
    sim_subjects: int = 8
    shape_options: dict = dataclasses.field(default_factory=dict)
    material_options: dict = dataclasses.field(default_factory=dict)
    enhancer_options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {STRATEGIES}; got {self.strategy!r}"
            )
        for name in ("rounds", "local_steps", "batch_size"):
            _positive_int(name, getattr(self, name))
        _non_negative_int("finetune_steps", self.finetune_steps)
        for name in ("shape_rounds", "shape_steps", "material_rounds",
                     "material_steps", "invert_steps", "sim_subjects"):  # fmt: skip
            _positive_int(name, getattr(self, name))
        _non_negative_int("enhancer_steps", self.enhancer_steps)
        for name in ("shape_options", "material_options", "enhancer_options"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict; got {getattr(self, name)!r}")
        if self.task == "sim-fl":
            from ._simfl import enhancer_config, material_config, shape_config

            checks = [("shape_options", shape_config),
                      ("material_options", material_config)]  # fmt: skip
            if self.enhancer_steps:  # no enhancer: its options are not used
                checks.append(("enhancer_options", enhancer_config))
            for name, build in checks:
                try:
                    build(self)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{name}: {err}") from None
            glo = self.shape_rounds + self.material_rounds
            if self.rounds <= glo:
                raise ValueError(
                    f"rounds must exceed shape_rounds + material_rounds = {glo} for "
                    f"sim-fl (the segmentation rounds follow them); got {self.rounds}"
                )
        _positive("learning_rate", self.learning_rate)
        _positive("server_learning_rate", self.server_learning_rate)
        _positive("tau", self.tau)
        _positive("spacing", self.spacing)
        _positive("test_fraction", self.test_fraction, upper=1.0)
        if not (isinstance(self.proximal_mu, int | float) and self.proximal_mu >= 0):
            raise ValueError(f"proximal_mu must be >= 0; got {self.proximal_mu!r}")
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(
                    f"{name} must lie in [0, 1); got {getattr(self, name)}"
                )
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2^31); got {self.seed!r}")
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 2 or min(shape) < 8:
            raise ValueError(f"shape must be (H, W) with sides >= 8; got {self.shape}")
        object.__setattr__(self, "shape", shape)
        if self.data_spacing is not None:
            spacing = tuple(float(s) for s in self.data_spacing)
            if len(spacing) != 3 or not all(s > 0 for s in spacing):
                raise ValueError(
                    f"data_spacing must be (sz, sy, sx) > 0 mm; got {self.data_spacing}"
                )
            object.__setattr__(self, "data_spacing", spacing)
        if self.label_map is not None:
            object.__setattr__(
                self,
                "label_map",
                {int(k): int(v) for k, v in self.label_map.items()},
            )

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["shape"] = list(self.shape)
        if self.data_spacing is not None:
            out["data_spacing"] = list(self.data_spacing)
        if self.label_map is not None:
            out["label_map"] = {str(k): v for k, v in self.label_map.items()}
        return out

    def dumps(self) -> str:
        """The configuration as one JSON string (what the messages carry)."""
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data: dict) -> FederatedConfig:
        """Inverse of :meth:`to_json`; unknown fields are refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown federated settings {unknown}; known: {sorted(known)}"
            )
        data = dict(data)
        for key in ("shape", "data_spacing"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def loads(cls, text: str) -> FederatedConfig:
        return cls.from_json(json.loads(text))

    def replace(self, **changes) -> FederatedConfig:
        return dataclasses.replace(self, **changes)
