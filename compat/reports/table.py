"""The terminal report: a programs × kernels matrix (kernel-axis order, regressions marked), the
reasons with their source lines, the regressions with their log diffs, the kernel axis, the
statistics that changed against the baseline, and a summary line."""

from __future__ import annotations

from tabulate import tabulate

from compat.results import expectation
from compat.results.compare import NEWLY_ACCEPTED, NEWLY_REJECTED, REMOVED, STAT_KEYS, STAT_LABELS, Comparison
from compat.results.gate import facts, gate_summary
from compat.results.model import ACCEPTED, ERROR, REJECTED, ProgramResult, RunResult
from compat.results.privilege import kernel_count

from . import common, escape
from .escape import terminal as t

REGRESSION_MARK = "▲"
DIFF_LINES = 30


def _cell(r: ProgramResult | None, transition: str | None) -> str:
    text = _verdict_cell(r, transition)
    warned, shipped = common.cell_findings(r)
    text = f"{text}, but {t(warned)}" if warned else text
    return f"{text}; {t(shipped)}" if shipped else text


def _verdict_cell(r: ProgramResult | None, transition: str | None) -> str:
    if r is None:
        return "removed" if transition == REMOVED else "-"
    if r.verdict == ACCEPTED:
        att = r.attach.get("status") if r.attach else None
        text = "ok" if att != "failed" else "ok, attach failed"
        return f"{text} (fixed)" if transition == NEWLY_ACCEPTED else text
    if r.verdict == REJECTED:
        text = f"REJECTED {t(r.reason or '')}".strip()
        return f"{REGRESSION_MARK} {text}" if transition == NEWLY_REJECTED else text
    return "ERROR"


def kernel_heading(k) -> str:
    return t(common.kernel_name(k))


def render(result: RunResult, comparison: Comparison) -> str:
    kernels = common.kernels(result, comparison)
    rows = []
    for obj, prog in common.programs(result, comparison):
        cells = []
        for k in kernels:
            change = comparison.cell(obj, prog, k.id)
            r = result.cell(obj, prog, k.id)
            mark = expectation.mark(r)
            cells.append(_cell(r, change.transition if change else None) + (f" {mark}" if mark else ""))
        rows.append([t(obj), t(prog), *cells])
    grouped = common.series_headings(kernels)
    # A series of several point releases: the series heads its first column, each release under it.
    headings = ["\n".join(t(x) for x in grouped[k.id]) if k.id in grouped else kernel_heading(k) for k in kernels]
    out = [tabulate(rows, headers=["object", "program", *headings], disable_numparse=True)] if rows else []
    if comparison.baseline is not None:
        out.append(
            f"baseline: {t(comparison.baseline.label)} ({comparison.baseline.kind}); "
            f"{REGRESSION_MARK} = newly rejected (regression), (fixed) = newly accepted"
        )

    f = facts(result, comparison)
    details = []
    for p in common.problems(result, comparison, f):
        r = p.result
        mark = f"{REGRESSION_MARK} " if p.regression else ""
        details.append(f"  {mark}{t(p.where)}: {t(common.reason_words(r.reason))}: {t(r.message)}")
        loc = common.location(r)
        if loc is not None:
            text = f": {t(loc.text)}" if loc.text else ""
            details.append(f"      at {t(common.display_path(loc.file))}:{loc.line}{text}")
    for r in result.results:
        if r.verdict == ERROR:
            details.append(f"  {t(r.object)}:{t(r.program)} on {t(r.kernel)}: {t(common.reason_words(r.reason))}: "
                           f"{t(r.message)}")  # fmt: skip
        elif r.verdict == ACCEPTED and r.attach.get("status") == "failed":
            why = r.attach.get("reason")
            details.append(f"  {t(r.object)}:{t(r.program)} on {t(r.kernel)}: loads, but attach failed: {t(why)}")
    if details:
        out.append("\nWhy:\n" + "\n".join(details))
    retyped = common.retyped(result)
    if retyped:
        out.append("\nProgram types their sections do not give (--program-type GLOB=SECTION sets them):")
        out.extend(f"  {t(line)}" for line in retyped)

    out.extend(_expectations(result))
    out.extend(_regressions(result, comparison, f))
    out.extend(_axis(result, comparison))
    out.extend(_stats(result, comparison))
    for o in result.objects:
        if o.error:
            out.append(f"not checked: {t(o.error)}")
    for k in kernels:
        if k.error:
            out.append(f"kernel {t(k.id)}: {t(k.error)}")
    out.append(t(summary_line(result, comparison)))
    # Every value above is escaped; this pass is the backstop: no control character and no line
    # GitHub Actions would read as a workflow command, whatever a future line forgets.
    return escape.no_commands("\n".join(escape.visible(line) for line in "\n".join(out).split("\n"))) + "\n"


