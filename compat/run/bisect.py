"""`compat bisect`: the point release of a stable series where a program's verdict changed.

The search is a pure function (search()) of the series' releases and a verdict source: a
function that checks a batch of releases and says, per release, each program's verdict
(accepted or rejected; None when that release gave none: a kernel that could not be fetched
or booted, an infrastructure error, a verifier time limit). It checks the oldest and the newest
release of the range, then, for every program whose verdict differs between them, narrows the
interval where it changed until the two releases are consecutive (or only releases without a
verdict lie between them). The probes are shared: one batch per round holds every program's
next probe, and every batch checks all the objects, so two programs that changed at the same
release cost the probes of one. With ``width`` > 1 each program's interval is split at several
releases per round (the batch's kernels boot in parallel): fewer rounds for more kernels.

Without ``exhaustive`` the verdict is assumed monotonic between the ends: a program whose
verdict is the same at both ends is assumed unchanged in between (a change later undone is not
seen). With ``exhaustive`` every release is checked and every change reported.

CheckSource is the verdict source of the command: each batch is one run of the Checker (the
same entry point as `compat check`), so results are cached per kernel and object by the result
cache as always and a second bisect of the same series boots no new kernel. bisect() puts both
together and adds, per change, the two results, their verifier-log diff and the BPF backports
between the two releases (the suspects, from the Debian changelogs: candidates, not a proven cause).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from compat.cache import Cache
from compat.errors import CompatError, UserError
from compat.kernels.changelog import Suspects
from compat.kernels.matrix import DEFAULT_ARCH, KernelSpec, Matrix
from compat.kernels.series import release_versions, select_range, suspects_between
from compat.kernels.sources import KernelStore
from compat.objects.objfile import BpfObject
from compat.results.logdiff import LogDiff, diff_logs
from compat.results.model import ACCEPTED, REJECTED, KernelInfo, ObjectInfo, ProgramResult, RunResult
from compat.results.privilege import ROOT

from .checker import Checker, CheckOptions

Key = Hashable  # a program: (object, program) in the command, anything hashable in tests
# release -> {program: verdict or None (no verdict)}; a release missing from the answer gave none.
Verdicts = Mapping[str, Mapping[Key, str | None]]
VerdictSource = Callable[[list[str]], Verdicts]

_SERIES = re.compile(r"^\d+\.\d+$")


@dataclass
class Change:
    """One change of a program's verdict: ``before`` is the last release with the old verdict,
    ``after`` the first with the new one; ``unknown`` the releases between them that gave no
    verdict (the change happened at one of them or at ``after``)."""

    key: Key
    before: str
    after: str
    old: str
    new: str
    unknown: list[str] = field(default_factory=list)


@dataclass
class Search:
    """What search() found."""

    releases: list[str]  # the range, oldest first
    exhaustive: bool
    checked: list[str] = field(default_factory=list)  # the releases checked, oldest first
    rounds: list[list[str]] = field(default_factory=list)  # the batches, in the order they ran
    changes: dict[Key, list[Change]] = field(default_factory=dict)  # changed programs, oldest change first
    unchanged: dict[Key, str] = field(default_factory=dict)  # the same verdict at both ends (or everywhere)
    no_verdict: list[Key] = field(default_factory=list)  # fewer than two releases gave a verdict
    failed: list[str] = field(default_factory=list)  # checked releases that gave no verdict for any program


def search(releases: Sequence[str], source: VerdictSource, exhaustive: bool = False, width: int = 1) -> Search:
    """Find, per program, the consecutive releases where its verdict changed (see the module's
    docstring). ``releases`` oldest first; ``source`` is called with batches of releases not
    checked before; ``width`` (>= 1) releases probed per program and round."""
    rel = list(releases)
    n = len(rel)
    out = Search(rel, exhaustive)
    known: dict[int, Mapping[Key, str | None]] = {}
    keys: dict[Key, None] = {}  # every program seen, in the order seen

    def probe(indexes: set[int]) -> None:
        todo = sorted(i for i in indexes if i not in known and 0 <= i < n)
        if not todo:
            return
        answer = source([rel[i] for i in todo])
        out.rounds.append([rel[i] for i in todo])
        for i in todo:
            row = dict(answer.get(rel[i]) or {})
            known[i] = row
            keys.update(dict.fromkeys(row))

    def verdict(i: int, k: Key) -> str | None:
        return known[i].get(k) if i in known else None

    if n == 0:
        return out
    probe(set(range(n)) if exhaustive else {0, n - 1})
    # Each program's ends: the oldest and newest releases with a verdict (a release without one
    # at an end: the next one inward is checked, for every program that needs it at once).
    ends: dict[Key, tuple[int | None, int | None]] = {}
    while True:
        need: set[int] = set()
        for k in keys:
            lo = _first_known(range(n), known, k, need)
            hi = _first_known(range(n - 1, -1, -1), known, k, need)
            ends[k] = (lo, hi)
        unchecked = [i for i in range(n) if i not in known]
        if not keys and unchecked:  # no release has answered yet: the next ones inward
            need.update({unchecked[0], unchecked[-1]})
        if not need:
            break
        probe(need)
    active: dict[Key, tuple[int, int]] = {}
    for k, (lo, hi) in ends.items():
        if lo is None or hi is None or lo == hi:
            out.no_verdict.append(k)
        elif exhaustive:
            changes = _walk(rel, known, k, lo, hi)
            if changes:
                out.changes[k] = changes
            else:
                out.unchanged[k] = verdict(lo, k) or ""
        elif verdict(lo, k) == verdict(hi, k):
            out.unchanged[k] = verdict(lo, k) or ""
        else:
            active[k] = (lo, hi)
    # Binary (or width+1-ary) search, all programs' probes of a round in one batch.
    while active:
        batch: set[int] = set()
        for _k, (lo, hi) in active.items():
            between = [i for i in range(lo + 1, hi) if i not in known]
            if between:
                w = max(1, min(width, len(between)))
                batch.update(between[len(between) * j // (w + 1)] for j in range(1, w + 1))
        if not batch:
            break
        probe(batch)
        for k, (lo, hi) in list(active.items()):
            old = verdict(lo, k)
            for i in range(lo + 1, hi):  # the oldest probed release that no longer gives the old verdict
                v = verdict(i, k)
                if v is None:
                    continue
                if v == old:
                    lo = i
                else:
                    hi = i
                    break
            active[k] = (lo, hi)
    for k, (lo, hi) in active.items():
        unknown = [rel[i] for i in range(lo + 1, hi)]
        out.changes[k] = [Change(k, rel[lo], rel[hi], verdict(lo, k) or "", verdict(hi, k) or "", unknown)]
    out.checked = [rel[i] for i in sorted(known)]
    out.failed = [rel[i] for i in sorted(known) if not any(v is not None for v in known[i].values())]
    return out


def _first_known(order: range, known: Mapping[int, Mapping[Key, str | None]], k: Key, need: set[int]) -> int | None:
    """The first index in ``order`` where program k has a verdict; an unchecked index on the way
    is added to ``need`` (None then, and None when no release has one)."""
    for i in order:
        if i not in known:
            need.add(i)
            return None
        if known[i].get(k) is not None:
            return i
    return None


def _walk(rel: list[str], known: Mapping[int, Mapping[Key, str | None]], k: Key, lo: int, hi: int) -> list[Change]:
    """Every change of program k's verdict over releases lo..hi, all of them checked."""
    changes, last = [], lo
    for i in range(lo + 1, hi + 1):
        v = known[i].get(k)
        if v is None:
            continue
        old = known[last].get(k)
        if v != old:
            changes.append(Change(k, rel[last], rel[i], old or "", v, [rel[j] for j in range(last + 1, i)]))
        last = i
    return changes


