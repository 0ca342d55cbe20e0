"""Sampling a trained GLO shape generator, and a run's report and picture.

New subjects come from a Gaussian fitted to the learned latents (GLO's sampling
rule). With ``N`` cases and ``K`` latent dimensions the sample covariance ``S``
has rank at most ``N - 1``; it is shrunk towards its diagonal,
``C = (1 - lam) S + lam diag(S)`` with ``lam = min(1, K / N)`` (so a handful of
cases gives a diagonal Gaussian and many cases the full covariance), plus
``1e-6 I`` for a Cholesky factor. Samples are not projected onto the unit ball:
the Gaussian describes the learned codes, and the generator's outputs are valid
subjects for any latent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsim.fit import twin_labels
from jaxsim.geometry import ImageGeometry
from jaxsim.io import CheckpointStore, atomic_path
from jaxsim.metrics import dice_score, shape_plausibility
from jaxsim.models import ShapeGLO
from jaxsim.phantoms import FIELD_SPECS, Subject, end_systolic_phase

__all__ = [
    "fit_latent_gaussian",
    "load_shape_glo",
    "sample_shapes",
    "shape_model_checksum",
    "generated_design",
    "glo_reconstruction",
]

_STRUCTURES = {"LV": 3, "MYO": 2, "RV": 1}


def fit_latent_gaussian(latents, *, shrinkage: float | None = None) -> dict:
    """Gaussian of learned latents (float64 NumPy).

    Args:
        latents: ``(N, K)`` learned codes, ``N >= 1``.
        shrinkage: weight ``lam`` in [0, 1] of the diagonal (default
            ``min(1, K / N)``; see the module docstring).

    Returns:
        ``{"mean": (K,), "cov": (K, K), "shrinkage": lam, "n": N}`` (lists of
        floats, JSON-able); ``cov`` is ``(1 - lam) S + lam diag(S)`` with ``S`` the
        unbiased sample covariance (``ddof=1``; zero for one case).
    """
    z = np.asarray(latents, np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or not np.isfinite(z).all():
        raise ValueError(f"latents must be a finite (N >= 1, K) array; got {z.shape}")
    n, k = z.shape
    lam = min(1.0, k / n) if shrinkage is None else float(shrinkage)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1]; got {shrinkage!r}")
    mean = z.mean(0)
    s = np.cov(z, rowvar=False, ddof=1) if n > 1 else np.zeros((k, k))
    s = np.atleast_2d(s)
    cov = (1.0 - lam) * s + lam * np.diag(np.diag(s))
    return {"mean": mean.tolist(), "cov": cov.tolist(), "shrinkage": lam, "n": n}


def _shape_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    if (run_dir / "shape" / "config.json").exists():
        return run_dir / "shape"
    if (run_dir / "config.json").exists():
        return run_dir
    raise FileNotFoundError(
        f"{run_dir} holds no GLO shape run (no shape/config.json); train one with "
        "'jaxsim glo shape'"
    )


def load_shape_glo(run_dir: str | os.PathLike) -> tuple[ShapeGLO, dict]:
    """The trained generator and latent Gaussian of a run.

    Args:
        run_dir: ``RUN_DIR`` (holding ``shape/``) or ``RUN_DIR/shape``.

    Returns:
        ``(generator, gaussian)``; ``gaussian`` as :func:`fit_latent_gaussian`
        returns it.

    Raises:
        FileNotFoundError: no finished run there.
    """
    from ._glo_shape import ShapeGLOConfig, build_generator

    folder = _shape_dir(run_dir)
    if not (folder / "gaussian.json").exists():
        raise FileNotFoundError(
            f"{folder} holds an unfinished GLO shape run (no gaussian.json); "
            "finish it with 'jaxsim glo shape ... --resume'"
        )
    meta = json.loads((folder / "config.json").read_text())
    fields = dict(meta["config"])
    config = ShapeGLOConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    )
    model = build_generator(config)
    gaussian = json.loads((folder / "gaussian.json").read_text())
    _, params, _ = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(params)
    like = {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}
    with CheckpointStore(folder / "generator", max_to_keep=None) as store:
        flat, _ = store.restore(like)
    nnx.update(model, jax.tree.unflatten(treedef, [flat[k] for k in sorted(flat)]))
    return model, gaussian


def shape_model_checksum(run_dir: str | os.PathLike) -> str:
    """SHA-256 (hex) of a run's generator weights, configuration and Gaussian:
    it changes whenever the subjects it generates could."""
    return _checksum(*load_shape_glo(run_dir))


def _checksum(model, gaussian) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(model.config(), sort_keys=True).encode())
    h.update(json.dumps(gaussian, sort_keys=True).encode())
    params = nnx.state(model, nnx.Param)
    for path, leaf in sorted(
        jax.tree_util.tree_leaves_with_path(params), key=lambda x: str(x[0])
    ):
        h.update(str(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    t = model.template
    for f in FIELD_SPECS:
        h.update(np.asarray(getattr(t, f), np.float32).tobytes())
    return h.hexdigest()


def sample_shapes(model_or_run_dir, key, n: int, *, gaussian=None) -> Subject:
    """Draw ``n`` new subjects from a trained GLO shape generator.

    Args:
        model_or_run_dir: a :class:`ShapeGLO` (then pass ``gaussian``) or a run
            folder (``RUN_DIR`` or ``RUN_DIR/shape``).
        key: PRNG key; the same key gives the same subjects.
        n: number of subjects (>= 1).
        gaussian: ``{"mean", "cov"}`` of the latents (loaded with a run folder).

    Returns:
        A batched valid ``Subject`` ``(n,)`` with its residual deformation
        (``deformation.control`` ``(n, *grid_shape, 3)``), float32.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    if isinstance(model_or_run_dir, ShapeGLO):
        model = model_or_run_dir
        if gaussian is None:
            raise ValueError("gaussian is needed with a ShapeGLO model")
    else:
        model, gaussian = load_shape_glo(model_or_run_dir)
    mean = np.asarray(gaussian["mean"], np.float64)
    cov = np.asarray(gaussian["cov"], np.float64)
    chol = np.linalg.cholesky(cov + 1e-6 * np.eye(len(mean)))
    eps = np.asarray(jax.random.normal(key, (int(n), len(mean))), np.float64)
    z = jnp.asarray(mean + eps @ chol.T, jnp.float32)
    graphdef, state = nnx.split(model)
    return _decode(graphdef, state, z)


