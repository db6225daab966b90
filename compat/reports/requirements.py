"""The requirements view: per program, the oldest kernel of the run that accepts it and what each
older kernel lacks, the "minimum supported kernel" table projects otherwise write by hand.

Kernels go in upstream-version order (compare.order_kernels with the version axis, whatever axis
the matrix declares: "oldest" means the version). Per program:
  - oldest: the oldest kernel that accepts it (None when none does);
  - older: each kernel older than that one with its verdict, the reason and message of its
    rejection, and, where that names a feature of the feature table
    (compat_agent/wire/features.py) with its first upstream release, "needs Linux X (what)";
  - newer_rejections: rejections on kernels newer than the oldest accepting one (a stable
    backport that broke it, a required kernel option missing): a minimum kernel is not the
    whole story for these programs;
  - no_verdict: kernels where the check gave no verdict (a guest that died, a deadline).
Kernels of another architecture, or columns of another privilege (--privilege), are another axis:
an arm64 rejection after an amd64 acceptance is no newer kernel's doing, nor an unprivileged
rejection after a root acceptance. The view is computed per axis (architecture, then privilege,
in the run's order), each program once per axis; a run of one architecture and privilege reads
as before, and a mixed one names the axis (JSON: "arch" and "privilege" of each program entry).
Two formats: "requirements" (markdown) and "requirements-json" (schema compat-requirements/v1).

A feature is named by a rejection when the maps the kernel could not create (object_load) have
its type, or when the classification's message carries its words: classify builds those messages
from the same table (its `what`, or its name as a word: a map or struct_ops type), so the match
reads the table's own words back, not the kernel's. Helpers, program types and map types have
their first upstream release in the same module's tables (bcc's kernel-versions table): a missing
helper named by the message ("bpf_loop (181)", helper_label's words) gives "needs Linux 5.17
(bpf_loop)", an unsupported program type the program's prog_type, and an unsupported map type
the one the message names ("map type X": classify says so only of a type the kernel's probe lacks).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from compat_agent.wire.features import FEATURES, Feature, requirement

from compat.results.compare import Comparison, kernel_name, kernel_version, order_kernels
from compat.results.model import ACCEPTED, REJECTED, KernelInfo, ProgramResult, RunResult
from compat.results.privilege import ROOT

from . import common, escape

SCHEMA = "compat-requirements/v1"


@dataclass
class KernelNeed:
    """What one kernel says of a program it does not accept."""

    kernel: KernelInfo
    result: ProgramResult
    features: list[Feature] = field(default_factory=list)

    def words(self) -> str:
        """'missing helper: helper bpf_loop (181) is not available on this kernel'; 'needs Linux 5.8
        (BPF ring buffer)' first when a feature of the table is named."""
        r = self.result
        if r.verdict != REJECTED:
            return f"no verdict ({r.message or r.reason or r.verdict})"
        text = f"{common.reason_words(r.reason)}: {r.message}" if r.message else common.reason_words(r.reason)
        needs = "; ".join(f"needs Linux {f.since} ({f.what})" for f in self.features)
        return f"{needs}; {text}" if needs else text

    def to_json(self) -> dict:
        r = self.result
        return {
            "kernel": r.kernel, "version": kernel_version(self.kernel, r.kernel), "verdict": r.verdict,
            "reason": r.reason, "reason_words": common.reason_words(r.reason) if r.reason else None,
            "message": r.message,
            "needs": [{"feature": f.name, "what": f.what, "since": f.since} for f in self.features],
        }  # fmt: skip


@dataclass
class Requirement:
    """One program's minimum kernel and what the kernels before it lack."""

    object: str
    program: str
    oldest: KernelInfo | None
    older: list[KernelNeed]
    newer_rejections: list[KernelNeed]
    no_verdict: list[KernelNeed]
    axis: Axis | None = None  # the run's axis when it has more than one (architecture, privilege)

    def to_json(self) -> dict:
        oldest = self.oldest
        doc = {
            "object": self.object, "program": self.program,
            "oldest": {"kernel": oldest.id, "version": kernel_version(oldest)} if oldest else None,
            "older": [n.to_json() for n in self.older],
            "newer_rejections": [n.to_json() for n in self.newer_rejections],
            "no_verdict": [n.to_json() for n in self.no_verdict],
        }  # fmt: skip
        if self.axis is not None:
            doc["arch"], doc["privilege"] = self.axis
        return doc


# One kernel axis of the view: (architecture, privilege).
Axis = tuple[str, str]


def axis_of(k: KernelInfo) -> Axis:
    """The axis a kernel's column runs along: its architecture and its privilege."""
    return (k.arch, k.privilege or ROOT)


def axis_words(axis: Axis) -> str:
    """'arm64', 'amd64, unprivileged': how a heading names an axis."""
    arch, privilege = axis
    return arch if privilege == ROOT else f"{arch}, {privilege}"


# classify's words for a helper ("bpf_loop (181)", inventory.helper_label) and a map type.
_HELPER_LABEL = re.compile(r"(?<![\w])(\w+) \((\d+)\)")
_MAP_TYPE = re.compile(r"(?<![\w])map type (\w+)")


