"""The gate: the exit status of `compat check` and `compat report`, and the summary line.

Policies (--fail-on):
  regression (default)  fail on a regression against the baseline (a cell accepted in the
                        baseline and rejected now), and on a rejection on a kernel the matrix marks
                        `required: true` when the baseline has no verdict for that cell (always so
                        without a baseline);
  rejection             fail on any rejection;
  expectation           fail on any program whose verdict or verifier messages do not meet
                        what its selftest annotations expect (comment:test_expect_*; see
                        results/expectation.py); a program judged "not judged" does not fail;
  warning               fail on any cell whose check made the kernel warn (a WARN, BUG, verifier
                        bug, REG INVARIANTS VIOLATION, lockdep or KASAN report in its log),
                        accepted or not;
  never                 verdicts never fail the gate (reports only).
Exit statuses (compat/errors.py): 2 bad input (some object was not checked) before 1 the gate
failed, before 3 an infrastructure error left some cell without a verdict, before 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compat.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, EXIT_USAGE

from .compare import ADDED, NO_VERDICT, CellChange, Comparison, kernel_name
from .model import ERROR, REASONS, REJECTED, ProgramResult, RunResult
from .privilege import kernel_count

FAIL_ON = ("regression", "rejection", "expectation", "warning", "never")


@dataclass
class Facts:
    """What the gate looks at."""

    programs: int
    kernels: int
    regressions: list[CellChange] = field(default_factory=list)
    required_rejections: list[ProgramResult] = field(default_factory=list)
    rejections: list[ProgramResult] = field(default_factory=list)
    unmet: list[ProgramResult] = field(default_factory=list)  # expectations not met
    warned: list[ProgramResult] = field(default_factory=list)  # cells whose check made the kernel warn
    errors: int = 0
    bad_objects: int = 0


def facts(result: RunResult, comparison: Comparison) -> Facts:
    required = {k.id for k in result.kernels if k.required}
    f = Facts(
        programs=len({(r.object, r.program) for r in result.results}),
        kernels=len(result.kernels),
        regressions=comparison.regressions(),
        rejections=[r for r in result.results if r.verdict == REJECTED],
        unmet=[r for r in result.results if r.expectation is not None and r.expectation.get("met") is False],
        warned=[r for r in result.results if r.kernel_warnings],
        errors=sum(1 for r in result.results if r.verdict == ERROR) + sum(1 for k in result.kernels if k.error),
        bad_objects=sum(1 for o in result.objects if o.error),
    )
    for r in f.rejections:
        if r.kernel not in required:
            continue
        if comparison.baseline is not None:
            change = comparison.cell(r.object, r.program, r.kernel)
            if change is not None and change.transition not in (ADDED, NO_VERDICT):
                continue  # the baseline has a verdict for this cell: only a regression fails the gate
        f.required_rejections.append(r)
    return f


def exit_status(result: RunResult, comparison: Comparison, fail_on: str = "regression", bad_input: bool = False) -> int:
    f = facts(result, comparison)
    if bad_input or f.bad_objects:
        return EXIT_USAGE
    if fail_on == "rejection" and f.rejections:
        return EXIT_FAILED
    if fail_on == "regression" and (f.regressions or f.required_rejections):
        return EXIT_FAILED
    if fail_on == "expectation" and f.unmet:
        return EXIT_FAILED
    if fail_on == "warning" and f.warned:
        return EXIT_FAILED
    if f.errors:
        return EXIT_INFRA
    return EXIT_OK


def _reason(reason: str | None) -> str:
    return REASONS.get(reason or "", reason or "?")


# The summary line names at most this many items of each of its lists, then says how many more:
# on 361 real objects the unbounded line listed every boundary in 10,000 characters.
SUMMARY_NAMED = 5


def _named(items: list[str]) -> str:
    """The first SUMMARY_NAMED items, then 'and K more (see the report)'."""
    shown = ", ".join(items[:SUMMARY_NAMED])
    more = len(items) - SUMMARY_NAMED
    return shown + (f", and {more} more (see the report)" if more > 0 else "")


def gate_summary(result: RunResult, comparison: Comparison, counts: bool = True) -> str:
    """'N programs, K kernels: R regressions: a.o:p on 5.10 (missing helper), …': the counts, then at
    most SUMMARY_NAMED named items per list and how many more (the line every command prints)."""
    f = facts(result, comparison)
    kernels = {k.id: k for k in result.kernels}
    text = f"{f.programs} program(s), {kernel_count(result.kernels)}: " if counts else ""
    if comparison.baseline is None:
        text += "no baseline"
    else:
        n = len(f.regressions)
        text += f"{n} regression(s) against {comparison.baseline.label}"
        if n:
            text += ": " + _named([
                f"{c.object}:{c.program} on {kernel_name(kernels.get(c.kernel), c.kernel)} ({_reason(c.reason)})"
                for c in f.regressions
            ])  # fmt: skip
    if f.required_rejections:
        text += f"; {len(f.required_rejections)} rejection(s) on required kernels: " + _named([
            f"{r.object}:{r.program} on {kernel_name(kernels.get(r.kernel), r.kernel)} ({_reason(r.reason)})"
            for r in f.required_rejections
        ])  # fmt: skip
    if f.unmet:
        text += f"; {len(f.unmet)} expectation(s) not met: " + _named([
            f"{r.object}:{r.program} on {kernel_name(kernels.get(r.kernel), r.kernel)}" for r in f.unmet
        ])  # fmt: skip
    if f.warned:
        text += f"; the kernel warned on {len(f.warned)} cell(s): " + _named([
            f"{r.object}:{r.program} on {kernel_name(kernels.get(r.kernel), r.kernel)}" for r in f.warned
        ])  # fmt: skip
    backports = comparison.backport_regressions()
    if backports:
        text += f"; {len(backports)} rejected on a newer kernel after an older one accepted: " + _named([
            f"{p.object}:{p.program} (accepted on {_version(kernels, p.accepted_on)}, "
            f"rejected from {_version(kernels, p.rejected_from)})"
            for p in backports
        ])  # fmt: skip
    return text


def _version(kernels: dict, kid: str | None) -> str:
    k = kernels.get(kid or "")
    return k.version if k is not None and k.version and k.version != "?" else str(kid)