@functools.partial(jax.jit, static_argnums=0)
def _decode(graphdef, state, z):
    return nnx.merge(graphdef, state).subjects(z)


# ---------------------------------------------------------------- run outputs
def glo_reconstruction(trainer, cases):
    """Each case as the generator reconstructs it from its latent and pose.

    Args:
        trainer: a :class:`ShapeGLOTrainer` (its current parameters).
        cases: the trainer's :class:`GLOCase` s, in its order.

    Returns:
        One dict per case: ``"subject"`` (the decoded ``Subject``),
        ``"geometry"`` (the case's full grid placed in the phantom's world),
        ``"labels"`` and ``"real"`` (``{"ED": ..., "ES": ...}`` rasterised and
        real ACDC labels) and ``"dice"`` (``{phase: {"LV", "MYO", "RV"}}``).
    """
    model = trainer.generator()
    subjects = model.subjects(trainer.params["latents"])
    out = []
    for i, case in enumerate(cases):
        s = jax.tree.map(lambda a, i=i: a[i], subjects)
        affine = trainer.case_affine(
            trainer.params, i, affine=jnp.asarray(case.geometry.affine, jnp.float32)
        )
        geom = ImageGeometry(affine=affine, shape=case.geometry.shape)
        ss = trainer.config.supersample
        labels = {"ED": twin_labels(s, geom, supersample=ss)}
        real = {"ED": case.labels_ed}
        if case.labels_es is not None:
            phase = float(end_systolic_phase(s))
            labels["ES"] = twin_labels(s, geom, cardiac_phase=phase, supersample=ss)
            real["ES"] = case.labels_es
        dice = {}
        for ph in labels:
            d = dice_score(labels[ph], real[ph], labels=list(_STRUCTURES.values()))
            dice[ph] = {k: float(d[v]) for k, v in _STRUCTURES.items()}
        out.append(
            {"subject": s, "geometry": geom, "labels": labels, "real": real,
             "dice": dice}
        )  # fmt: skip
    return out


