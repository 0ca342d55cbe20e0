"""Virtual-population designs: which subjects, phases and contrasts make a database.

A design is data: a preset (subject counts, image grid, acquisition options) and a
seed. Every record is identified by ``(subject, phase, contrast)`` and everything
about it derives from the seed through named streams (:func:`jaxsim.random.stream`)
and ``jax.random.fold_in`` of indices, so any record, shard or resumed run
regenerates bit for bit.

Record order is subject-major, then cardiac phase (ED, ES), then contrast; a
"label set" is one ``(subject, phase)`` pair, whose label map all its contrasts
share.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim.mr import MRAcquisition, seed2021_contrasts
from jaxsim.phantoms import (
    Subject,
    end_systolic_phase,
    sample_subjects,
    short_axis_geometry,
)
from jaxsim.random import stream

__all__ = ["Preset", "PRESETS", "PopulationDesign", "SubjectSource", "parse_shard"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named database design.

    Attributes:
        name: preset name.
        description: one line for ``--help`` and file attributes.
        n_male, n_female: subjects of each sex.
        shape: ``(nz, ny, nx)`` short-axis grid.
        spacing: ``(sz, sy, sx)`` mm.
        contrasts: indices into the 27 seed-2021 contrasts (SNR-major, then
            sequence, then tissue draw) used per subject.
        n_coils: receive coils (Biot-Savart loops; 1 is a uniform coil).
        oversample: in-plane refinement of the simulation grid (k-space crop).
        field: tesla, for the tissue property distributions.
        contrast_batch: contrasts simulated together (bounds memory).
    """

    name: str
    description: str
    n_male: int
    n_female: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    contrasts: tuple[int, ...]
    n_coils: int = 4
    oversample: int = 2
    field: float = 1.5
    contrast_batch: int = 9


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        description="2 subjects (1 male, 1 female) x 3 contrasts x ED/ES on a small "
        "grid whose 10 slices cover the whole LV: a one-minute demonstration",
        n_male=1,
        n_female=1,
        shape=(10, 96, 96),
        spacing=(10.0, 3.0, 3.0),
        contrasts=(0, 13, 26),
        n_coils=4,
        oversample=2,
        contrast_batch=3,
    ),
    "seed2021": Preset(
        name="seed2021",
        description="the seed-2021 design: 30 male + 30 female subjects x 27 "
        "contrasts (3 SNR x 3 sequences x 3 tissue draws) x ED/ES = 3240 volumes",
        n_male=30,
        n_female=30,
        shape=(12, 192, 192),
        spacing=(8.0, 1.6, 1.6),
        contrasts=tuple(range(27)),
        n_coils=4,
        oversample=2,
        contrast_batch=9,
    ),
}


def parse_shard(spec: str | None) -> tuple[int, int]:
    """Parse ``"i/N"`` (0 <= i < N) into ``(i, N)``; ``None`` means ``(0, 1)``."""
    if spec is None:
        return 0, 1
    try:
        i, n = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(
            f"--shard must look like i/N (e.g. 0/4); got {spec!r}"
        ) from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/N needs N >= 1 and 0 <= i < N; got {spec!r}")
    return i, n


@dataclasses.dataclass(frozen=True, eq=False)
class SubjectSource:
    """Subjects that come from elsewhere than the population statistics.

    ``jaxsim generate`` draws them from a learned shape generator
    (:func:`jaxsim.train.sample_shapes`); a design with a source simulates them
    exactly as it would its sampled subjects (same grid, contrasts, phases,
    noise streams).

    Attributes:
        subjects: a concrete batched ``Subject`` ``(n,)`` (residual deformation
            allowed; its ``control`` is stored per subject in the database as
            ``subjects/deformation_control``).
        description: JSON-able provenance recorded in the database's ``design``
            attribute (e.g. ``{"kind": "glo-shape", "model": folder, "checksum":
            sha256, "seed": s, "deformation": {...}}``): resuming or verifying a
            database compares it, so a changed model is detected.

        materials: optional ``(n, 9, g, g, g)`` material maps, one per subject
            (log-modulations of PD/T1/T2 on the box attached to its heart, see
            :mod:`jaxsim.mr`; e.g. :func:`jaxsim.train.sample_materials`):
            :func:`jaxsim.population.simulate_label_set` images every record of
            the subject with its map. Their provenance belongs in
            ``description["material"]``.
    """

    subjects: Subject
    description: dict
    materials: object = None

    def __post_init__(self):
        if not isinstance(self.subjects, Subject):
            raise TypeError(
                f"subjects must be a Subject; got {type(self.subjects).__name__}"
            )
        if jnp.ndim(self.subjects.edv) != 1 or jnp.shape(self.subjects.edv)[0] < 1:
            raise ValueError(
                "subjects must be a batched Subject of n >= 1 subjects; got edv "
                f"shape {jnp.shape(self.subjects.edv)}"
            )
        if not isinstance(self.description, dict):
            raise TypeError("description must be a JSON-able dict")
        if self.materials is not None:
            m = np.asarray(self.materials, np.float32)
            n = int(jnp.shape(self.subjects.edv)[0])
            if m.ndim != 5 or m.shape[0] != n:
                raise ValueError(
                    f"materials must be (n={n}, C, g1, g2, g3) maps, one per "
                    f"subject; got shape {m.shape}"
                )
            if not np.all(np.isfinite(m)):
                raise ValueError("materials must be finite")
            object.__setattr__(self, "materials", m)

    @property
    def n(self) -> int:
        return int(jnp.shape(self.subjects.edv)[0])


