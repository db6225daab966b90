"""Comparisons: a run against its baseline (per program × kernel cell) and along the kernel axis.

- Baseline: every cell of the run gets a transition against the baseline's cell of the same
  program (matched by object and program name) on the same kernel id: still accepted, still
  rejected, newly rejected (the regression), newly accepted (fixed), added, removed, or no verdict,
  with the deltas of the verifier's statistics.
- Kernel axis: the kernels ordered by version (or by matrix order when the matrix says
  `axis: matrix`); per program its floor (the oldest kernel that accepts it), the first kernel
  that rejects it after one that accepted it (a stable-backport regression), and every
  accept/reject boundary.
Every regression and every boundary carries a diff of the two verifier logs (logdiff).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from compat_agent.wire import stats as stat_table

from compat.kernels.version import version_key

from .logdiff import LogDiff, diff_logs
from .model import ACCEPTED, ERROR, REJECTED, KernelInfo, ProgramResult, RunResult
from .privilege import axis_kernels

STILL_ACCEPTED, STILL_REJECTED = "still_accepted", "still_rejected"
NEWLY_REJECTED, NEWLY_ACCEPTED = "newly_rejected", "newly_accepted"
ADDED, REMOVED, NO_VERDICT = "added", "removed", "no_verdict"
TRANSITIONS = {
    STILL_ACCEPTED: "still accepted",
    STILL_REJECTED: "still rejected",
    NEWLY_REJECTED: "newly rejected (regression)",
    NEWLY_ACCEPTED: "newly accepted (fixed)",
    ADDED: "added (no baseline cell)",
    REMOVED: "removed",
    NO_VERDICT: "no verdict (infrastructure error)",
}
# The statistics comparisons show, and their report labels: the compared rows of the table.
STAT_KEYS = stat_table.compared()
STAT_LABELS = stat_table.labels()
STEADY_STATS = stat_table.steady()  # a change of these is the program's (time always moves)
AXES = ("version", "matrix")


def kernel_name(k: KernelInfo | None, kernel_id: str = "?") -> str:
    """'6.1 (6.1.192)', or just the id when it already names the version."""
    if k is None:
        return kernel_id
    # A column of another privilege (--privilege): '6.1 (6.1.192, caps)'.
    base = k.id.removesuffix(f" ({k.privilege})") if k.privilege else k.id
    extra = [] if not k.version or k.version == "?" or k.version in base else [k.version]
    extra += [k.privilege] if k.privilege else []
    return f"{base} ({', '.join(extra)})" if extra else base


def kernel_version(k: KernelInfo | None, kernel_id: str = "?") -> str:
    """The point release when known ('6.1.176'), else the id."""
    return k.version if k is not None and k.version and k.version != "?" else kernel_id


def order_kernels(kernels: list[KernelInfo], axis: str = "version") -> list[KernelInfo]:
    """The kernel axis: by upstream version (matrix order breaks ties and places unknown versions
    last), or by matrix order when the matrix declares it."""
    # A kernel axis per architecture: a mixed matrix's amd64 kernels, then its arm64 ones (each
    # by version), side by side; an arch's first appearance orders the arches.
    arches = {a: i for i, a in enumerate(dict.fromkeys(k.arch for k in sorted(kernels, key=lambda k: k.order)))}
    if axis == "matrix":
        return sorted(kernels, key=lambda k: (arches[k.arch], k.order))

    def key(k: KernelInfo) -> tuple[int, int, tuple[int, ...], int]:
        v = version_key(k.version or "")
        return (arches[k.arch], 0, v, k.order) if v else (arches[k.arch], 1, (), k.order)

    return sorted(kernels, key=key)


@dataclass
class StatDelta:
    """One statistic of a cell, baseline → now."""

    old: float | None
    new: float | None
    delta: float | None
    percent: float | None

    @classmethod
    def of(cls, old: Any, new: Any) -> StatDelta:
        """The delta of two recorded values (numbers or None; anything else counts as unknown)."""
        delta = new - old if isinstance(old, int | float) and isinstance(new, int | float) else None
        percent = round(100.0 * delta / old, 1) if delta is not None and old else None
        return cls(old, new, delta, percent)

    def describe(self) -> str:
        if self.delta is None:
            return f"{_num(self.old)} → {_num(self.new)}"
        pct = f", {self.percent:+.1f}%" if self.percent is not None else ""
        return f"{_num(self.old)} → {_num(self.new)} ({self.delta:+,.0f}{pct})"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


@dataclass
class CellChange:
    """One program × kernel cell against the baseline."""

    object: str
    program: str
    kernel: str
    transition: str
    verdict: str | None
    reason: str | None
    baseline_object: str | None
    baseline_verdict: str | None
    baseline_reason: str | None
    baseline_kernel_version: str | None = None
    stats: dict[str, StatDelta] = field(default_factory=dict)
    log_diff: LogDiff | None = None

    @property
    def regression(self) -> bool:
        return self.transition == NEWLY_REJECTED

    def stats_changed(self) -> bool:
        """Accepted before and now, with other instruction or state counts (a rejection's figures
        only say where the verifier stopped; verification time always moves)."""
        if self.transition != STILL_ACCEPTED:
            return False
        return any((d := self.stats.get(k)) is not None and bool(d.delta) for k in STEADY_STATS)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["log_diff"] = self.log_diff.to_json() if self.log_diff else None
        return doc


@dataclass
class Boundary:
    """Two neighbouring kernels of the axis on which a program's verdict flips."""

    older: str  # kernel ids
    newer: str
    older_verdict: str
    newer_verdict: str
    log_diff: LogDiff | None = None

    @property
    def kind(self) -> str:
        return "rejected_from" if self.newer_verdict == REJECTED else "accepted_from"

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["kind"] = self.kind
        doc["log_diff"] = self.log_diff.to_json() if self.log_diff else None
        return doc


