"""Sites: folders of private labelled images, split into training and held-out
cases; and a helper that lays out ACDC patients as one site per pathology group.

A site is a folder that :func:`jaxsim.io.find_cases` reads (ACDC as distributed,
NIfTI pairs, HDF5 ``image``/``label`` files). Its cases never leave it: the site
trains on them and reports only parameters and summary metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from jaxsim.io import LabelledCase, atomic_path, find_cases, load_case
from jaxsim.labels import ACDC
from jaxsim.train import (
    Preprocessing,
    patient_phases,
    slices_from_cases,
    split_patients,
)

__all__ = [
    "ACDC_GROUPS",
    "Site",
    "SiteError",
    "acdc_group",
    "load_site",
    "site_seed",
    "split_acdc_sites",
]

#: ACDC training patients by pathology group: number ranges (inclusive).
ACDC_GROUPS = {
    "DCM": (1, 20),  # dilated cardiomyopathy
    "HCM": (21, 40),  # hypertrophic cardiomyopathy
    "MINF": (41, 60),  # myocardial infarction
    "NOR": (61, 80),  # normal
    "RV": (81, 100),  # abnormal right ventricle
}
_PATIENT = re.compile(r"patient(\d+)")


class SiteError(ValueError):
    """A site that cannot take part: no cases, an unreadable file, too few cases.

    The message names the site and the cause; other sites are unaffected.
    """


@dataclasses.dataclass(frozen=True)
class Site:
    """One site's data, split once.

    Attributes:
        name: the site's name (its folder name).
        train: cases the site trains on.
        test: held-out cases the site evaluates on (never trained on).
        split: ``"patient"`` (whole patients held out) or ``"case"`` (a site with
            a single patient holds out its last volume, e.g. ES of ED/ES).
        phases: ``{case name: (patient, phase)}``.
    """

    name: str
    train: tuple[LabelledCase, ...]
    test: tuple[LabelledCase, ...]
    split: str
    phases: dict

    def slices(self, preprocessing: Preprocessing):
        """The training cases as ``(images (N, H, W) float32, labels (N, H, W)
        uint8)`` at the network's pixel size."""
        images, labels, _ = slices_from_cases(list(self.train), preprocessing)
        return images, labels


def acdc_group(patient: int) -> str:
    """The ACDC pathology group of a training patient number (1..100).

    Raises:
        ValueError: a number outside 1..100 (ACDC's test patients are not
            grouped by number; their ``Info.cfg`` names the group).
    """
    for group, (lo, hi) in ACDC_GROUPS.items():
        if lo <= patient <= hi:
            return group
    raise ValueError(
        f"patient number must lie in 1..100 to be grouped by number; got {patient} "
        "(give a folder whose Info.cfg names the Group)"
    )


def load_site(
    path: str | os.PathLike,
    *,
    spacing=None,
    label_map=None,
    test_fraction: float = 0.5,
    seed: int = 0,
) -> Site:
    """Read a site folder and split it into training and held-out cases.

    Patients (``NAME_frameXX`` volumes group by ``NAME``) are split by
    :func:`jaxsim.train.split_patients`; a site with one patient holds out its
    last volume instead (``split="case"``).

    Args:
        path: the site's folder.
        spacing: ``(sz, sy, sx)`` mm for files that store none (HDF5).
        label_map: ``{file value: ACDC value}``.
        test_fraction: share of patients held out, in (0, 1).
        seed: seed of the split.

    Raises:
        SiteError: the folder is missing or empty, a file cannot be read, or the
            site has fewer than 2 volumes (one to train, one to test).
    """
    path = Path(path)
    name = path.name or str(path)
    try:
        files = find_cases(path)
    except (FileNotFoundError, ValueError) as err:
        raise SiteError(f"site {name!r} has no usable cases: {err}") from None
    cases = []
    for f in files:
        try:
            cases.append(
                load_case(
                    f, spacing=spacing, label_map=label_map, n_classes=ACDC.n_classes
                )
            )
        except (OSError, ValueError, KeyError) as err:
            raise SiteError(
                f"site {name!r}: cannot read case {f.name} ({f.image}): {err}"
            ) from None
    if len(cases) < 2:
        raise SiteError(
            f"site {name!r} holds {len(cases)} labelled volume(s); it needs at least "
            "2 (one to train on, one held out)"
        )
    phases = patient_phases(cases)
    patients = sorted({p for p, _ in phases.values()})
    if len(patients) >= 2:
        test_patients, _ = split_patients(patients, test_fraction, seed)
        held = {c.name for c in cases if phases[c.name][0] in test_patients}
        split = "patient"
    else:
        held = {sorted(c.name for c in cases)[-1]}
        split = "case"
    return Site(
        name=name,
        train=tuple(c for c in cases if c.name not in held),
        test=tuple(c for c in cases if c.name in held),
        split=split,
        phases=phases,
    )


