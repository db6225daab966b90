"""Markdown for a pull-request comment or $GITHUB_STEP_SUMMARY: the programs × kernels matrix
(✅ ❌ 🔺), the kernel axis, then one collapsible section per regression with the reason, the
source line and the verifier-log diff. Kept under GitHub's 65,536-character comment limit by
shortening the log diffs, then leaving out of the matrix the programs every kernel accepts, then
all but those with a regression or no verdict (a large object set's regressions must not be cut
off by its other rows), and last by cutting at a line."""

from __future__ import annotations

from compat.results import expectation
from compat.results.compare import NEWLY_ACCEPTED, NEWLY_REJECTED, REMOVED, STAT_KEYS, STAT_LABELS, Comparison
from compat.results.gate import facts, gate_summary
from compat.results.logdiff import LogDiff
from compat.results.model import ACCEPTED, ERROR, REJECTED, ProgramResult, RunResult
from compat.results.privilege import kernel_count

from . import common, escape
from .escape import markdown as md

ACCEPT, REJECT, REGRESSION, NO_VERDICT, FIXED, GONE = "✅", "❌", "🔺", "⚠️", "✅🆕", "➖"
MAX_CHARS = 60_000
DIFF_LIMITS = (80, 25, 0)
STATS_ROWS = 30  # statistics rows when the report must be shortened


def _expectations(judged: list[ProgramResult]) -> list[str]:
    """The annotated programs whose expectation is not met or not judged, with why."""
    unmet = [r for r in judged if r.expectation and r.expectation.get("met") is False]
    unjudged = [r for r in judged if r.expectation and r.expectation.get("met") is None]
    if not unmet and not unjudged:
        return [f"**Selftest expectations:** all {len(judged)} met", ""] if judged else []
    out = [f"**Selftest expectations:** {len(judged) - len(unmet) - len(unjudged)} met, {len(unmet)} not met, "
           f"{len(unjudged)} not judged", ""]  # fmt: skip
    for r in unmet + unjudged:
        e = r.expectation or {}
        why = str(e.get("why") or "")
        what = "✗ not met: " if e.get("met") is False else "? " if "not judged" in why else "? not judged: "
        out.append(f"- {_code(f'{r.object}:{r.program}')} on {md(r.kernel)}: expected {md(e.get('expected') or '?')}, "
                   f"{what}{md(why)}")  # fmt: skip
    return [*out, ""]


def _cell(r: ProgramResult | None, transition: str | None) -> str:
    text = _verdict_cell(r, transition)
    warned, shipped = common.cell_findings(r)
    text = f"{text} ⚠️ ({md(warned)})" if warned else text
    return f"{text} ({md(shipped)})" if shipped else text


def _verdict_cell(r: ProgramResult | None, transition: str | None) -> str:
    if r is None:
        return GONE if transition == REMOVED else " "
    if r.verdict == ACCEPTED:
        if transition == NEWLY_ACCEPTED:
            return FIXED
        return ACCEPT + (" (attach failed)" if r.attach.get("status") == "failed" else "")
    if r.verdict == REJECTED:
        return REGRESSION if transition == NEWLY_REJECTED else REJECT
    return NO_VERDICT


_code = escape.markdown_code
_fenced = escape.markdown_fence


def render(result: RunResult, comparison: Comparison) -> str:
    # Regressions' log diffs matter more than the rows of programs every kernel accepts.
    attempts = [(compact, limit) for limit in DIFF_LIMITS for compact in (0, 1)] + [(2, x) for x in DIFF_LIMITS]
    for compact, limit in attempts:
        text = _render(result, comparison, limit, compact)
        if len(text) <= MAX_CHARS:
            return text
    cut = text.rfind("\n", 0, MAX_CHARS - 80)
    return text[:cut] + "\n\n… (report shortened: see the JSON result file for everything)\n"