@dataclass
class ProgramAxis:
    """One program along the kernel axis."""

    object: str
    program: str
    verdicts: dict[str, str]  # kernel id -> verdict, in axis order
    floor: str | None  # the oldest kernel that accepts the program
    accepted_on: str | None = None  # the backport regression: accepted on this kernel …
    rejected_from: str | None = None  # … and rejected from this newer one
    boundaries: list[Boundary] = field(default_factory=list)
    # Rejected on every kernel, all for this one reason (a key of REASONS): an object_error there
    # is the object's (or its loader's) problem, not a difference between kernels.
    rejected_for: str | None = None
    # kernel id -> the reason of its rejection, for the words of the axis (the result file has them)
    reasons: dict[str, str | None] = field(default_factory=dict)

    def rejected_on(self) -> list[str]:
        """Kernels (in axis order) that reject the program."""
        return [k for k, v in self.verdicts.items() if v == REJECTED]

    def worth_reporting(self) -> bool:
        """Whether the axis says anything: some kernel rejects the program."""
        return bool(self.rejected_on())

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "program": self.program,
            "verdicts": self.verdicts,
            "floor": self.floor,
            "accepted_on": self.accepted_on,
            "rejected_from": self.rejected_from,
            "boundaries": [b.to_json() for b in self.boundaries],
            "rejected_for": self.rejected_for,
        }


@dataclass
class BaselineInfo:
    kind: str  # "object" (--baseline-object, same run) or "file" (--baseline RESULT.json)
    label: str  # object names or the file's path
    created: str | None = None
    kernels: dict[str, str] = field(default_factory=dict)  # kernel id -> point release in the baseline


@dataclass
class Comparison:
    """Everything the reports say beyond the verdicts themselves."""

    axis: str
    kernel_order: list[str]
    programs: list[ProgramAxis]
    baseline: BaselineInfo | None = None
    cells: list[CellChange] = field(default_factory=list)
    baseline_result: dict[str, Any] | None = None  # the baseline's result document, so reports can be re-rendered

    def cell(self, obj: str, program: str, kernel: str) -> CellChange | None:
        index = self.__dict__.get("_cells")
        if index is None or index[0] != len(self.cells):
            index = (len(self.cells), {(c.object, c.program, c.kernel): c for c in self.cells})
            self.__dict__["_cells"] = index
        return index[1].get((obj, program, kernel))

    def regressions(self) -> list[CellChange]:
        order = {k: i for i, k in enumerate(self.kernel_order)}
        found = [c for c in self.cells if c.regression]
        return sorted(found, key=lambda c: (c.object, c.program, order.get(c.kernel, len(order))))

    def counts(self) -> dict[str, int]:
        return {t: sum(1 for c in self.cells if c.transition == t) for t in TRANSITIONS}

    def program_axis(self, obj: str, program: str) -> ProgramAxis | None:
        for p in self.programs:
            if p.object == obj and p.program == program:
                return p
        return None

    def backport_regressions(self) -> list[ProgramAxis]:
        return [p for p in self.programs if p.rejected_from]

    def to_json(self) -> dict[str, Any]:
        return {
            "axis": self.axis,
            "kernel_order": self.kernel_order,
            "baseline": asdict(self.baseline) if self.baseline else None,
            "summary": {
                "regressions": len(self.regressions()),
                "backport_regressions": len(self.backport_regressions()),
                "transitions": self.counts() if self.baseline else {},
            },
            "cells": [c.to_json() for c in self.cells],
            "programs": [p.to_json() for p in self.programs],
            "baseline_result": self.baseline_result,
        }


def compare(
    result: RunResult,
    baseline: RunResult | None = None,
    baseline_kind: str = "file",
    baseline_label: str | None = None,
    axis: str | None = None,
) -> Comparison:
    """The comparison of a run: kernel axis always, baseline transitions when a baseline is given."""
    axis = axis or result.options.get("kernel_axis") or "version"
    if axis not in AXES:
        axis = "version"
    kernels = order_kernels(result.kernels, axis)
    # Floors and backport regressions run along the kernels of one privilege (axis_kernels): an
    # unprivileged rejection next to a root acceptance is no newer kernel's doing.
    comp = Comparison(axis=axis, kernel_order=[k.id for k in kernels], programs=_axis(result, axis_kernels(kernels)))
    if baseline is not None:
        label = baseline_label or ", ".join(o.object for o in baseline.objects)
        comp.baseline = BaselineInfo(
            kind=baseline_kind, label=label, created=baseline.created or None,
            kernels={k.id: k.version for k in baseline.kernels},
        )  # fmt: skip
        comp.cells = _cells(result, baseline, kernels)
        doc = baseline.to_json()
        doc.pop("comparison", None)
        comp.baseline_result = doc
    return comp