@dataclasses.dataclass(frozen=True)
class PopulationDesign:
    """A preset realised with a seed: the subjects and every record's parameters.

    With a ``source`` (:class:`SubjectSource`) the subjects are the source's and
    the preset's ``n_male``/``n_female`` are not used; everything else (grid,
    contrasts, phases, noise) is the preset's, drawn from ``seed``.
    """

    preset: Preset
    seed: int
    source: SubjectSource | None = None

    def __post_init__(self):
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed}")
        if self.source is not None and not isinstance(self.source, SubjectSource):
            raise TypeError(
                f"source must be a SubjectSource or None; got "
                f"{type(self.source).__name__}"
            )

    # ---- sizes
    @property
    def n_subjects(self) -> int:
        if self.source is not None:
            return self.source.n
        return self.preset.n_male + self.preset.n_female

    @property
    def n_phases(self) -> int:
        return 2

    @property
    def n_contrasts(self) -> int:
        return len(self.preset.contrasts)

    @property
    def n_label_sets(self) -> int:
        return self.n_subjects * self.n_phases

    @property
    def n_records(self) -> int:
        return self.n_label_sets * self.n_contrasts

    # ---- keys and parameters
    @property
    def key(self):
        return jax.random.key(self.seed)

    def subjects(self) -> Subject:
        """All subjects, males first (a batched Subject of ``n_subjects``), or
        the source's."""
        if self.source is not None:
            return self.source.subjects
        p = self.preset
        parts = []
        if p.n_male:
            parts.append(
                sample_subjects(
                    stream(self.key, "population.male"), p.n_male, sex="male"
                )
            )
        if p.n_female:
            parts.append(
                sample_subjects(
                    stream(self.key, "population.female"), p.n_female, sex="female"
                )
            )
        return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)

    def subject(self, s: int) -> Subject:
        return jax.tree_util.tree_map(lambda a: a[s], self.subjects())

    def material(self, s: int):
        """Subject ``s``'s material map ``(C, g1, g2, g3)`` (float32), or
        ``None`` (constant tissue properties)."""
        if self.source is None or self.source.materials is None:
            return None
        return self.source.materials[s]

    def geometry(self, subject: Subject):
        return short_axis_geometry(
            subject, spacing=self.preset.spacing, shape=self.preset.shape
        )

    def cardiac_phases(self, subject: Subject) -> tuple[float, float]:
        """End-diastole (0) and the subject's end-systolic phase."""
        return 0.0, float(end_systolic_phase(subject))

    def contrasts(self, s: int):
        """``(tissue, sequence, snr, index)`` of subject ``s``'s contrasts."""
        tissue, seq, snr, idx = seed2021_contrasts(
            jax.random.fold_in(stream(self.key, "population.contrasts"), s),
            field=self.preset.field,
        )
        sel = jnp.asarray(self.preset.contrasts)
        pick = lambda a: a[sel]  # noqa: E731
        return (
            jax.tree_util.tree_map(pick, tissue),
            jax.tree_util.tree_map(pick, seq),
            snr[sel],
            idx[sel],
        )

    def noise_key(self, label_set: int):
        """Key of label set ``s * 2 + phase``; contrast ``c`` folds in ``c``."""
        return jax.random.fold_in(stream(self.key, "population.noise"), label_set)

    def acquisition(self, snr=None) -> MRAcquisition:
        """The preset's receive chain (noise by ``snr``, per record)."""
        p = self.preset
        return MRAcquisition(snr=snr, n_coils=p.n_coils, oversample=p.oversample)

    # ---- indexing
    def record_index(self, subject: int, phase: int, contrast: int) -> int:
        return (subject * self.n_phases + phase) * self.n_contrasts + contrast

    def label_sets_for_shard(self, shard: int, n_shards: int) -> list[int]:
        """Label sets of shard ``i`` of ``N``: a contiguous, balanced block."""
        bounds = np.linspace(0, self.n_label_sets, n_shards + 1).round().astype(int)
        return list(range(bounds[shard], bounds[shard + 1]))

    def describe(self) -> dict:
        """JSON-able summary stored in the database's attributes."""
        return {
            "preset": dataclasses.asdict(self.preset),
            "seed": self.seed,
            "n_subjects": self.n_subjects,
            "n_records": self.n_records,
            "n_label_sets": self.n_label_sets,
            "record_order": "subject, phase (ED, ES), contrast",
            **(
                {}
                if self.source is None
                else {"subject_source": self.source.description}
            ),
        }