# -- the command's verdict source and result ---------------------------------------------------


def series_spec(series: str, matrix: Matrix, flavour: str | None = None) -> KernelSpec:
    """The kernel spec of ``--series``: a matrix entry's id (its series, flavour, suite and
    archive) or a series number such as 6.12 (Debian's, in ``flavour``)."""
    by_id = {k.id: k for k in matrix.kernels}
    if series in by_id and by_id[series].series and by_id[series].source != "local":
        spec = by_id[series]
        spec = dataclasses.replace(spec, version=None, package=None, releases="all")
        return dataclasses.replace(spec, flavour=flavour) if flavour else spec
    if not _SERIES.match(series):
        raise UserError(f"--series {series!r} is not a series such as 6.12 nor a matrix entry with a series",
                        "e.g. --series 6.12")  # fmt: skip
    spec = KernelSpec(id=f"debian:{series}.*", label=f"Debian {series}", series=series, releases="all")
    spec = spec.with_arch(matrix.arch) if matrix.arch else spec  # --arch arm64: debian:6.12.*-arm64
    return dataclasses.replace(spec, flavour=flavour) if flavour else spec  # a flavour of another arch: exit 2


def range_specs(
    store: KernelStore, spec: KernelSpec, first: str | None = None, last: str | None = None
) -> list[KernelSpec]:
    """One spec per point release of the series from ``first`` to ``last`` (UserError: a series
    the archive lacks, a bound outside it, swapped bounds); each spec's id is its version."""
    versions = release_versions(store, spec)
    chosen = select_range(versions, spec.series or "?", first, last)
    if len(chosen) < 2:
        raise UserError(f"the range {chosen[0]} to {chosen[-1]} holds one point release: nothing to bisect",
                        "give --from and --to two different releases")  # fmt: skip
    tail = "" if spec.arch == DEFAULT_ARCH else f"-{spec.arch}"  # arm64 releases: 6.12.43-arm64
    return [dataclasses.replace(spec, id=f"{v}{tail}", label=f"Debian {v}{tail.replace('-', ' ')}", version=v,
                                releases=None, order=i) for i, v in enumerate(chosen)]  # fmt: skip


