"""The sim-to-real protocol: how far simulation alone goes on real images, and
what it is worth when a few real patients are available.

Three conditions, on one folder of real labelled cine volumes:

* **zero-shot** -- a network trained on the simulator only (``data="sim"``),
  evaluated on every real patient (none was seen);
* **scratch** -- the same network trained on ``k`` real patients only;
* **fine-tune** -- the zero-shot network trained further on the same ``k``
  patients.

Patients are split once (a fixed permutation): a test set that no training run
ever sees, and a pool from which each seed draws its ``k`` training patients.
Nothing at test time uses the ground truth: whole slices are segmented
(:func:`segment_volume`), the network localises the heart itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from jaxsim.io import LabelledCase, atomic_path, load_cases
from jaxsim.labels import ACDC
from jaxsim.metrics import SCORE_FIELDS, mean_sd, score_structures

from ._data import SliceData, slices_from_cases
from ._infer import segment_volume
from ._loop import TrainConfig
from ._run import _preprocessing, load_run, run_training

__all__ = [
    "Sim2RealConfig",
    "patient_phases",
    "split_patients",
    "evaluate_cases",
    "run_sim2real",
    "STRUCTURES",
]

#: Scored structures (ACDC values).
STRUCTURES = {"LV": 3, "MYO": 2, "RV": 1}
_FRAME = re.compile(r"^(?P<patient>.+?)_frame(?P<frame>\d+)$")


@dataclasses.dataclass(frozen=True)
class Sim2RealConfig:
    """The protocol's settings (saved in ``OUT/sim2real.json``).

    Attributes:
        real: folder of real labelled cases (ACDC layout, NIfTI pairs, HDF5).
        spacing: ``(sz, sy, sx)`` mm for real files that store none (HDF5).
        label_map: ``{file value: ACDC value}`` for the real labels.
        pretrain: the zero-shot run (its ``data`` must be ``"sim"``).
        ks: numbers of real training patients.
        seeds: seeds of the scratch and fine-tune runs (each draws its own
            patients and initialises its own network).
        scratch_steps, finetune_steps: optimisation steps on real patients.
        finetune_lr: peak learning rate of fine-tuning.
        test_fraction: share of the patients held out for testing.
        tta: flip test-time augmentation at evaluation.
    """

    real: str
    spacing: tuple | None = None
    label_map: dict | None = None
    pretrain: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    ks: tuple = (1, 2, 4)
    seeds: tuple = (0, 1)
    scratch_steps: int = 400
    finetune_steps: int = 400
    finetune_lr: float = 3e-4
    test_fraction: float = 0.5
    tta: bool = True

    def __post_init__(self):
        if self.pretrain.data != "sim":
            raise ValueError(
                f"pretrain.data must be 'sim' (zero-shot); got {self.pretrain.data!r}"
            )
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be integers >= 1; got {self.ks}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(
                f"test_fraction must lie in (0, 1); got {self.test_fraction}"
            )
        for name in ("scratch_steps", "finetune_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["pretrain"] = self.pretrain.to_json()
        if self.label_map is not None:
            out["label_map"] = {str(k): v for k, v in self.label_map.items()}
        return out


def patient_phases(cases: list[LabelledCase]) -> dict[str, tuple[str, str | None]]:
    """``{case name: (patient, phase)}``: ``NAME_frameXX`` cases group by
    ``NAME``; the phase is the case's own (ACDC ``Info.cfg``), else ED for frame 1
    and ES for the other frame of a two-frame patient (ACDC's end-diastole is
    frame 1), else ``None``."""
    out = {}
    frames: dict[str, list[tuple[int, str]]] = {}
    for case in cases:
        m = _FRAME.match(case.name)
        patient = m["patient"] if m else case.name
        if m:
            frames.setdefault(patient, []).append((int(m["frame"]), case.name))
        out[case.name] = (patient, case.phase)
    for patient, items in frames.items():
        items.sort()
        for frame, name in items:
            if out[name][1] is not None:
                continue
            phase = "ED" if frame == 1 else "ES" if len(items) == 2 else None
            out[name] = (patient, phase)
    return out


def split_patients(patients, test_fraction: float, seed: int = 0):
    """``(test, pool)``: a fixed permutation of the sorted patients, the first
    ``round(test_fraction * n)`` (at least 1) for testing."""
    patients = sorted(set(patients))
    if len(patients) < 2:
        raise ValueError(
            f"the protocol needs at least 2 real patients (test and training); "
            f"got {len(patients)}"
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    n_test = min(len(patients) - 1, max(1, round(test_fraction * len(patients))))
    ranked = [patients[i] for i in order]
    return sorted(ranked[:n_test]), sorted(ranked[n_test:])


def evaluate_cases(
    model, preprocessing, cases, phases=None, *, tta: bool = True
) -> list[dict]:
    """Segment each case and score it: one row per case and structure with
    ``case``, ``patient``, ``phase``, ``structure``, Dice, HD95, ASSD."""
    rows = []
    for case in cases:
        pred = segment_volume(
            model, case.image, case.spacing, preprocessing,
            n_classes=ACDC.n_classes, tta=tta,
        )  # fmt: skip
        scores = score_structures(
            pred, case.labels, spacing=case.spacing, structures=STRUCTURES
        )
        patient, phase = (phases or {}).get(case.name, (case.name, None))
        for structure, score in scores.items():
            rows.append(
                {
                    "case": case.name,
                    "patient": patient,
                    "phase": phase,
                    "structure": structure,
                    **score,
                }
            )
    return rows


def _summary(rows: list[dict]) -> list[dict]:
    """Mean and sd per condition, k, structure and phase (and all phases)."""
    keys = sorted({(r["condition"], r["k"]) for r in rows}, key=lambda t: (t[1], t[0]))
    out = []
    for condition, k in keys:
        sel = [r for r in rows if r["condition"] == condition and r["k"] == k]
        for structure in STRUCTURES:
            for phase in ("ED", "ES", "all"):
                part = [
                    r
                    for r in sel
                    if r["structure"] == structure
                    and (phase == "all" or r["phase"] == phase)
                ]
                if not part:
                    continue
                row = {
                    "condition": condition,
                    "k": k,
                    "structure": structure,
                    "phase": phase,
                    "n": len(part),
                }
                for field in SCORE_FIELDS:
                    row[f"{field}_mean"], row[f"{field}_sd"] = mean_sd(
                        r[field] for r in part
                    )
                out.append(row)
    return out


def _plot_dice_vs_k(path, summary, zero_shot, *, overwrite):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, structure in zip(axes, STRUCTURES, strict=True):
        for condition, style in (("scratch", "o--"), ("fine-tune", "s-")):
            pts = sorted(
                (r["k"], r["dice_mean"], r["dice_sd"])
                for r in summary
                if r["condition"] == condition
                and r["structure"] == structure
                and r["phase"] == "all"
            )
            if pts:
                k, m, sd = (np.array(v) for v in zip(*pts, strict=True))
                ax.errorbar(k, m, yerr=sd, fmt=style, capsize=3, label=condition)
        if structure in zero_shot:
            ax.axhline(zero_shot[structure], color="gray", ls=":", label="zero-shot")
        ax.set_title(structure)
        ax.set_xlabel("real training patients k")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Dice on held-out patients")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite, what="Dice-vs-k plot") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _plot_overlays(path, model, preprocessing, cases, *, tta, overwrite):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"RV": "tab:red", "MYO": "tab:green", "LV": "tab:blue"}
    fig, axes = plt.subplots(
        len(cases), 3, figsize=(7.5, 2.6 * len(cases)), squeeze=False
    )
    for row, case in zip(axes, cases, strict=True):
        pred = segment_volume(
            model, case.image, case.spacing, preprocessing,
            n_classes=ACDC.n_classes, tta=tta,
        )  # fmt: skip
        k = int(np.argmax((case.labels > 0).sum(axis=(1, 2))))
        for ax, labels, title in (
            (row[0], None, case.name),
            (row[1], pred, "zero-shot prediction"),
            (row[2], case.labels, "ground truth"),
        ):
            ax.imshow(case.image[k], cmap="gray")
            ax.set_axis_off()
            ax.set_title(title, fontsize=8)
            if labels is None:
                continue
            for name, value in STRUCTURES.items():
                if np.any(labels[k] == value):
                    ax.contour(
                        labels[k] == value, levels=[0.5], colors=colors[name],
                        linewidths=0.8,
                    )  # fmt: skip
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite, what="overlays") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _write_json(path, payload, *, overwrite=True):
    with atomic_path(path, overwrite=overwrite, what="results") as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")


def _write_csv(path, rows, *, overwrite=True):
    import csv

    with atomic_path(path, overwrite=overwrite, what="table") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def run_sim2real(
    config: Sim2RealConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> dict:
    """Run the protocol into ``out`` and return its results.

    ``out`` receives ``zero_shot/`` (the simulation-only run), ``scratch_k*_s*/``
    and ``finetune_k*_s*/`` runs, ``scores.csv`` (every case, structure and run),
    ``summary.csv`` (mean and sd per condition, k, structure and phase),
    ``dice_vs_k.png``, ``overlays.png`` and ``sim2real.json`` (all of it, with
    the split and wall times). With ``resume``, finished runs are reused and
    unfinished ones continue.

    Raises:
        FileExistsError: ``out`` holds results and neither ``resume`` nor
            ``overwrite`` is set.
    """
    out = Path(out)
    marker = out / "sim2real.json"
    if marker.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{out} holds sim2real results; resume the protocol or choose another "
            "folder (overwrite=True starts afresh)"
        )
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cases = load_cases(
        config.real,
        spacing=config.spacing,
        label_map=config.label_map,
        n_classes=ACDC.n_classes,
    )
    phases = patient_phases(cases)
    test_patients, pool = split_patients(
        [p for p, _ in phases.values()], config.test_fraction
    )
    ks = tuple(k for k in config.ks if k <= len(pool))
    if not ks:
        raise ValueError(
            f"ks {config.ks} exceed the {len(pool)} patients of the training pool"
        )
    test_cases = [c for c in cases if phases[c.name][0] in test_patients]
    by_patient = {p: [c for c in cases if phases[c.name][0] == p] for p in pool}
    log(
        f"{len(cases)} real volumes of {len(set(p for p, _ in phases.values()))} "
        f"patients; test {test_patients}; pool {pool}"
    )
    timings, rows = {}, []
    runs_kw = dict(resume=resume, overwrite=overwrite and not resume, progress=progress)

    def train(name, cfg, **kw):
        _release_compiled()
        run_dir = out / name
        t0 = time.perf_counter()
        done = _finished(run_dir, cfg) if resume else False
        if not done:
            resume_this = resume and (run_dir / "config.json").exists()
            run_training(cfg, run_dir, **{**runs_kw, "resume": resume_this}, **kw)
        timings[name] = time.perf_counter() - t0
        return run_dir

    # zero-shot: simulation only, every real patient unseen
    zero_dir = train("zero_shot", config.pretrain)
    model, preprocessing, _ = load_run(zero_dir)
    t0 = time.perf_counter()
    zero_rows = evaluate_cases(model, preprocessing, cases, phases, tta=config.tta)
    timings["zero_shot_evaluation"] = time.perf_counter() - t0
    for r in zero_rows:
        rows.append({"condition": "zero-shot", "k": 0, "seed": -1, **r,
                     "test": r["patient"] in test_patients})  # fmt: skip
    log(_line("zero-shot, all patients", zero_rows))

    base = config.pretrain
    for seed in config.seeds:
        rng = np.random.default_rng(1000 + seed)
        order = [pool[i] for i in rng.permutation(len(pool))]
        for k in ks:
            chosen = order[:k]
            train_cases = [c for p in chosen for c in by_patient[p]]
            images, labels, names = slices_from_cases(train_cases, _preprocessing(base))
            data = SliceData(images, labels, names, kind="real")
            # validation on the training patients themselves: the test patients
            # stay unseen (a run's curve, not a selection criterion)
            validation = (np.asarray(images[::4]), np.asarray(labels[::4]))
            desc = "real:" + ",".join(chosen)
            for condition, steps, lr, init in (
                ("scratch", config.scratch_steps, base.learning_rate, None),
                ("fine-tune", config.finetune_steps, config.finetune_lr, zero_dir),
            ):
                cfg = dataclasses.replace(
                    base, data=desc, steps=steps, learning_rate=lr, seed=seed,
                    eval_every=steps, checkpoint_every=steps,
                )  # fmt: skip
                name = f"{condition.replace('-', '')}_k{k}_s{seed}"
                run_dir = train(name, cfg, data=data, validation=validation, init=init)
                model, prep, _ = load_run(run_dir)
                scored = evaluate_cases(model, prep, test_cases, phases, tta=config.tta)
                for r in scored:
                    rows.append({"condition": condition, "k": k, "seed": seed, **r,
                                 "test": True, "train_patients": desc})  # fmt: skip
                log(_line(f"{condition}, k={k}, seed {seed}", scored))

    summary = _summary(
        [r for r in rows if r["condition"] != "zero-shot"]
        + [r for r in rows if r["condition"] == "zero-shot"]
    )
    zero_test = _summary(
        [
            {**r, "condition": "zero-shot (test patients)"}
            for r in rows
            if r["condition"] == "zero-shot" and r["test"]
        ]
    )
    summary += zero_test
    fields = ["condition", "k", "seed", "case", "patient", "phase", "structure"]
    fields += [*SCORE_FIELDS, "test", "train_patients"]
    _write_csv(out / "scores.csv", [{f: r.get(f, "") for f in fields} for r in rows])
    _write_csv(out / "summary.csv", summary)
    zero_mean = {
        r["structure"]: r["dice_mean"] for r in zero_test if r["phase"] == "all"
    }
    _plot_dice_vs_k(out / "dice_vs_k.png", summary, zero_mean, overwrite=True)
    shown = sorted(test_cases, key=lambda c: c.name)[:4]
    model, preprocessing, _ = load_run(zero_dir)
    _plot_overlays(
        out / "overlays.png", model, preprocessing, shown, tta=config.tta,
        overwrite=True,
    )  # fmt: skip
    timings["total"] = time.perf_counter() - t_start
    results = {
        "config": config.to_json(),
        "split": {"test": test_patients, "pool": pool, "ks": list(ks)},
        "phases": {k: v[1] for k, v in phases.items()},
        "summary": summary,
        "scores": rows,
        "seconds": timings,
    }
    _write_json(marker, results)
    return results


def _release_compiled() -> None:
    """Drop compiled executables between runs: a long protocol compiles many
    (every run's step, every test volume's shape), and a process that keeps them
    all can run out of memory mappings for JIT code."""
    import jax

    from ._loop import _compiled_step, _optimizer

    _compiled_step.cache_clear()
    _optimizer.cache_clear()
    jax.clear_caches()


def _finished(run_dir: Path, config: TrainConfig) -> bool:
    """A run of ``config`` whose last checkpoint is at its last step.

    Raises:
        ValueError: the folder holds a run configured otherwise (resuming would
            reuse a network the protocol did not ask for).
    """
    from jaxsim.io import CheckpointStore

    path = run_dir / "config.json"
    if not path.exists():
        return False
    saved = TrainConfig.from_json(json.loads(path.read_text())["config"])
    if saved.to_json() != config.to_json():
        raise ValueError(
            f"{run_dir} holds a run configured otherwise; resume with the "
            "protocol's own options, or start afresh (overwrite)"
        )
    with CheckpointStore(run_dir) as store:
        return store.latest == config.steps


def _line(title: str, rows: list[dict]) -> str:
    parts = []
    for structure in STRUCTURES:
        m, sd = mean_sd(r["dice"] for r in rows if r["structure"] == structure)
        parts.append(f"{structure} {m:.3f}±{sd:.3f}")
    return f"{title}: Dice " + ", ".join(parts)