def _info_group(folder: Path) -> str | None:
    info = folder / "Info.cfg"
    if info.exists():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Group" and value.strip():
                return value.strip()
    return None


def split_acdc_sites(
    source: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, list[str]]:
    """Lay out the ACDC patients under ``source`` as one site folder per
    pathology group under ``out``, by symbolic links (no image is copied).

    The group is the patient folder's ``Info.cfg`` ``Group`` where there is one,
    else the ACDC training numbering (:data:`ACDC_GROUPS`). ``out/manifest.json``
    records ``{site: [patients]}`` and the source folder.

    Args:
        source: a folder of ACDC cases (as distributed, or ``patientNNN_frameXX``
            HDF5/NIfTI files).
        out: where the site folders go (created; must not hold sites already).
        overwrite: replace the site folders and manifest of an earlier split.

    Returns:
        ``{site: [patient names]}`` of the groups that have patients.

    Raises:
        FileExistsError: ``out`` holds a split and ``overwrite`` is not set.
        ValueError: no case under ``source`` is named ``patientNNN...``.
    """
    source, out = Path(source).absolute(), Path(out)
    files = find_cases(source)
    links: dict[str, list[tuple[str, Path]]] = {}
    for f in files:
        m = _PATIENT.search(f.name)
        if m is None:
            continue
        group = _info_group(f.image.parent) or acdc_group(int(m.group(1)))
        items = [f.image] + ([f.labels] if f.labels is not None else [])
        info = f.image.parent / "Info.cfg"
        if info.exists():
            items.append(info)
        for item in items:
            links.setdefault(group, []).append((f"patient{m.group(1)}", item))
    if not links:
        raise ValueError(f"no case under {source} is named patientNNN (ACDC layout)")
    manifest = out / "manifest.json"
    if manifest.exists() and not overwrite:
        raise FileExistsError(
            f"{out} holds a site split already (manifest.json); choose another "
            "folder or overwrite it"
        )
    out.mkdir(parents=True, exist_ok=True)
    sites = {}
    for group, items in sorted(links.items()):
        folder = out / group
        if folder.exists():
            if not overwrite:
                raise FileExistsError(f"{folder} exists; choose another output folder")
            for old in folder.rglob("*"):
                if old.is_symlink() or old.is_file():
                    old.unlink()
        for patient, item in items:
            # ACDC as distributed keeps one folder per patient (Info.cfg inside)
            target_dir = folder / patient if item.parent != source else folder
            target_dir.mkdir(parents=True, exist_ok=True)
            link = target_dir / item.name
            if not link.exists():
                link.symlink_to(item)
        sites[group] = sorted({p for p, _ in items})
    with atomic_path(manifest, overwrite=True, what="site manifest") as tmp:
        payload = {"source": str(source), "sites": sites}
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    return sites


def site_seed(name: str) -> int:
    """A stable 31-bit integer naming a site (its PRNG stream)."""
    from jaxsim.random import stream_id

    return stream_id(f"federated.site.{name}")
