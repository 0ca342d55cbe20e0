"""Generating a population database: crash-safe, resumable, repairable.

A run commits one label set at a time as a part file in the journal
``FILE.h5.parts/`` (see :mod:`jaxsim.io._journal`); while no older ``FILE.h5``
exists, ``FILE.h5`` is an index whose virtual datasets show the parts finished so
far. The last step writes the single file (:mod:`jaxsim.io._single`), renames it
onto ``FILE.h5`` and deletes the journal. A kill at any moment leaves whole parts
and at most hidden temporaries; ``resume=True`` verifies what is there and
continues. Nothing is ever modified in place.
"""

from __future__ import annotations

import json
import numbers
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._database import Database
from ._errors import (
    CorruptDatabaseError,
    Interrupted,
    OptionError,
    WriteError,
    escape,
)
from ._files import check_writable, exclusive_lock
from ._journal import Journal, run_description, verify_part, write_index
from ._schema import Dims, design_json, file_attrs, identity, scalar
from ._single import Source, remove_stale_temporaries, write_single

__all__ = ["MAX_SEED", "check_seed", "generate_database", "subject_table"]

#: Seeds are 32-bit: larger ones would repeat smaller ones' random streams.
MAX_SEED = 2**32 - 1

_RESUME = {"resume": "resume=True"}
_OVERWRITE = {"overwrite": "overwrite=True"}


def check_seed(value) -> int:
    """Return a design seed ``value`` as an int, or raise naming the allowed range.

    Raises:
        OptionError: not an integer in ``[0, MAX_SEED]``.
    """
    valid = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not valid or not 0 <= value <= MAX_SEED:
        raise OptionError(
            f"{{seed}} must be an integer in [0, {MAX_SEED}]; got {escape(value)}",
            seed="seed",
        )
    return int(value)


def check_shard(design, shard) -> tuple[int, int]:
    """``(i, N)`` validated against the design's label sets."""
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise OptionError(
            f"{{shard}} must be a pair (i, N); got {escape(shard)}", shard="shard"
        ) from None
    if not 1 <= n <= design.n_label_sets or not 0 <= i < n:
        raise OptionError(
            f"{{shard}} i/N needs 1 <= N <= {design.n_label_sets} (the design's "
            f"label sets: {design.n_subjects} subjects x {design.n_phases} phases) "
            f"and 0 <= i < N; got {i}/{n}",
            shard="shard",
        )
    return i, n


def subject_table(subjects) -> dict[str, np.ndarray]:
    """``name -> (n_subjects, ...)`` arrays of a batched ``Subject`` for the
    database's ``subjects`` group: every field, and a residual deformation's
    ``control`` as ``deformation_control`` (its box and bound are static and
    recorded in the design's source description)."""
    out = {}
    for k, v in vars(subjects).items():
        if v is None:  # a sampled population's subjects carry no deformation
            continue
        if hasattr(v, "control"):
            out["deformation_control"] = np.asarray(v.control)
        else:
            out[k] = np.asarray(v)
    return out


def generate_database(
    design,
    path: str | os.PathLike,
    *,
    shard=(0, 1),
    resume: bool = False,
    overwrite: bool = False,
    repair: bool = False,
    progress: Callable | None = None,
    devices=None,
    stop: Callable[[], object] | None = None,
) -> dict:
    """Simulate a design (or one shard of it) into an HDF5 database.

    Crash-safe: killed at any moment (or out of disk space), the run leaves its
    finished label sets in the journal ``path.parts/`` and ``path`` either absent,
    an index of the finished records (readable with :class:`Database`), or the
    previous file untouched; ``resume=True`` continues to arrays bit-identical to
    an uninterrupted run.

    Args:
        design: :class:`jaxsim.population.PopulationDesign`.
        path: output file.
        shard: ``(i, N)``: generate the i-th of N contiguous blocks of label sets,
            ``1 <= N <=`` the design's label sets.
        resume: continue an interrupted run of the same design and shard (or
            verify a finished file); start one if there is none.
        overwrite: replace an existing file (it stays readable, unchanged, until
            the new one is complete) or discard an interrupted run.
        repair: with ``resume``, regenerate records whose stored bytes fail their
            checksum instead of raising.
        progress: optional callable ``progress(n_records_done_now)`` per label set.
        devices: JAX devices to spread contrasts over (default: all local ones).
        stop: optional callable polled between label sets; when it returns a true
            value the run raises :class:`Interrupted` (everything finished so far
            stays on disk).

    Returns:
        Summary dict: records written, skipped, repaired, in the shard, seconds,
        file size.

    Raises:
        OptionError: bad ``seed`` or ``shard``; the files on disk belong to
            another run; an interrupted run exists and neither ``resume`` nor
            ``overwrite`` is set; another process is writing ``path``.
        OutputExistsError: ``path`` exists and neither ``resume`` nor
            ``overwrite`` is set.
        CorruptDatabaseError: resuming, some records fail their checksum and
            ``repair`` is not set.
        WriteError: a write failed (e.g. the disk is full); resume once fixed.
        Interrupted: ``stop()`` asked the run to stop.
    """
    path = Path(path)
    check_seed(design.seed)
    shard = check_shard(design, shard)
    if repair and not resume:
        raise OptionError(
            "{repair_alone} works only with {resume}",
            repair_alone="repair=True",
            **_RESUME,
        )
    check_writable(path, overwrite=True, what="database")
    with exclusive_lock(path, what="database"):
        remove_stale_temporaries(path)
        return _Run(design, path, shard, devices, progress, stop).go(
            resume=resume, overwrite=overwrite, repair=repair
        )


