"""The terminal report: a programs × kernels matrix, the reasons, and a summary line."""

from __future__ import annotations

from tabulate import tabulate

from ..results import ACCEPTED, ERROR, REASONS, REJECTED, ProgramResult, RunResult


def _cell(r: ProgramResult | None) -> str:
    if r is None:
        return "-"
    if r.verdict == ACCEPTED:
        att = r.attach.get("status") if r.attach else None
        return "ok" if att != "failed" else "ok, attach failed"
    if r.verdict == REJECTED:
        return f"REJECTED {r.reason or ''}".strip()
    return "ERROR"


def kernel_heading(k) -> str:
    return k.id if k.version in k.id else f"{k.id} ({k.version})"


def render(result: RunResult) -> str:
    kernels = sorted(result.kernels, key=lambda k: k.order)
    rows = []
    seen: set[tuple[str, str]] = set()
    for r in result.results:
        key = (r.object, r.program)
        if key in seen:
            continue
        seen.add(key)
        rows.append([r.object, r.program, *(_cell(result.cell(r.object, r.program, k.id)) for k in kernels)])
    out = [tabulate(rows, headers=["object", "program", *(kernel_heading(k) for k in kernels)])] if rows else []

    details = []
    for r in result.results:
        if r.verdict != ACCEPTED:
            what = REASONS.get(r.reason or "", r.reason or "")
            details.append(f"  {r.object}:{r.program} on {r.kernel}: {what}: {r.message}")
        elif r.attach.get("status") == "failed":
            why = r.attach.get("reason")
            details.append(f"  {r.object}:{r.program} on {r.kernel}: loads, but attach failed: {why}")
    if details:
        out.append("\nWhy:\n" + "\n".join(details))
    for o in result.objects:
        if o.error:
            out.append(f"not checked: {o.error}")
    for k in kernels:
        if k.error:
            out.append(f"kernel {k.id}: {k.error}")
    out.append(summary_line(result))
    return "\n".join(out) + "\n"


def summary_line(result: RunResult) -> str:
    counts = {v: sum(1 for r in result.results if r.verdict == v) for v in (ACCEPTED, REJECTED, ERROR)}
    programs = len({(r.object, r.program) for r in result.results})
    checked = sum(1 for o in result.objects if not o.error)
    bad = len(result.objects) - checked
    text = (
        f"{checked} object(s), {programs} program(s), {len(result.kernels)} kernel(s): "
        f"{counts[ACCEPTED]} accepted, {counts[REJECTED]} rejected, {counts[ERROR]} error(s)"
    )
    if bad:
        text += f"; {bad} bad input(s)"
    return text
