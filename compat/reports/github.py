"""GitHub Actions workflow commands: annotations on the failing source lines.

`::error file=…,line=…,title=…::…` for each cell that fails the gate (a regression, or a
rejection on a required kernel with no baseline cell), one per program per kernel;
`::warning` for every other rejection; `::error` without a file for cells without a verdict;
a closing `::notice` with the summary line.
"""

from __future__ import annotations

from ..compare import Comparison
from ..gate import facts, gate_summary
from ..results import ERROR, RunResult
from . import common


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **props: object) -> str:
    given = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items() if v not in (None, ""))
    return f"::{kind}{' ' + given if given else ''}::{escape_data(message)}"


def render(result: RunResult, comparison: Comparison) -> str:
    f = facts(result, comparison)
    by_kernel = {k.id: k for k in result.kernels}
    lines = []
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
        lines.append(command("error" if p.fails_gate else "warning", message, **props))
    for r in result.results:
        if r.verdict == ERROR:
            lines.append(command("error", f"{r.object}:{r.program} on {r.kernel}: no verdict: {r.message}",
                                 title=f"compat: no verdict on {r.kernel}"))  # fmt: skip
    lines.append(command("notice", gate_summary(result, comparison), title="compat"))
    return "\n".join(lines) + "\n"