def _render(result: RunResult, comparison: Comparison, diff_limit: int, compact: int = 0) -> str:
    """The report; compact 1 leaves the programs every kernel accepts out of the matrix, 2 all
    but those with a regression (against the baseline or along the kernel axis) or no verdict,
    and the kernel axis's lines but those of regressions."""
    f = facts(result, comparison)
    kernels = common.kernels(result, comparison)
    by_kernel = {k.id: k for k in result.kernels}
    out = ["## compat: BPF programs × kernels", ""]
    if comparison.baseline is not None:
        n = len(f.regressions)
        head = f"{REGRESSION} **{n} regression(s)**" if n else f"{ACCEPT} **no regression**"
        out.append(f"{head} against {_code(comparison.baseline.label)} · {f.programs} program(s) × "
                   f"{kernel_count(result.kernels)}")  # fmt: skip
    else:
        out.append(f"{f.programs} program(s) × {kernel_count(result.kernels)} · no baseline")
    if f.required_rejections:
        out.append(f"\n{REJECT} **{len(f.required_rejections)} rejection(s) on required kernels**")
    out.append("")

    grouped = common.series_headings(kernels)
    # A series of several point releases: the series heads its first column, each release under it.
    top = {k.id: (grouped[k.id][0] or "·", grouped[k.id][1]) if k.id in grouped else (k.id, common.kernel_version(k))
           for k in kernels}  # fmt: skip
    header = ["program", *(f"{md(top[k.id][0])}<br><sub>{md(top[k.id][1])}</sub>" for k in kernels)]
    out.append("| " + " | ".join(header) + " |")
    out.append("|---|" + "|".join(":-:" for _ in kernels) + "|")
    backported = {(p.object, p.program) for p in comparison.programs if p.rejected_from}
    left_out = 0
    for obj, prog in common.programs(result, comparison):
        cells = []
        for k in kernels:
            change = comparison.cell(obj, prog, k.id)
            r = result.cell(obj, prog, k.id)
            emark = expectation.mark(r)
            cells.append(_cell(r, change.transition if change else None) + (f" {emark}" if emark else ""))
        if (compact == 1 and all(c == ACCEPT for c in cells)) or (
            compact == 2 and (obj, prog) not in backported and not {REGRESSION, NO_VERDICT} & set(cells)
        ):
            left_out += 1
            continue
        out.append(f"| {_code(obj, table=True)} {_code(prog, table=True)} | " + " | ".join(cells) + " |")
    if left_out:
        what = "accepted on every kernel" if compact == 1 else "without a regression or a missing verdict"
        out.append(f"| *{left_out} more program(s), {what}* |" + "|".join(" " for _ in kernels) + "|")
    legend = f"{ACCEPT} accepted · {REJECT} rejected · {NO_VERDICT} no verdict (infrastructure error)"
    if comparison.baseline is not None:
        legend += f" · {REGRESSION} newly rejected (regression) · {FIXED} newly accepted · {GONE} removed"
    judged = [r for r in result.results if r.expectation is not None]
    if judged:
        legend += " · selftest expectation: ✓ met, ✗ not met, ? not judged"
    out += ["", f"<sub>{legend}</sub>", ""]
    out += _expectations(judged)

    axis = _axis(comparison, by_kernel, backports_only=compact == 2)
    if axis:
        order = common.axis_order(result.kernels, comparison.kernel_order, " → ", md)
        out += [f"**Kernel axis** ({order}):", "", *axis, ""]

    if f.regressions:
        out += ["### Regressions", ""]
        for c in f.regressions:
            r = result.cell(c.object, c.program, c.kernel)
            title = (f"{REGRESSION} <code>{escape.html(c.object)}:{escape.html(c.program)}</code> on "
                     f"{escape.html(common.kernel_name(by_kernel.get(c.kernel), c.kernel))}: "
                     f"{escape.html(common.reason_words(c.reason))}")  # fmt: skip
            body = [f"**Reason:** {md(common.reason_words(c.reason))}: {md(r.message if r else '')}", ""]
            bver = f", {c.baseline_kernel_version}" if c.baseline_kernel_version else ""
            body += [f"**Baseline:** accepted ({_code(c.baseline_object or '?')}{md(bver)})", ""]
            body += _source(r)
            body += _diff(c.log_diff, diff_limit)
            out += _details(title, body)

    backports = [p for p in comparison.programs if p.rejected_from]
    if backports:
        out += ["### Rejected on a newer kernel after an older one accepted", ""]
        for p in backports:
            r = result.cell(p.object, p.program, p.rejected_from or "")
            title = (
                f"{REGRESSION} <code>{escape.html(p.object)}:{escape.html(p.program)}</code>: accepted on "
                f"{escape.html(common.kernel_version(by_kernel.get(p.accepted_on), p.accepted_on or '?'))}, "
                f"rejected from "
                f"{escape.html(common.kernel_version(by_kernel.get(p.rejected_from), p.rejected_from or '?'))}"
            )
            body = [f"**Reason:** {md(common.reason_words(r.reason if r else None))}: {md(r.message if r else '')}",
                    ""]
            body += _source(r)
            boundary = next((b for b in p.boundaries if b.newer == p.rejected_from), None)
            body += _diff(boundary.log_diff if boundary else None, diff_limit)
            out += _details(title, body)

    boundaries = [(p, b) for p in comparison.programs for b in p.boundaries if b.newer != p.rejected_from]
    if boundaries and diff_limit:
        lines = []
        for p, b in boundaries:
            older = common.kernel_name(by_kernel.get(b.older), b.older)
            newer = common.kernel_name(by_kernel.get(b.newer), b.newer)
            mark = (ACCEPT, REJECT) if b.kind == "rejected_from" else (REJECT, ACCEPT)
            lines += [f"**{_code(f'{p.object}:{p.program}')}**: {md(older)} {mark[0]} → {md(newer)} {mark[1]}", ""]
            lines += [*_diff(b.log_diff, min(diff_limit, 40)), ""]
        out += _details(f"Verifier-log diffs at the kernel-axis boundaries ({len(boundaries)})", lines)

    others = [p for p in common.problems(result, comparison, f) if not p.regression]
    if others:
        lines = []
        for p in others:
            loc = common.location(p.result)
            at = f" at {_code(f'{common.display_path(loc.file)}:{loc.line}')}" if loc else ""
            gate = " **(required kernel)**" if p.required else ""
            lines.append(f"- {_code(p.where)}{gate}: {md(common.reason_words(p.result.reason))}: "
                         f"{md(p.result.message)}{at}")  # fmt: skip
        out += _details(f"{REJECT} Other rejections ({len(others)})", lines)

    errors = [r for r in result.results if r.verdict == ERROR]
    if errors:
        lines = [f"- {_code(f'{r.object}:{r.program} on {r.kernel}')}: {md(r.message)}" for r in errors]
        out += _details(f"{NO_VERDICT} No verdict ({len(errors)})", lines)

    retyped = common.retyped(result)
    if retyped:
        lines = [f"- {_code(line)}" for line in retyped]
        out += _details(f"Program types their sections do not give ({len(retyped)})", lines)

    stats = _stats(comparison, STATS_ROWS if compact else None)
    if stats:
        out += _details("Verifier statistics against the baseline", stats)

    out += ["", f"<sub>{md(gate_summary(result, comparison))}</sub>"]
    # Values are escaped where they are written; no line may still read as a workflow command.
    return escape.no_commands("\n".join(out).rstrip() + "\n")