def _plot(recon, generated, path, names):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["black", "tab:blue", "tab:green", "tab:red"])
    n_real = min(len(recon), 4)
    cols = max(n_real, len(generated), 1)
    fig, axes = plt.subplots(3, cols, squeeze=False, figsize=(2.3 * cols, 7.2), dpi=90)
    for ax in axes.ravel():
        ax.axis("off")
    for c in range(n_real):
        r = recon[c]
        z = np.nonzero(np.any(r["real"]["ED"] == 3, axis=(1, 2)))[0]
        k = int(z[len(z) // 2])
        axes[0, c].imshow(r["real"]["ED"][k], cmap=cmap, vmin=0, vmax=3)
        axes[0, c].set_title(f"{names[c]} real ED", fontsize=7)
        axes[1, c].imshow(r["labels"]["ED"][k], cmap=cmap, vmin=0, vmax=3)
        d = r["dice"]["ED"]
        axes[1, c].set_title(
            f"GLO  LV {d['LV']:.2f} MYO {d['MYO']:.2f} RV {d['RV']:.2f}", fontsize=7
        )
    for c, (labels, ok) in enumerate(generated):
        axes[2, c].imshow(labels[labels.shape[0] // 2], cmap=cmap, vmin=0, vmax=3)
        axes[2, c].set_title(
            f"generated {c} ({'plausible' if ok else 'implausible'})", fontsize=7
        )
    fig.suptitle(
        "GLO shape: real labels (top), reconstruction (middle), generated subjects "
        "(bottom; mid short-axis slice). RV blue, MYO green, LV red",
        fontsize=8,
    )
    fig.tight_layout()
    with atomic_path(path, overwrite=True, what="picture") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _generated_labels(subjects, n):
    from jaxsim.labels import ACDC, task_labels
    from jaxsim.phantoms import label_map, short_axis_geometry

    out = []
    for i in range(n):
        s = jax.tree.map(lambda a, i=i: a[i], subjects)
        geom = short_axis_geometry(s, spacing=(5.0, 1.5, 1.5), shape=(28, 128, 128))
        out.append(np.asarray(task_labels(np.asarray(label_map(s, geom)), ACDC)))
    return out


def write_shape_outputs(trainer, cases, out, *, timings, seconds, n_generated):
    """Latents, Gaussian, final generator, report and picture of a finished run."""
    out = Path(out)
    latents = np.asarray(trainer.params["latents"], np.float64)
    with atomic_path(out / "latents.npy", overwrite=True, what="latents") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, latents)
    # The generator alone, for sampling without the cases.
    params = trainer.params["generator"]
    leaves = jax.tree.leaves(params)
    if (out / "generator").exists():  # a finished run's, being rewritten
        import shutil

        shutil.rmtree(out / "generator")
    with CheckpointStore(out / "generator", max_to_keep=1) as store:
        store.save(
            trainer.step_count,
            {f"{i:05d}": leaf for i, leaf in enumerate(leaves)},
            {"kind": "glo-shape-generator", "step": trainer.step_count},
        )
    gaussian = fit_latent_gaussian(latents)
    with atomic_path(out / "gaussian.json", overwrite=True, what="Gaussian") as tmp:
        tmp.write_text(json.dumps(gaussian) + "\n")
    recon = glo_reconstruction(trainer, cases)
    subjects = sample_shapes(
        trainer.generator(),
        jax.random.key(trainer.config.seed + 1),
        n_generated,
        gaussian=gaussian,
    )
    table = shape_plausibility(subjects)
    rate = float(np.mean([r["plausible"] for r in table]))
    names = list(trainer.data.names)
    dice = {n: r["dice"] for n, r in zip(names, recon, strict=True)}
    mean = {
        ph: {
            k: float(np.mean([d[ph][k] for d in dice.values() if ph in d]))
            for k in _STRUCTURES
        }
        for ph in ("ED", "ES")
        if any(ph in d for d in dice.values())
    }
    step_s = {
        stage: float(np.median(t[1:] if len(t) > 1 else t)) if t else None
        for stage, t in timings.items()
    }
    report = {
        "cases": names,
        "dice": dice,
        "mean_dice": mean,
        "plausibility": {
            "n": len(table),
            "pass_rate": rate,
            "subjects": [
                {
                    k: (v if not isinstance(v, np.generic) else v.item())
                    for k, v in r.items()
                }
                for r in table
            ],
        },
        "gaussian": {"shrinkage": gaussian["shrinkage"], "n": gaussian["n"]},
        "seconds_per_step": step_s,
        "seconds": seconds,
        "steps": trainer.step_count,
        "config": trainer.config.to_json(),
        "checksum": shape_model_checksum(out),
    }
    shown = _generated_labels(subjects, min(4, n_generated))
    _plot(
        recon,
        list(zip(shown, [r["plausible"] for r in table], strict=False)),
        out / "shape.png",
        names,
    )
    with atomic_path(out / "report.json", overwrite=True, what="report") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    return report


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-able: {type(x).__name__}")


def generated_design(run_dir, n: int, preset, seed: int, *, material=None):
    """A population design whose subjects are drawn from a GLO shape run.

    The subjects are :func:`sample_shapes` with the key
    ``stream(key(seed), "generate.shapes")``; everything else (grid, contrasts,
    noise) is ``preset``'s, drawn from ``seed`` as ``jaxsim population`` does.
    With a material run (``RUN_DIR/material`` of ``jaxsim glo material``) every
    subject also gets a material map drawn by
    :func:`~jaxsim.train.sample_materials` with the key
    ``stream(key(seed), "generate.materials")``.

    Args:
        run_dir: ``RUN_DIR`` of ``jaxsim glo shape`` (or ``RUN_DIR/shape``).
        n: number of subjects (>= 1).
        preset: a :class:`jaxsim.population.Preset`.
        seed: design seed.
        material: ``None`` (use ``RUN_DIR/material`` when it exists), ``True``
            (require it) or ``False`` (constant tissue properties).

    Returns:
        :class:`jaxsim.population.PopulationDesign` with a
        :class:`jaxsim.population.SubjectSource` whose description holds the
        model folder, its checksum (:func:`shape_model_checksum`), the seed and
        the generator's configuration.
    """
    from jaxsim.population import PopulationDesign, SubjectSource
    from jaxsim.random import stream

    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    folder = _shape_dir(run_dir)
    model, gaussian = load_shape_glo(folder)
    key = stream(jax.random.key(int(seed)), "generate.shapes")
    subjects = sample_shapes(model, key, int(n), gaussian=gaussian)
    subjects = jax.tree.map(np.asarray, subjects)
    subjects = jax.tree.map(jnp.asarray, subjects)
    description = {
        "kind": "glo-shape",
        "model": str(folder.resolve()),
        "checksum": _checksum(model, gaussian),
        "seed": int(seed),
        "n": int(n),
        "generator": model.config(),
        "material": None,
    }
    materials = None
    root = folder.parent if folder.name == "shape" else folder
    if material is None:
        material = (root / "material" / "config.json").exists()
    if material:
        from ._glo_material import load_material_glo, sample_materials

        if not (root / "material" / "config.json").exists():
            raise FileNotFoundError(
                f"{root} holds no material GLO run (no material/config.json); "
                "train one with jaxsim glo material or generate without materials"
            )
        glo, latents, _ = load_material_glo(root / "material")
        mkey = stream(jax.random.key(int(seed)), "generate.materials")
        materials = np.asarray(sample_materials(glo, mkey, int(n), latents=latents))
        h = hashlib.sha256(np.ascontiguousarray(materials, np.float32).tobytes())
        description["material"] = {
            "model": str((root / "material").resolve()),
            "checksum": h.hexdigest(),
        }
    return PopulationDesign(
        preset,
        int(seed),
        source=SubjectSource(subjects, description, materials=materials),
    )
