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

    def to_json(self) -> dict:
        oldest = self.oldest
        return {
            "object": self.object, "program": self.program,
            "oldest": {"kernel": oldest.id, "version": kernel_version(oldest)} if oldest else None,
            "older": [n.to_json() for n in self.older],
            "newer_rejections": [n.to_json() for n in self.newer_rejections],
            "no_verdict": [n.to_json() for n in self.no_verdict],
        }  # fmt: skip


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


def requirements(result: RunResult, comparison: Comparison | None = None) -> tuple[list[KernelInfo], list[Requirement]]:
    """The kernels oldest first and each program's Requirement, programs in first-seen order."""
    kernels = order_kernels(list(result.kernels), "version")
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
    return kernels, out


def render_json(result: RunResult, comparison: Comparison) -> str:
    """requirements-json: the view as a document (schema compat-requirements/v1)."""
    kernels, reqs = requirements(result, comparison)
    doc = {
        "schema": SCHEMA,
        "kernels": [{"kernel": k.id, "version": kernel_version(k)} for k in kernels],
        "programs": [r.to_json() for r in reqs],
    }
    # ensure_ascii: no control character or terminal sequence of a name survives as such.
    return escape.json_document(json.dumps(doc, indent=1, ensure_ascii=True)) + "\n"


def render(result: RunResult, comparison: Comparison) -> str:
    """requirements: the view as markdown (a table, one row per program)."""
    kernels, reqs = requirements(result, comparison)
    md, code = escape.markdown, escape.markdown_code
    lines = [
        "## Minimum supported kernels",
        "",
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
    note = ("The oldest kernel is the oldest of this run's kernels that accepts the program; a kernel between two "
            "of them may differ, and a distribution kernel may backport a feature.")
    lines += ["", f"<sub>{note}</sub>", ""]
    return escape.no_commands("\n".join(lines))