class CheckSource:
    """The verdict source of the command: each batch of releases is one Checker run of all the
    objects; keeps every result, kernel and failure for the report."""

    def __init__(self, cache: Cache, specs: list[KernelSpec], objects: list[BpfObject], infos: list[ObjectInfo],
                 options: CheckOptions, progress: Callable[[str], None] | None = None):  # fmt: skip
        self.cache = cache
        self.specs = {s.id: s for s in specs}
        self.objects, self.infos, self.options = objects, infos, options
        self.progress = progress
        self.results: dict[tuple[str, str, str], ProgramResult] = {}  # (release, object, program)
        self.kernels: dict[str, KernelInfo] = {}
        self.failures: dict[str, str] = {}  # release -> why it gave no verdict
        self.wall: list[float] = []

    def __call__(self, releases: list[str]) -> Verdicts:
        if self.progress:
            self.progress(f"bisect: checking {', '.join(releases)}")
        checker = Checker(self.cache, [self.specs[v] for v in releases], self.options)
        if self.progress:
            checker.progress = self.progress
        run = checker.run(self.objects, self.infos)
        self.wall.append(float(run.options.get("wall_seconds") or 0.0))
        out: dict[str, dict[Key, str | None]] = {v: {} for v in releases}
        kernels, results = one_privilege(run, (self.options.privileges or (ROOT,))[0])
        for k in kernels:
            self.kernels[k.id] = k
            if k.error:
                self.failures[k.id] = k.error
        for r in results:
            self.results[(r.kernel, r.object, r.program)] = r
            # Only accepted and rejected are verdicts; an error (infrastructure, time limit) is none.
            verdict = r.verdict if r.verdict in (ACCEPTED, REJECTED) else None
            out.setdefault(r.kernel, {})[(r.object, r.program)] = verdict
        for v in releases:
            if v not in self.failures and not any(x is not None for x in out[v].values()):
                self.failures[v] = "no program got a verdict on this kernel"
        return out


def one_privilege(run: RunResult, mode: str) -> tuple[list[KernelInfo], list[ProgramResult]]:
    """The kernels and results of one --privilege mode of a run, by release (its columns' ids
    without the mode): a bisection follows the first mode given (root without --privilege)."""
    suffix = f" ({mode})" if mode != ROOT else ""
    kernels = [dataclasses.replace(k, id=k.id.removesuffix(suffix), privilege=None)
               for k in run.kernels if (k.privilege or ROOT) == mode]  # fmt: skip
    results = [dataclasses.replace(r, kernel=r.kernel.removesuffix(suffix)) for r in run.results if r.privilege == mode]
    return kernels, results


@dataclass
class Boundary:
    """One changed program's boundary, with everything the reports show."""

    object: str
    program: str
    before: ProgramResult
    after: ProgramResult
    unknown: list[str]  # releases between the two without a verdict
    logdiff: LogDiff
    suspects: Suspects

    @property
    def before_version(self) -> str:
        return self.before.kernel

    @property
    def after_version(self) -> str:
        return self.after.kernel

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "program": self.program,
            "before": _side(self.before),
            "after": _side(self.after),
            "unknown_between": self.unknown,
            "log_diff": self.logdiff.to_json(),
            "suspects_note": self.suspects.note or None,
            "suspects": [c.to_json() for c in self.suspects.commits],
        }


