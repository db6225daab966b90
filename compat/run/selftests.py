"""compat selftests: the kernel's own BPF selftests, judged by their own annotations, on every
point release of a stable series.

The objects are built once into the cache from the series' Debian linux-source package
(compat/objects/selftests.py); those that carry expectations (compat/objects/expectations.py)
are checked on each release of the range by one Checker run (the check command's entry point:
kernels fetched in parallel with guests booting, verdicts from the result cache on a second
run), each program judged against its annotations on each release (compat/results/expectation.py).
The sweep then says per release which expectations are not met, where each program's outcome
changed (the two consecutive judged releases, with the BPF backports between them from the
changelogs as suspects), and which expectations are stale within the series.

With --privilege (several modes), each release is checked under each mode in one guest (each a
column, as in check); a program's outcomes run along one mode's releases, so a change or a stale
expectation is always within one privilege, and the unprivileged column is judged against the
tests' unprivileged expectations (compat/results/expectation.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import Any

from compat.arch import DEFAULT_ARCH
from compat.cache import Cache
from compat.errors import UserError
from compat.kernels.changelog import Suspects
from compat.kernels.matrix import KernelSpec
from compat.kernels.series import release_versions, select_range
from compat.kernels.sources import KernelStore
from compat.objects.objfile import BpfObject
from compat.results.model import ObjectInfo, ProgramResult, RunResult
from compat.results.privilege import ROOT, column

from .bisect import SUSPECTS_ARE, _suspects
from .checker import Checker, CheckOptions

FIXED_LATER = "fixed_later"  # not met on the older releases, met on the newer
BROKEN_LATER = "broken_later"  # met on the older releases, not met on the newer
STALE_WORDS = {
    FIXED_LATER: "not met on older releases, met from {after}: the kernel fixed the behaviour the test was "
    "written for in the series (the older releases lack the fix; the expectation is stale there)",
    BROKEN_LATER: "met up to {before}, not met from {after}: a regression in a newer point release, or a test "
    "written for another kernel than the series' newer releases",
}


def release_specs(store: KernelStore, spec: KernelSpec, first: str | None, last: str | None) -> list[KernelSpec]:
    """One spec per point release of the series from ``first`` to ``last`` (UserError: a series the
    archive lacks, a bound outside it, swapped bounds); each spec's id is its version, with -arm64
    for arm64's releases (6.12.43-arm64, as bisect names them)."""
    chosen = select_range(release_versions(store, spec), spec.series or "?", first, last)
    tail = "" if spec.arch == DEFAULT_ARCH else f"-{spec.arch}"
    return [dataclasses.replace(spec, id=f"{v}{tail}", label=f"Debian {v}{tail.replace('-', ' ')}", version=v,
                                releases=None, order=i) for i, v in enumerate(chosen)]  # fmt: skip


@dataclass
class Outcome:
    """One program's expectation on one release."""

    version: str
    verdict: str
    met: bool | None
    why: str | None
    privilege: str = ROOT  # the mode it was checked under (--privilege)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Change:
    """Where a program's expectation stopped (or started) being met: two consecutive judged releases."""

    object: str
    program: str
    before: Outcome
    after: Outcome
    suspects: Suspects

    @property
    def privilege(self) -> str:
        """The mode both outcomes were checked under."""
        return self.after.privilege

    def to_json(self) -> dict[str, Any]:
        return {"object": self.object, "program": self.program, "privilege": self.privilege,
                "before": self.before.to_json(),
                "after": self.after.to_json(), "suspects_note": self.suspects.note or None,
                "suspects": [c.to_json() for c in self.suspects.commits]}  # fmt: skip


@dataclass
class Stale:
    """An expectation whose outcome differs between the oldest and the newest judged release."""

    object: str
    program: str
    kind: str  # FIXED_LATER or BROKEN_LATER
    before: str  # the last release with the old outcome
    after: str  # the first with the new
    privilege: str = ROOT  # the mode whose releases it runs along

    @property
    def words(self) -> str:
        return STALE_WORDS[self.kind].format(before=self.before, after=self.after)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "words": self.words}


@dataclass
class SweepResult:
    """Everything one `compat selftests` found."""

    series: str
    source: str  # the linux-source package=version the objects were built from
    releases: list[str]
    run: RunResult
    outcomes: dict[tuple[str, str], list[Outcome]]  # (object, program) -> per release, oldest first
    changes: list[Change]
    stale: list[Stale]
    failed: dict[str, str]  # release -> why it gave no verdict
    unannotated: int = 0  # built objects without any expectation: not checked
    not_built: int = 0
    wall_seconds: float = 0.0
    privileges: tuple[str, ...] = ()  # --privilege's modes; (): root alone

    @property
    def modes(self) -> tuple[str, ...]:
        """The privileges checked, in the order given (root alone without --privilege)."""
        return self.privileges or (ROOT,)

    @property
    def columns(self) -> list[tuple[str, str]]:
        """(release, privilege) of every column, release by release."""
        return [(v, m) for v in self.releases for m in self.modes]

    def not_met(self, version: str, privilege: str | None = None) -> list[tuple[tuple[str, str], Outcome]]:
        """The programs whose expectation is not met on one release (under one privilege, or any)."""
        return [
            (key, o) for key, outs in self.outcomes.items() for o in outs
            if o.version == version and o.met is False and privilege in (None, o.privilege)
        ]  # fmt: skip

    def counts(self, version: str, privilege: str | None = None) -> dict[str, int]:
        """Met, not met and not judged expectations on one release (under one privilege, or any)."""
        here = [o for outs in self.outcomes.values() for o in outs
                if o.version == version and privilege in (None, o.privilege)]  # fmt: skip
        return {"met": sum(o.met is True for o in here), "not_met": sum(o.met is False for o in here),
                "not_judged": sum(o.met is None for o in here)}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "compat-selftests/v1",
            "series": self.series,
            "source": self.source,
            "releases": self.releases,
            "privileges": list(self.modes),
            "objects": [dataclasses.asdict(o) for o in self.run.objects],
            "unannotated_objects": self.unannotated,
            "objects_not_built": self.not_built,
            "failed_releases": [{"version": v, "error": e} for v, e in self.failed.items()],
            "per_release": [
                {
                    "version": v,
                    "privilege": m,
                    **self.counts(v, m),
                    "failing": [{"object": k[0], "program": k[1], **o.to_json()} for k, o in self.not_met(v, m)],
                }
                for v, m in self.columns
            ],
            "changes": [c.to_json() for c in self.changes],
            "stale": [s.to_json() for s in self.stale],
            "suspects_are": SUSPECTS_ARE,
            "programs": [
                {"object": k[0], "program": k[1], "outcomes": [o.to_json() for o in outs]}
                for k, outs in self.outcomes.items()
            ],
            "wall_seconds": self.wall_seconds,
        }