def _programs(result: RunResult) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for r in result.results:
        seen.setdefault((r.object, r.program), None)
    return list(seen)


def _label(r: ProgramResult, k: KernelInfo | None) -> str:
    return f"{r.object}:{r.program} on {kernel_name(k, r.kernel)}"


def _axis(result: RunResult, kernels: list[KernelInfo]) -> list[ProgramAxis]:
    # Floors and backport regressions run along one architecture's kernels (the first's): an
    # arm64 rejection next to an amd64 acceptance is no newer kernel's doing.
    kernels = [k for k in kernels if k.arch == kernels[0].arch] if kernels else kernels
    out = []
    for obj, prog in _programs(result):
        found = [(k, result.cell(obj, prog, k.id)) for k in kernels]
        cells = [(k, r) for k, r in found if r is not None]
        verdicts = {k.id: r.verdict for k, r in cells}
        judged = [(k, r) for k, r in cells if r.verdict in (ACCEPTED, REJECTED)]
        floor = next((k.id for k, r in judged if r.verdict == ACCEPTED), None)
        pa = ProgramAxis(obj, prog, verdicts, floor)
        pa.reasons = {k.id: r.reason for k, r in judged if r.verdict == REJECTED}
        if floor is None and len({r.reason for _, r in judged}) == 1:
            pa.rejected_for = judged[0][1].reason
        last_accepted = None
        for k, r in judged:
            if r.verdict == ACCEPTED:
                last_accepted = k
            elif last_accepted is not None and pa.rejected_from is None:
                pa.accepted_on, pa.rejected_from = last_accepted.id, k.id
        for (k1, r1), (k2, r2) in itertools.pairwise(judged):
            if r1.verdict != r2.verdict:
                diff = diff_logs(r1.log, r2.log, _label(r1, k1), _label(r2, k2))
                pa.boundaries.append(Boundary(k1.id, k2.id, r1.verdict, r2.verdict, diff))
        out.append(pa)
    return out


def _pair_objects(current: list[str], base: list[str]) -> dict[str, str]:
    """Current object name -> baseline object name: same names first, then a lone pair."""
    pairs = {o: o for o in current if o in base}
    left_cur = [o for o in current if o not in pairs]
    left_base = [o for o in base if o not in pairs.values()]
    if len(left_cur) == 1 and len(left_base) == 1:
        pairs[left_cur[0]] = left_base[0]
    return pairs


def _transition(now: ProgramResult | None, before: ProgramResult | None) -> str:
    if now is None:
        return REMOVED
    if before is None:
        return ADDED
    if now.verdict == ERROR or before.verdict == ERROR:
        return NO_VERDICT
    if now.verdict == ACCEPTED:
        return STILL_ACCEPTED if before.verdict == ACCEPTED else NEWLY_ACCEPTED
    return NEWLY_REJECTED if before.verdict == ACCEPTED else STILL_REJECTED


def _cells(result: RunResult, baseline: RunResult, kernels: list[KernelInfo]) -> list[CellChange]:
    cur_objects = list(dict.fromkeys(o for o, _ in _programs(result)))
    base_objects = list(dict.fromkeys(o for o, _ in _programs(baseline)))
    pairs = _pair_objects(cur_objects, base_objects)
    reverse = {b: c for c, b in pairs.items()}
    base_kernels = {k.id: k for k in baseline.kernels}
    keys = [(o, p) for o, p in _programs(result)]
    keys += [(reverse[o], p) for o, p in _programs(baseline) if o in reverse and (reverse[o], p) not in keys]
    out: list[CellChange] = []
    for obj, prog in keys:
        bobj = pairs.get(obj)
        for k in kernels:
            now = result.cell(obj, prog, k.id)
            before = baseline.cell(bobj, prog, k.id) if bobj else None
            if now is None and before is None:
                continue
            t = _transition(now, before)
            bk = base_kernels.get(k.id)
            change = CellChange(
                object=obj, program=prog, kernel=k.id, transition=t,
                verdict=now.verdict if now else None, reason=now.reason if now else None,
                baseline_object=bobj if before else None,
                baseline_verdict=before.verdict if before else None,
                baseline_reason=before.reason if before else None,
                baseline_kernel_version=bk.version if bk and before else None,
            )  # fmt: skip
            if now is not None and before is not None:
                change.stats = {s: StatDelta.of(before.stats.get(s), now.stats.get(s)) for s in STAT_KEYS}
            if t == NEWLY_REJECTED and now is not None and before is not None:
                change.log_diff = diff_logs(before.log, now.log, f"baseline {_label(before, bk)}", _label(now, k))
            out.append(change)
    return out
