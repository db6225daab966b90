"""GitHub Actions workflow commands: annotations on the failing source lines.

`::error file=…,line=…,title=…::…` for each cell that fails the gate (a regression, or a
rejection on a required kernel with no baseline cell), one per program per kernel;
`::warning` for every other rejection; `::error` without a file for cells without a verdict and
for selftest programs whose annotations are not met;
a closing `::notice` with the summary line. GitHub shows only the first 10 error and 10 warning
annotations of a step: past 9 of a kind, one annotation says how many more there are, and the
rest are printed as plain log lines, so that no finding is silently dropped.
"""

from __future__ import annotations

from compat.results.classify import object_findings
from compat.results.compare import Comparison
from compat.results.gate import facts, gate_summary
from compat.results.model import ERROR, RunResult

from . import common, escape


def command(kind: str, message: str, **props: object) -> str:
    """One workflow command (the only lines of compat's output that may begin with "::"), its
    message and properties escaped as GitHub's toolkit does."""
    given = ",".join(f"{k}={escape.workflow_property(v)}" for k, v in props.items() if v not in (None, ""))
    return f"::{kind}{' ' + given if given else ''}::{escape.workflow_data(message)}"


ANNOTATIONS_PER_KIND = 10  # what GitHub shows per step for each of error, warning, notice


def _within_budget(annotations: list[tuple[str, str, dict]]) -> list[str]:
    """Workflow commands for (kind, message, props) in order, each kind held to what GitHub
    shows: the annotations past the budget become one summary annotation and plain log lines."""
    totals = {kind: sum(k == kind for k, _, _ in annotations) for kind in ("error", "warning")}
    out: list[str] = []
    rest: dict[str, list[tuple[str, dict]]] = {"error": [], "warning": []}
    for kind, message, props in annotations:
        shown = sum(line.startswith(f"::{kind}") for line in out)
        if totals[kind] <= ANNOTATIONS_PER_KIND or shown < ANNOTATIONS_PER_KIND - 1:
            out.append(command(kind, message, **props))
        else:
            rest[kind].append((message, props))
    for kind, left in rest.items():
        if not left:
            continue
        out.append(command(kind, f"{len(left)} more {kind}(s) not annotated (GitHub shows {ANNOTATIONS_PER_KIND} "
                                 "per step): they follow in this log, and the markdown report has them all",
                           title=f"compat: {len(left)} more"))  # fmt: skip
        for message, props in left:
            where = f"{props['file']}:{props['line']}: " if "file" in props else ""
            text = " | ".join(escape.terminal(line) for line in message.split("\n"))
            out.append(escape.no_command(f"compat {kind}: {escape.terminal(where)}{escape.terminal(props['title'])}: "
                                         f"{text}"))  # fmt: skip
    return out


def render(result: RunResult, comparison: Comparison) -> str:
    f = facts(result, comparison)
    by_kernel = {k.id: k for k in result.kernels}
    annotations: list[tuple[str, str, dict]] = []
    for p in common.problems(result, comparison, f):
        r = p.result
        loc = common.location(r)
        kname = common.kernel_name(p.kernel, r.kernel)
        reason = common.reason_words(r.reason)
        if p.regression:
            title = f"compat: {r.program} rejected on {kname} (regression)"
            message = (f"{r.object}:{r.program} is rejected on {kname}; the baseline ({p.baseline_object}) "
                       f"was accepted there. {reason}: {r.message}")  # fmt: skip
        elif p.required:
            title = f"compat: {r.program} rejected on required kernel {kname}"
            message = f"{r.object}:{r.program} is rejected on {kname} (required). {reason}: {r.message}"
        else:
            title = f"compat: {r.program} rejected on {kname}"
            message = f"{r.object}:{r.program} is rejected on {kname}. {reason}: {r.message}"
        axis = comparison.program_axis(r.object, r.program)
        if axis is not None and axis.rejected_from == r.kernel:
            older = common.kernel_version(by_kernel.get(axis.accepted_on or ""), axis.accepted_on or "?")
            message += f" (accepted on {older}, rejected from {common.kernel_version(p.kernel, r.kernel)})"
        if loc is not None and loc.text:
            message += f"\n{loc.line}: {loc.text}"
        props = {"title": title}
        if loc is not None:
            props = {"file": common.display_path(loc.file), "line": loc.line, "col": loc.column, "title": title}
        annotations.append(("error" if p.fails_gate else "warning", message, props))
    for r in f.unmet:
        why = (r.expectation or {}).get("why")
        annotations.append(("error", f"{r.object}:{r.program} on {r.kernel}: selftest expectation not met: {why}",
                            {"title": f"compat: {r.program} expectation not met on {r.kernel}"}))  # fmt: skip
    for obj_name, kernel, _, words in object_findings(result.results):  # the object as shipped, kernel warnings
        title = f"compat: {obj_name} on {kernel}"
        annotations.append(("warning", f"{obj_name} on {kernel}: {words}", {"title": title}))
    for r in result.results:
        if r.verdict == ERROR:
            annotations.append(("error", f"{r.object}:{r.program} on {r.kernel}: no verdict: {r.message}",
                                {"title": f"compat: no verdict on {r.kernel}"}))  # fmt: skip
    lines = _within_budget(annotations)
    lines.append(command("notice", gate_summary(result, comparison), title="compat"))
    return "\n".join(lines) + "\n"