def _features(r: ProgramResult) -> list[Feature]:
    """The features of the tables a rejection names (see the module's docstring)."""
    found: dict[tuple[str, str], Feature] = {}

    def add(f: Feature | None) -> None:
        if f is not None:
            found.setdefault((f.kind, f.name), f)

    message = r.message or ""
    if r.reason == "missing_helper":
        for name, _id in _HELPER_LABEL.findall(message):
            add(requirement("helper", name))
    if r.reason == "unsupported_prog_type" and r.prog_type:
        add(requirement("prog_type", r.prog_type))
    for m in (r.object_load or {}).get("maps") or []:
        # Only the newer types of FEATURES: a hash map the kernel did not create lacked no feature.
        f = FEATURES.get(str(m.get("type"))) if isinstance(m, dict) else None
        if f is not None and f.kind == "map_type":
            add(f)
    if r.reason == "unsupported_map_type":
        for name in _MAP_TYPE.findall(message):
            add(requirement("map_type", name))
    for f in FEATURES.values():
        if f.what in message or re.search(rf"(?<![\w]){re.escape(f.name)}(?![\w])", message):
            add(f)
    return list(found.values())


def axes(result: RunResult) -> list[tuple[Axis, list[KernelInfo]]]:
    """The run's kernel axes (see the module's docstring), each with its kernels oldest first."""
    groups: dict[Axis, list[KernelInfo]] = {}
    for k in order_kernels(list(result.kernels), "version"):
        groups.setdefault(axis_of(k), []).append(k)
    # Architectures in the run's order (order_kernels), root's columns first within each.
    archs = list(dict.fromkeys(a for a, _ in groups))
    return sorted(groups.items(), key=lambda g: (archs.index(g[0][0]), g[0][1] != ROOT))


def requirements(result: RunResult, comparison: Comparison | None = None) -> tuple[list[KernelInfo], list[Requirement]]:
    """The kernels oldest first (per axis) and each program's Requirement per axis, programs in
    first-seen order within an axis."""
    found = axes(result)
    mixed = len(found) > 1
    kernels, out = [], []
    for axis, along in found:
        kernels += along
        for r in _requirements(result, along):
            if mixed and (r.oldest or r.older or r.newer_rejections or r.no_verdict):
                r.axis = axis  # a program the axis never checked has no entry there
                out.append(r)
            elif not mixed:
                out.append(r)
    return kernels, out


def _requirements(result: RunResult, kernels: list[KernelInfo]) -> list[Requirement]:
    """Each program's Requirement along one axis's kernels (oldest first)."""
    out = []
    for obj, prog in common.programs(result):
        cells = [(k, result.cell(obj, prog, k.id)) for k in kernels]
        present = [(k, r) for k, r in cells if r is not None]
        oldest = next((k for k, r in present if r.verdict == ACCEPTED), None)
        at = kernels.index(oldest) if oldest is not None else len(kernels)
        older, newer, unknown = [], [], []
        for k, r in present:
            if r.verdict == ACCEPTED:
                continue
            need = KernelNeed(k, r, _features(r) if r.verdict == REJECTED else [])
            if r.verdict != REJECTED:
                unknown.append(need)
            elif kernels.index(k) < at:
                older.append(need)
            else:
                newer.append(need)
        out.append(Requirement(obj, prog, oldest, older, newer, unknown))
    return out


def _kernel_json(k: KernelInfo, mixed: bool) -> dict:
    """A kernel of the view; with its axis when the run has more than one."""
    doc = {"kernel": k.id, "version": kernel_version(k)}
    if mixed:
        doc["arch"], doc["privilege"] = axis_of(k)
    return doc


def render_json(result: RunResult, comparison: Comparison) -> str:
    """requirements-json: the view as a document (schema compat-requirements/v1)."""
    kernels, reqs = requirements(result, comparison)
    mixed = len(axes(result)) > 1
    doc = {
        "schema": SCHEMA,
        "kernels": [_kernel_json(k, mixed) for k in kernels],
        "programs": [r.to_json() for r in reqs],
    }
    # ensure_ascii: no control character or terminal sequence of a name survives as such.
    return escape.json_document(json.dumps(doc, indent=1, ensure_ascii=True)) + "\n"


def render(result: RunResult, comparison: Comparison) -> str:
    """requirements: the view as markdown (a table, one row per program)."""
    _, reqs = requirements(result, comparison)
    found = axes(result)
    lines = ["## Minimum supported kernels", ""]
    for axis, kernels in found:
        if len(found) > 1:
            lines += [f"### {escape.markdown(axis_words(axis))}", ""]
        lines += _table(kernels, [r for r in reqs if r.axis in (None, axis)])
    note = ("The oldest kernel is the oldest of this run's kernels that accepts the program; a kernel between two "
            "of them may differ, and a distribution kernel may backport a feature.")
    if len(found) > 1:
        note += (" Each architecture and privilege is its own axis: a rejection on arm64 or under less privilege "
                 "is not a newer kernel's.")  # fmt: skip
    lines += [f"<sub>{note}</sub>", ""]
    return escape.no_commands("\n".join(lines))


def _table(kernels: list[KernelInfo], reqs: list[Requirement]) -> list[str]:
    """One axis's markdown lines: its kernels, then a row per program."""
    md, code = escape.markdown, escape.markdown_code
    lines = [
        "Kernels, oldest first: " + ", ".join(md(kernel_name(k)) for k in kernels) + ".",
        "",
        "| program | oldest kernel that accepts it | what older kernels lack |",
        "|---|---|---|",
    ]
    for r in reqs:
        oldest = md(kernel_name(r.oldest)) if r.oldest is not None else "none"
        lacks = [f"{md(kernel_name(n.kernel))}: {md(n.words())}" for n in r.older]
        notes = [f"also rejected on {md(kernel_name(n.kernel))}: {md(n.words())}" for n in r.newer_rejections]
        notes += [f"{md(kernel_name(n.kernel))}: {md(n.words())}" for n in r.no_verdict]
        cell = "<br>".join(lacks + notes) or ("nothing: every kernel of the run accepts it" if r.oldest else "")
        lines.append(f"| {code(r.object, table=True)} {code(r.program, table=True)} | {oldest} | {cell} |")
    return [*lines, ""]