def _details(title: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{title}</summary>", "", *body, "", "</details>", ""]


def _source(r: ProgramResult | None) -> list[str]:
    loc = common.location(r)
    if loc is None:
        return []
    out = [f"**Source:** {_code(f'{common.display_path(loc.file)}:{loc.line}')}", ""]
    if loc.text:
        out += [*_fenced([loc.text], "c"), ""]
    return out


def _diff(d: LogDiff | None, limit: int) -> list[str]:
    if d is None:
        return []
    out = []
    if d.divergence is not None:
        out += [f"**First divergent instruction:** {_code(d.divergence.describe())}", ""]
    elif d.note:
        out += [f"*{md(d.note)}*", ""]
    if d.diff and limit:
        lines = common.clip(d.diff, limit)
        if d.left_off:
            lines.append(f"… {d.left_off} more line(s) in the result file")
        out += ["**Verifier log diff** (normalized):", "", *_fenced(lines, "diff")]
    elif d.diff:
        out += [f"*Verifier log diff: {len(d.diff)} line(s), in the JSON result file.*"]
    return out


def _axis(comparison: Comparison, by_kernel: dict, backports_only: bool = False) -> list[str]:
    groups = common.axis_groups(comparison, by_kernel, REGRESSION)
    shown = [(ps, text) for ps, text in groups if not backports_only or ps[0].rejected_from]
    lines = [f"- {_code(common.axis_label(programs))}: {md(text)}" for programs, text in shown]
    left = sum(len(ps) for ps, _ in groups) - sum(len(ps) for ps, _ in shown)
    if left:
        lines.append(f"- *{left} more program(s) rejected on some kernel without a regression: the table report "
                     "and the JSON result file have them*")  # fmt: skip
    return lines


def _stats(comparison: Comparison, limit: int | None = None) -> list[str]:
    """The table of verifier statistics that changed against the baseline; with a limit, only
    that many rows, the largest changes of instructions processed first."""
    changed = [c for c in comparison.cells if c.stats_changed()]
    total = len(changed)
    if limit is not None and total > limit:
        key = "insns_processed"
        changed = sorted(changed, key=lambda c: -abs(c.stats[key].delta or 0) if key in c.stats else 0)[:limit]
    rows = [
        f"| {_code(f'{c.object}:{c.program}', table=True)} | {md(c.kernel)} | "
        + " | ".join(c.stats[k].describe() if k in c.stats else "" for k in STAT_KEYS)
        + " |"
        for c in changed
    ]
    if not rows:
        return []
    head = "| program | kernel | " + " | ".join(STAT_LABELS[k] for k in STAT_KEYS) + " |"
    more = [f"\n*{total - len(rows)} more, in the JSON result file*"] if total > len(rows) else []
    return [head, "|---|---|" + "---:|" * len(STAT_KEYS), *rows, *more]