def _side(r: ProgramResult) -> dict[str, Any]:
    return {"version": r.kernel, "verdict": r.verdict, "reason": r.reason, "message": r.message, "detail": r.detail}


@dataclass
class BisectResult:
    """Everything one `compat bisect` found."""

    series: str
    releases: list[str]
    exhaustive: bool
    checked: list[str]
    rounds: list[list[str]]
    boundaries: list[Boundary]
    unchanged: list[tuple[str, str, str]]  # (object, program, verdict)
    no_verdict: list[tuple[str, str]]
    failed: dict[str, str]  # release -> why it gave no verdict
    objects: list[ObjectInfo]
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "compat-bisect/v1",
            "series": self.series,
            "range": {"from": self.releases[0], "to": self.releases[-1]} if self.releases else None,
            "releases": self.releases,
            "exhaustive": self.exhaustive,
            "assumption": None if self.exhaustive else ASSUMPTION,
            "releases_checked": self.checked,
            "rounds": self.rounds,
            "failed_releases": [{"version": v, "error": e} for v, e in self.failed.items()],
            "changes": [b.to_json() for b in self.boundaries],
            "unchanged": [{"object": o, "program": p, "verdict": v} for o, p, v in self.unchanged],
            "no_verdict": [{"object": o, "program": p} for o, p in self.no_verdict],
            "objects": [dataclasses.asdict(o) for o in self.objects],
            "suspects_are": SUSPECTS_ARE,
            "wall_seconds": self.wall_seconds,
        }


ASSUMPTION = ("not exhaustive: a verdict equal at both ends of the range is assumed unchanged in between "
              "(--exhaustive checks every release and finds a change that was later undone)")  # fmt: skip
SUSPECTS_ARE = ("suspects are candidates, not a proven cause: the BPF-related commits the Debian changelog lists "
                "between the two releases; the change may come from one of them or from another commit")  # fmt: skip


def bisect(
    cache: Cache,
    store: KernelStore,
    series: str,
    specs: list[KernelSpec],
    objects: list[BpfObject],
    infos: list[ObjectInfo],
    options: CheckOptions,
    exhaustive: bool = False,
    width: int = 1,
    progress: Callable[[str], None] | None = None,
) -> BisectResult:
    """Bisect the objects over the releases of ``specs`` (one per point release, oldest first,
    ids = versions: range_specs) and gather each boundary's results, log diff and suspects."""
    import time

    t0 = time.monotonic()
    source = CheckSource(cache, specs, objects, infos, options, progress)
    found = search([s.id for s in specs], source, exhaustive=exhaustive, width=width)
    boundaries = []
    suspects_cache: dict[tuple[str, str], Suspects] = {}
    for key, changes in found.changes.items():
        obj, prog = cast(tuple[str, str], key)
        for ch in changes:
            before = source.results[(ch.before, obj, prog)]
            after = source.results[(ch.after, obj, prog)]
            diff = diff_logs(before.log, after.log, ch.before, ch.after)
            pair = (ch.before, ch.after)
            if pair not in suspects_cache:
                suspects_cache[pair] = _suspects(store, source.specs[ch.before], source.specs[ch.after])
            boundaries.append(Boundary(obj, prog, before, after, ch.unknown, diff, suspects_cache[pair]))
    failed = {v: source.failures.get(v, "no verdict") for v in found.failed}
    for v, why in source.failures.items():
        failed.setdefault(v, why)
    order = {v: i for i, v in enumerate(found.releases)}
    return BisectResult(
        series=series,
        releases=found.releases,
        exhaustive=exhaustive,
        checked=found.checked,
        rounds=found.rounds,
        boundaries=boundaries,
        unchanged=[(*cast(tuple[str, str], k), v) for k, v in found.unchanged.items()],
        no_verdict=[cast(tuple[str, str], k) for k in found.no_verdict],
        failed=dict(sorted(failed.items(), key=lambda kv: order.get(kv[0], 0))),
        objects=infos,
        wall_seconds=round(time.monotonic() - t0, 2),
    )


def _suspects(store: KernelStore, old: KernelSpec, new: KernelSpec) -> Suspects:
    """The BPF backports between two releases (never raises: no suspects and a note instead)."""
    try:
        return suspects_between(store, store.fetch(old), store.fetch(new))
    except CompatError as e:
        return Suspects(old.id, new.id, note=f"the kernels' changelogs could not be read ({e})")