def outcomes_of(
    results: list[ProgramResult], releases: list[str], privileges: tuple[str, ...] = ()
) -> dict[tuple[str, str], list[Outcome]]:
    """Each annotated program's outcome per release, privilege by privilege (in the order given),
    each in release order. A result's kernel is its column: the release, or 'release (mode)'."""
    modes = privileges or (ROOT,)
    where = {column(v, m): (i, j) for i, v in enumerate(releases) for j, m in enumerate(modes)}
    out: dict[tuple[str, str], list[Outcome]] = {}
    for r in results:
        e = r.expectation
        if e is None or r.kernel not in where:
            continue
        i, j = where[r.kernel]
        outcome = Outcome(releases[i], r.verdict, e.get("met"), e.get("why"), modes[j])
        out.setdefault((r.object, r.program), []).append(outcome)
    for outs in out.values():
        outs.sort(key=lambda o: where[column(o.version, o.privilege)][::-1])
    return out


def transitions(outs: list[Outcome]) -> list[tuple[Outcome, Outcome]]:
    """The consecutive judged releases (met True or False; not judged ones skipped) of one privilege
    whose outcome differs."""
    judged = [o for o in outs if o.met is not None]
    return [(a, b) for a, b in itertools.pairwise(judged) if a.privilege == b.privilege and a.met != b.met]


def stale_of(key: tuple[str, str], outs: list[Outcome]) -> Stale | None:
    """Whether the expectation's outcome at the oldest judged release differs from the newest's
    (``outs``: one privilege's outcomes; stales_of splits several)."""
    judged = [o for o in outs if o.met is not None]
    if len(judged) < 2 or judged[0].met == judged[-1].met:
        return None
    flips = transitions(outs)
    kind = FIXED_LATER if judged[-1].met else BROKEN_LATER
    return Stale(key[0], key[1], kind, flips[-1][0].version, flips[-1][1].version, judged[-1].privilege)


def stales_of(key: tuple[str, str], outs: list[Outcome]) -> list[Stale]:
    """The stale expectations of a program, one privilege at a time."""
    modes = dict.fromkeys(o.privilege for o in outs)
    found = (stale_of(key, [o for o in outs if o.privilege == m]) for m in modes)
    return [s for s in found if s is not None]


def sweep(
    cache: Cache,
    store: KernelStore,
    series: str,
    source: str,
    specs: list[KernelSpec],
    objects: list[BpfObject],
    infos: list[ObjectInfo],
    options: CheckOptions,
    progress: Any = None,
) -> SweepResult:
    """Check the objects on every release of ``specs`` (release_specs) and judge their expectations."""
    if not specs:
        raise UserError(f"no point release of {series} in the range", "see 'compat kernels available SERIES'")
    t0 = time.monotonic()
    checker = Checker(cache, specs, options)
    if progress:
        checker.progress = progress
    run = checker.run(objects, infos)
    releases = [s.id for s in specs]
    outcomes = outcomes_of(run.results, releases, options.privileges)
    by_id = {s.id: s for s in specs}
    pairs: dict[tuple[str, str], Suspects] = {}
    changes = []
    for key, outs in outcomes.items():
        for a, b in transitions(outs):
            if (a.version, b.version) not in pairs:
                pairs[(a.version, b.version)] = _suspects(store, by_id[a.version], by_id[b.version])
            changes.append(Change(key[0], key[1], a, b, pairs[(a.version, b.version)]))
    stale = [s for key, outs in outcomes.items() for s in stales_of(key, outs)]
    # A release that failed fails all its columns: named once, by its release.
    release_of = {column(v, m): v for v in releases for m in options.privileges or (ROOT,)}
    failed = {release_of.get(k.id, k.id): k.error for k in run.kernels if k.error}
    return SweepResult(series, source, releases, run, outcomes, changes, stale, failed,
                       wall_seconds=round(time.monotonic() - t0, 2), privileges=options.privileges)  # fmt: skip


__all__ = [
    "Change", "Outcome", "Stale", "SweepResult", "release_specs", "stale_of", "stales_of", "sweep", "transitions",
]  # fmt: skip