def _expectations(result: RunResult) -> list[str]:
    """The annotated programs' expectations: a legend, those not met and those not judged, with why."""
    judged = [r for r in result.results if r.expectation is not None]
    if not judged:
        return []
    unmet = [r for r in judged if (r.expectation or {}).get("met") is False]
    unjudged = [r for r in judged if (r.expectation or {}).get("met") is None]
    out = [f"\nSelftest expectations (✓ met, ✗ not met, ? not judged): {len(judged) - len(unmet) - len(unjudged)} met, "
           f"{len(unmet)} not met, {len(unjudged)} not judged"]  # fmt: skip
    for r in unmet + unjudged:
        e = r.expectation or {}
        why = str(e.get("why") or "")
        what = "not met: " if e.get("met") is False else "" if "not judged" in why else "not judged: "
        out.append(f"  {t(r.object)}:{t(r.program)} on {t(r.kernel)}: expected {t(e.get('expected') or '?')}, "
                   f"{what}{t(why)}")  # fmt: skip
    return out


def _regressions(result: RunResult, comparison: Comparison, f) -> list[str]:
    if not f.regressions:
        return []
    by_kernel = {k.id: k for k in result.kernels}
    out = [f"\nRegressions against {t(comparison.baseline.label) if comparison.baseline else 'the baseline'}:"]
    for c in f.regressions:
        r = result.cell(c.object, c.program, c.kernel)
        kname = common.kernel_name(by_kernel.get(c.kernel))
        out.append(f"  {REGRESSION_MARK} {t(c.object)}:{t(c.program)} on {t(kname)}: accepted in the baseline "
                   f"({t(c.baseline_object)}), now {t(common.reason_words(c.reason))}")  # fmt: skip
        if r is not None and r.message:
            out.append(f"      {t(r.message)}")
        loc = common.location(r)
        if loc is not None:
            text = f": {t(loc.text)}" if loc.text else ""
            out.append(f"      at {t(common.display_path(loc.file))}:{loc.line}{text}")
        d = c.log_diff
        if d is not None:
            if d.divergence is not None:
                out.append(f"      first divergent instruction: {t(d.divergence.describe())}")
            elif d.note:
                out.append(f"      {t(d.note)}")
            if d.diff:
                out.append("      verifier log diff (normalized):")
                out.extend(f"        {t(line)}" for line in common.clip(d.diff, DIFF_LINES))
    return out


def _axis(result: RunResult, comparison: Comparison) -> list[str]:
    by_kernel = {k.id: k for k in result.kernels}
    lines = []
    for programs, text in common.axis_groups(comparison, by_kernel, REGRESSION_MARK):
        lines.append(f"  {t(common.axis_label(programs))}: {t(text)}")
        for b in programs[0].boundaries:
            if b.log_diff is not None and b.log_diff.divergence is not None:
                lines.append(f"      {t(b.older)} → {t(b.newer)}: {t(b.log_diff.divergence.describe())}")
    if not lines:
        return []
    order = common.axis_order(result.kernels, comparison.kernel_order, " < ", t)
    return [f"\nKernel axis ({order}):", *lines]


def _stats(result: RunResult, comparison: Comparison) -> list[str]:
    lines = []
    for c in comparison.cells:
        if not c.stats_changed():
            continue
        parts = [f"{STAT_LABELS[k]} {c.stats[k].describe()}" for k in STAT_KEYS if k in c.stats]
        lines.append(f"  {t(c.object)}:{t(c.program)} on {t(c.kernel)}: " + t(", ".join(parts)))
    return ["\nVerifier statistics against the baseline:", *lines] if lines else []


def summary_line(result: RunResult, comparison: Comparison | None = None) -> str:
    counts = {v: sum(1 for r in result.results if r.verdict == v) for v in (ACCEPTED, REJECTED, ERROR)}
    programs = len({(r.object, r.program) for r in result.results})
    checked = sum(1 for o in result.objects if not o.error)
    bad = len(result.objects) - checked
    text = (
        f"{checked} object(s), {programs} program(s), {kernel_count(result.kernels)}: "
        f"{counts[ACCEPTED]} accepted, {counts[REJECTED]} rejected, {counts[ERROR]} error(s)"
    )
    if bad:
        text += f"; {bad} bad input(s)"
    if comparison is not None:
        f = facts(result, comparison)
        if comparison.baseline is not None or f.required_rejections or f.unmet or comparison.backport_regressions():
            text += "; " + gate_summary(result, comparison, counts=False)
    return text
