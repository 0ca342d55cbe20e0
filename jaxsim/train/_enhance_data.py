"""Paired training data of the enhancer: physics renderings of patient twins and
the patients' real images on the same grid.

A patient twin (``jaxsim twin``) is the phantom fitted to a real label map and
placed on the real stack's grid, so the simulator renders the patient's heart
voxel for voxel where the real image shows it: each real slice gets a physics
rendering of the same anatomy, which a paired network (SPADE) can learn to turn
into the real image.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.fit import twin_from_parameters
from jaxsim.io import read_image_label_h5
from jaxsim.labels import ACDC, task_labels
from jaxsim.mr import simulate_cine

from ._data import Preprocessing

__all__ = ["EnhancerPairs", "TwinCase", "enhancer_pairs", "find_twins", "match_cases"]

_H5 = (".h5", ".hdf5")


@dataclasses.dataclass(frozen=True)
class TwinCase:
    """One real file matched with the twin fitted to it.

    Attributes:
        real: the real HDF5 file (``image`` and ``label``).
        twin: the twin's folder (``report.json`` of ``jaxsim twin``).
        phase: ``"ED"`` or ``"ES"``: which of the twin's fitted frames the file is.
        cardiac_phase: the phase to render, in [0, 1) (0 at ED, the twin's
            ``es_phase`` at ES).
        parameters: the report's ``parameters``.
        spacing: the spacing ``(sz, sy, sx)`` mm the twin was fitted with.
    """

    real: Path
    twin: Path
    phase: str
    cardiac_phase: float
    parameters: dict
    spacing: tuple


def _reports(twins) -> list[Path]:
    """Every ``report.json`` in the twin folders (a folder, or a folder of them)."""
    found = []
    for folder in twins:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"twins: {folder} is not a folder")
        if (folder / "report.json").exists():
            found.append(folder / "report.json")
        else:
            found += sorted(folder.glob("*/report.json"))
    if not found:
        raise FileNotFoundError(
            "twins: no report.json of `jaxsim twin` in "
            + ", ".join(str(t) for t in twins)
        )
    return found


def find_twins(twins) -> dict[str, tuple[Path, str, dict]]:
    """``{real file name: (twin folder, "ED" or "ES", report)}`` from the
    ``input`` entries of the twins' reports (the file names they were fitted to).

    Raises:
        FileNotFoundError: no report in ``twins``.
        ValueError: a report that is not a twin's, or two twins fitted to files
            of the same name.
    """
    table: dict[str, tuple[Path, str, dict]] = {}
    for path in _reports(twins):
        report = json.loads(path.read_text())
        if "parameters" not in report or "input" not in report:
            raise ValueError(f"{path} is not a report of `jaxsim twin`")
        for phase, key in (("ED", "labels"), ("ES", "es")):
            name = report["input"].get(key)
            if name is None:
                continue
            name = Path(name).name
            if name in table:
                raise ValueError(
                    f"twins {table[name][0]} and {path.parent} were both fitted to a "
                    f"file named {name}; give only one of them"
                )
            table[name] = (path.parent, phase, report)
    return table


def _real_files(real) -> list[Path]:
    files = []
    for item in real:
        item = Path(item)
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.name.endswith(_H5))
        elif item.exists():
            if not item.name.endswith(_H5):
                raise ValueError(
                    f"real: {item} is not an HDF5 file (.h5 with 'image' and 'label')"
                )
            files.append(item)
        else:
            raise FileNotFoundError(f"real: {item} does not exist")
    if not files:
        raise FileNotFoundError("real: no HDF5 files in " + ", ".join(map(str, real)))
    return files


def _with_es_frames(files: list[Path], table: dict) -> list[Path]:
    """``files`` plus, for each ED file whose twin was fitted with ES, the ES
    file the twin names when it lies beside the ED file."""
    out = list(files)
    names = {p.name for p in files}
    for path in files:
        entry = table.get(path.name)
        if entry is None or entry[1] != "ED":
            continue
        es = entry[2]["input"].get("es")
        sibling = None if es is None else path.with_name(Path(es).name)
        if sibling is not None and sibling.name not in names and sibling.exists():
            out.append(sibling)
            names.add(sibling.name)
    return out


def match_cases(real, twins, *, spacing) -> list[TwinCase]:
    """Pair each real file with its twin (see :func:`enhancer_pairs`)."""
    table = find_twins(twins)
    spacing = tuple(float(s) for s in spacing)
    cases = []
    for path in _with_es_frames(_real_files(real), table):
        if path.name not in table:
            raise ValueError(
                f"no twin was fitted to the real file {path} (none of the reports in "
                f"{', '.join(map(str, twins))} names {path.name}); fit one with "
                f"`jaxsim twin {path} --out DIR`"
            )
        folder, phase, report = table[path.name]
        fitted = tuple(float(s) for s in report["input"].get("spacing_mm", spacing))
        if not np.allclose(fitted, spacing, atol=1e-3):
            raise ValueError(
                f"the twin in {folder} was fitted with spacing {list(fitted)} mm, not "
                f"the given {list(spacing)}: it lies on another grid than {path.name}"
            )
        params = report["parameters"]
        cardiac = 0.0
        if phase == "ES":
            if params.get("es_phase") is None:
                raise ValueError(f"the twin in {folder} has no ES phase")
            cardiac = float(params["es_phase"])
        cases.append(TwinCase(path, folder, phase, cardiac, params, fitted))
    return cases


def render_case(case: TwinCase, key) -> tuple[np.ndarray, np.ndarray]:
    """The twin's physics rendering of a case on the real grid: ``(image
    float32 (nz, ny, nx) magnitudes, labels uint8 ACDC (nz, ny, nx))``."""
    subject, geometry = twin_from_parameters(case.parameters)
    cine = simulate_cine(key, subject, geometry, cardiac_phases=(case.cardiac_phase,))
    image = np.asarray(jnp.abs(cine.image[0]), np.float32)
    labels = task_labels(np.asarray(cine.labels[0]), ACDC)
    return image, labels


@dataclasses.dataclass(frozen=True)
class EnhancerPairs:
    """Paired 2D slices at the network's pixel size.

    Attributes:
        labels: ``(N, H, W)`` uint8 ACDC labels of the twin (the condition).
        physics: ``(N, H, W)`` float32 normalised physics renderings (0 to about
            1, :func:`~jaxsim.train.normalize`).
        real: ``(N, H, W)`` float32 normalised real images (the target).
        real_labels: ``(N, H, W)`` uint8 ACDC labels of the real images.
        names: ``N`` strings ``"<file>:<slice>"``.
    """

    labels: np.ndarray
    physics: np.ndarray
    real: np.ndarray
    real_labels: np.ndarray
    names: tuple

    def __post_init__(self):
        n = self.labels.shape
        for name in ("physics", "real", "real_labels"):
            if getattr(self, name).shape != n:
                raise ValueError(
                    f"{name} must have the labels' shape {n}; got "
                    f"{getattr(self, name).shape}"
                )
        if len(n) != 3 or n[0] == 0:
            raise ValueError(f"no slice pairs (labels of shape {n})")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, key, n: int):
        """``n`` random pairs (with replacement): ``(labels, physics, real)``."""
        idx = np.asarray(jax.random.randint(key, (n,), 0, len(self)))
        return self.labels[idx], self.physics[idx], self.real[idx]

    def describe(self) -> dict:
        files = sorted({s.rsplit(":", 1)[0] for s in self.names})
        return {"kind": "twin pairs", "slices": len(self), "files": files}


def enhancer_pairs(
    real,
    twins,
    *,
    spacing,
    preprocessing: Preprocessing,
    seed: int = 0,
    all_slices: bool = False,
    progress: bool = False,
) -> EnhancerPairs:
    """Slice pairs (twin rendering, real image) for training the enhancer.

    Each real HDF5 file (``image``, ``label``; the layout of the shared ACDC
    data) is matched with the twin whose ``jaxsim twin`` report names it: as
    the ED labels (rendered at cardiac phase 0) or as the ES labels (rendered at
    the twin's ``es_phase``). An ED file whose twin was fitted with ES brings
    the ES file the report names when it lies in the same folder. The twin
    (:func:`jaxsim.fit.twin_from_parameters`) is simulated as a bSSFP cine on
    the real grid (:func:`jaxsim.mr.simulate_cine`, noise-free defaults, key
    ``fold_in(key(seed), file index)``); both stacks go through
    ``preprocessing`` (in-plane resampling to its pixel size and shape,
    per-slice percentile normalisation), and every slice where the twin or the
    real labels show the heart becomes a pair.

    Args:
        real: HDF5 files or folders of them.
        twins: twin folders (holding ``report.json``) or folders of them.
        spacing: ``(sz, sy, sx)`` mm of the real files (HDF5 stores none); must
            be the spacing the twins were fitted with.
        preprocessing: the network's slice layout.
        seed: key of the renderings.
        all_slices: keep slices without any heart label too.
        progress: tqdm bar over the files.

    Returns:
        :class:`EnhancerPairs`.

    Raises:
        FileNotFoundError: a missing file or folder, or no twin report.
        ValueError: a real file without a twin, or whose grid (shape or
            spacing) is not its twin's.
    """
    from tqdm.auto import tqdm

    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(s > 0 for s in spacing):
        raise ValueError(
            f"spacing must be three positive mm (sz, sy, sx); got {spacing}"
        )
    cases = match_cases(real, twins, spacing=spacing)
    root = jax.random.key(seed)
    parts = {k: [] for k in ("labels", "physics", "real", "real_labels", "names")}
    for i, case in enumerate(tqdm(cases, desc="render twins", disable=not progress)):
        image, labels = read_image_label_h5(case.real)
        grid = tuple(case.parameters["grid_shape"])
        if image.shape != grid:
            raise ValueError(
                f"{case.real} has shape {image.shape}, its twin in {case.twin} the "
                f"grid {grid}: the twin lies on another grid"
            )
        physics, twin_lab = render_case(case, jax.random.fold_in(root, i))
        p_img, p_lab = preprocessing.volume_slices(physics, twin_lab, spacing[1:])
        r_img, r_lab = preprocessing.volume_slices(image, labels, spacing[1:])
        p_lab, r_lab = np.asarray(p_lab, np.uint8), np.asarray(r_lab, np.uint8)
        keep = np.arange(len(p_lab))
        if not all_slices:
            heart = (p_lab > 0).any(axis=(1, 2)) | (r_lab > 0).any(axis=(1, 2))
            keep = np.flatnonzero(heart)
        parts["labels"].append(p_lab[keep])
        parts["physics"].append(np.asarray(p_img, np.float32)[keep])
        parts["real"].append(np.asarray(r_img, np.float32)[keep])
        parts["real_labels"].append(r_lab[keep])
        parts["names"] += [f"{case.real.name}:{k}" for k in keep]
    names = tuple(parts.pop("names"))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return EnhancerPairs(**arrays, names=names)