class _Run:
    def __init__(self, design, path, shard, devices, progress, stop):
        self.design, self.path, self.shard = design, path, shard
        self.devices, self.progress, self.stop = devices, progress, stop
        self.dims = Dims.of(design)
        self.todo = design.label_sets_for_shard(*shard)
        self.journal = Journal(path)
        self.ident = identity(design, shard)

    # ------------------------------------------------------------ planning
    def go(self, *, resume, overwrite, repair) -> dict:
        t0 = time.perf_counter()
        base = self._check_existing(resume=resume, overwrite=overwrite)
        done, bad = self._verified(base)
        if bad and not repair:
            raise _bad_records_error(bad, self.reasons)
        pending = [ls for ls in self.todo if ls not in done]
        n_c = self.dims.n_contrasts
        summary = {
            "records_written": 0,
            "records_skipped": (len(self.todo) - len(pending)) * n_c,
            "records_repaired": sum(len(r) for r in bad.values()),
            "records_in_shard": len(self.todo) * n_c,
        }
        if not pending and self.base_done == set(self.todo):
            self.journal.discard()  # everything is in the finished file
        else:
            try:
                self._generate(pending, base, summary)
            except WriteError as err:
                raise WriteError(
                    err.template + "; the records finished so far are safe: free "
                    "space (or fix the disk) and continue with {resume}",
                    err,
                    **{**err.options, **_RESUME},
                ) from err
        summary["seconds"] = time.perf_counter() - t0
        summary["bytes"] = self.path.stat().st_size
        return summary

    def _check_existing(self, *, resume, overwrite) -> Path | None:
        """Decide what on disk this run may use; return a finished file to reuse."""
        if self.journal.exists():
            run = self.journal.read_run()
            if resume:
                if run != run_description(self.design, self.shard):
                    found = {k: run.get(k) for k in self.ident}
                    what = (
                        f"makes {escape(found)}, not {escape(self.ident)}"
                        if found != self.ident
                        else "has another design (preset definition or format)"
                    )
                    raise OptionError(
                        f"cannot resume {escape(self.path)}: its interrupted run "
                        f"({escape(self.journal.folder)}) {what}; pass "
                        "{overwrite} to discard it",
                        **_OVERWRITE,
                    )
            elif overwrite:
                self.journal.discard()
            else:
                raise OptionError(
                    f"an interrupted run of {escape(self.path)} is in "
                    f"{escape(self.journal.folder)}; pass {{resume}} to continue it "
                    "or {overwrite} to start over",
                    **_RESUME,
                    **_OVERWRITE,
                )
        if not self.path.exists():
            return None
        if not resume:
            if self.journal.exists() or overwrite:
                return None  # replaced at the end; readable until then
            check_writable(self.path, overwrite=False, what="database")
        return self._resumable_file()

    def _resumable_file(self) -> Path | None:
        """Check that ``path`` is this run's; return it if it holds records."""
        try:
            db = Database(self.path)
        except (ValueError, OSError) as err:
            if self.journal.exists():
                return None  # a run to replace it is under way (overwrite)
            raise OptionError(
                f"cannot resume {escape(self.path)}: {escape(err)}; pass "
                "{overwrite} to replace it",
                **_OVERWRITE,
            ) from err
        with db:
            attrs = db.attrs
            found = {k: scalar(attrs.get(k)) for k in self.ident}
            same = found == self.ident and db.design == json.loads(
                design_json(self.design)
            )
            layout, version, complete = db.layout, db.format_version, db.complete
        if not same:
            if self.journal.exists():
                return None  # a run to replace it is under way (overwrite)
            raise OptionError(
                f"cannot resume {escape(self.path)}: it holds {escape(found)}, not "
                f"{escape(self.ident)} (or another design); pass {{overwrite}} to "
                "replace it",
                **_OVERWRITE,
            )
        if layout == "journal":
            return None  # an index: the records are in the journal
        if version < 2 and not complete:
            raise OptionError(
                f"cannot resume {escape(self.path)}: an older jaxsim wrote it in "
                "place and did not finish; pass {overwrite} to start over",
                **_OVERWRITE,
            )
        return self.path

    def _verified(self, base: Path | None) -> tuple[set[int], dict[int, list]]:
        """Label sets already done, and the bad ones: label set -> records."""
        done: set[int] = set()
        self.base_done: set[int] = set()
        self.good_parts: set[int] = set()
        bad: dict[int, list] = {}
        reasons: dict[int, str] = {}
        self.journal.remove_temporaries()
        for ls, part in self.journal.committed().items():
            if ls not in self.todo:
                continue
            why = verify_part(part, ls, self.design, self.dims)
            if why is None:
                done.add(ls)
                self.good_parts.add(ls)
            else:
                bad[ls], reasons[ls] = list(self.dims_rows(ls)), f"{part}: {why}"
        if base is not None:
            with Database(base) as db:
                flags = db.complete_flags
                for ls in self.todo:
                    rows = self.dims_rows(ls)
                    problems = {r: db.verify(r) for r in rows}
                    problems = {r: w for r, w in problems.items() if w}
                    if problems and ls not in done:
                        bad[ls] = sorted(problems)
                        reasons[ls] = f"{base}: {next(iter(problems.values()))}"
                    elif not problems and flags[rows].all():
                        done.add(ls)
                        self.base_done.add(ls)
        self.reasons = reasons
        return done, {ls: bad[ls] for ls in bad if ls not in done}

    def dims_rows(self, ls: int) -> list[int]:
        r = self.dims.rows(ls)
        return list(range(r.start, r.stop))

    # ------------------------------------------------------------ writing
    def _generate(self, pending, base, summary) -> None:
        from jaxsim.population import simulate_label_set

        subjects = self.design.subjects()
        subject_arrays = subject_table(subjects)
        if not self.journal.exists():
            self.journal.create(self.design, self.shard)
        if base is None and not self._holds_other_file():
            write_index(
                self.path,
                self.journal,
                self.design,
                self.shard,
                self.dims,
                subject_arrays,
                self.todo,
            )
        for ls, part in self.journal.committed().items():
            if ls not in self.good_parts:  # bad: regenerated, or in the old file
                os.unlink(part)
        n_c = self.dims.n_contrasts
        for ls in pending:
            self._maybe_stop(summary)
            result = simulate_label_set(
                self.design, ls, subjects=subjects, devices=self.devices
            )
            self.journal.write_part(self.design, result, self.dims)
            summary["records_written"] += n_c
            if self.progress is not None:
                self.progress(n_c)
        self._maybe_stop(summary)
        parts = self.journal.committed()  # verified at the start, or new
        sources = [
            Source(ls, parts[ls], True, verified=True)
            if ls in parts
            else Source(ls, base, False, verified=True)
            for ls in self.todo
        ]
        attrs = file_attrs(self.design, self.shard, layout="single")
        write_single(
            self.path,
            attrs=attrs,
            dims=self.dims,
            subjects=subject_arrays,
            sources=sources,
            complete=True,
            stop=self.stop,
            stop_message=self._stop_message(summary),
        )
        self.journal.discard()

    def _holds_other_file(self) -> bool:
        """Whether ``path`` is a file this run replaces only at the end."""
        if not self.path.exists():
            return False
        try:
            with Database(self.path) as db:
                return db.layout != "journal"
        except (ValueError, OSError):
            return True  # unreadable: replaced only by the finished file

    def _maybe_stop(self, summary) -> None:
        reason = self.stop() if self.stop is not None else None
        if reason:
            template, options = self._stop_message(summary)
            raise Interrupted(template, reason=reason, **options)

    def _stop_message(self, summary) -> tuple[str, dict]:
        safe = set(self.journal.committed()) | self.base_done
        done = len(safe & set(self.todo)) * self.dims.n_contrasts
        where = escape(self.journal.folder if self.journal.exists() else self.path)
        kept = (
            f"; {escape(self.path)} stays as it was until the run completes"
            if self.journal.exists() and self._holds_other_file()
            else ""
        )
        return (
            f"stopped at a record boundary: {done} of {summary['records_in_shard']} "
            f"records of the shard are safe in {where}{kept}; continue with "
            "{resume}",
            _RESUME,
        )


def _bad_records_error(bad: dict[int, list], reasons: dict[int, str]):
    from ._database import _ranges

    records = sorted(r for rows in bad.values() for r in rows)
    first = reasons[min(bad)]
    n = len(records)
    which = f"record {records[0]} is" if n == 1 else f"{n} records are"
    return CorruptDatabaseError(
        f"{which} corrupt or unreadable ({_ranges(records)}) "
        f"(first: {escape(first)}); regenerate them with {{repair}}",
        records=records,
        reason=first,
        repair="resume=True, repair=True",
    )
