"""What several reports share: kernel order and names, cells, source paths, reasons in words."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from compat_agent.elf.sections import CONTEXT, OPTION

from compat.objects.sourcemap import SourceLocation
from compat.results.classify import object_load_words, warning_words
from compat.results.compare import Comparison, kernel_name, kernel_version
from compat.results.model import REASONS, KernelInfo, ProgramResult, RunResult

__all__ = ["kernel_name", "kernel_version"]


def kernels(result: RunResult, comparison: Comparison) -> list[KernelInfo]:
    """The run's kernels along the kernel axis."""
    by_id = {k.id: k for k in result.kernels}
    ordered = [by_id[k] for k in comparison.kernel_order if k in by_id]
    return ordered + [k for k in result.kernels if k.id not in comparison.kernel_order]


def series_groups(kernels: list[KernelInfo]) -> list[tuple[str, list[KernelInfo]]]:
    """Consecutive point releases of one expanded stable series (``debian:6.12.*``, ``releases:``,
    bisect, selftests: KernelInfo.series) as one group: the kernel axis 5.10, 6.12.43, 6.12.57
    reads as 5.10 and 6.12 [two releases]. Any other kernel is a group of its own, so a matrix of
    one kernel per series, or two releases named one by one, reads as it always did."""
    groups: list[tuple[str, list[KernelInfo]]] = []
    for k in kernels:
        series = k.series
        last = groups[-1][1][-1] if groups else None
        if series and last is not None and groups[-1][0] == series and last.series == series and last.arch == k.arch:
            groups[-1][1].append(k)
        else:
            groups.append((series or k.id, [k]))
    return groups


def series_headings(kernels: list[KernelInfo]) -> dict[str, tuple[str, str]]:
    """{kernel id: (series line, point release line)} for the kernels of a series with more than
    one point release in the run: the series heads its first column, its releases sit under it.
    Empty for a matrix of one kernel per series (the reports stay as they were)."""
    out: dict[str, tuple[str, str]] = {}
    for series, members in series_groups(kernels):
        if len(members) < 2:
            continue
        for i, k in enumerate(members):
            # A mixed matrix has the series on both architectures: the arm64 group says so.
            arch = f" ({k.arch})" if k.arch != "amd64" else ""
            out[k.id] = (f"{series} series{arch}" if i == 0 else "", kernel_version(k, k.id))
    return out


def axis_order(kernels: list[KernelInfo], ids: list[str], sep: str, esc) -> str:
    """The kernel axis in words, a series of several point releases as one entry:
    '5.10 < 6.12 [6.12.43 … 6.12.118: 22 point releases]'."""
    by_id = {k.id: k for k in kernels}
    known = [by_id[i] for i in ids if i in by_id]
    if not series_headings(known):
        return sep.join(esc(i) for i in ids)
    parts = []
    for series, members in series_groups(known):
        if len(members) == 1:
            parts.append(esc(members[0].id))
        else:
            first, last = kernel_version(members[0]), kernel_version(members[-1])
            arch = f" ({esc(members[0].arch)})" if members[0].arch != "amd64" else ""
            parts.append(f"{esc(series)}{arch} [{esc(first)} … {esc(last)}: {len(members)} point releases]")
    parts += [esc(i) for i in ids if i not in by_id]
    return sep.join(parts)


def programs(result: RunResult, comparison: Comparison | None = None) -> list[tuple[str, str]]:
    """(object, program) of the run in first-seen order, then those only the baseline has."""
    seen: dict[tuple[str, str], None] = {}
    for r in result.results:
        seen.setdefault((r.object, r.program), None)
    for c in comparison.cells if comparison else []:
        seen.setdefault((c.object, c.program), None)
    return list(seen)


def reason_words(reason: str | None) -> str:
    return REASONS.get(reason or "", reason or "rejected")


def location(r: ProgramResult | None) -> SourceLocation | None:
    return SourceLocation.from_json(r.source) if r is not None else None


def display_path(file: str) -> str:
    """A source path as CI systems want it: relative to the workspace ($GITHUB_WORKSPACE, else the
    current directory) when it lies inside it, unchanged otherwise."""
    p = Path(file)
    if not p.is_absolute():
        return file
    for root in (os.environ.get("GITHUB_WORKSPACE"), os.getcwd()):
        if not root:
            continue
        try:
            return str(p.relative_to(Path(root)))
        except ValueError:
            continue
    return file


def axis_groups(comparison, by_kernel: dict[str, KernelInfo], regression_mark: str) -> list[tuple[list, str]]:
    """The kernel axis's programs worth reporting with their summaries, the programs of one
    object that share a summary and have no log divergence to show in one group (an object's
    dozen placeholder fentry programs read as one line): [(programs, summary)]."""
    groups: list[tuple[list, str]] = []
    for p in comparison.programs:
        if not p.worth_reporting():
            continue
        text = axis_summary(p, by_kernel, regression_mark)
        last = groups[-1][0][-1] if groups else None
        if last is not None and last.object == p.object and groups[-1][1] == text and _plain(last) and _plain(p):
            groups[-1][0].append(p)
        else:
            groups.append(([p], text))
    return groups


def _plain(p) -> bool:
    """No verifier log divergence to show under the program's axis line."""
    return not any(b.log_diff is not None and b.log_diff.divergence is not None for b in p.boundaries)


def axis_label(programs: list) -> str:
    """object:program, or object:{a, b, c} for a group."""
    names = [p.program for p in programs]
    return f"{programs[0].object}:" + (names[0] if len(names) == 1 else "{" + ", ".join(names) + "}")


def axis_summary(p, by_kernel: dict[str, KernelInfo], regression_mark: str) -> str:
    """One program along the kernel axis in words: its floor, where it is rejected, and the
    backport regression (accepted on an older kernel, rejected from a newer one)."""
    if p.floor is None:
        if p.rejected_for == "object_error":
            return "rejected on every kernel, all for an object error: the object or its loader's part, not a kernel"
        if p.rejected_for == "missing_attach_target":
            return (
                "rejected on every kernel, none of which has its attach target: a function newer than every "
                "kernel, one of another BPF program (its loader names the program: bpf_program__set_attach_target), "
                "or a placeholder its loader replaces at run time (--attach-target GLOB=FUNCTION names the real one)"
            )
        if p.rejected_for:
            return f"rejected on every kernel ({reason_words(p.rejected_for)})"
        by_reason: dict[str | None, list[str]] = {}
        for kernel, reason in p.reasons.items():
            by_reason.setdefault(reason, []).append(kernel)
        parts = [f"{reason_words(reason)} on {', '.join(ks)}" for reason, ks in by_reason.items()]
        return "rejected on every kernel" + (f": {'; '.join(parts)}" if parts else "")
    text = f"accepted from {kernel_name(by_kernel.get(p.floor), p.floor)}, rejected on {', '.join(p.rejected_on())}"
    if p.rejected_from:
        text += (
            f"; {regression_mark} accepted on {kernel_version(by_kernel.get(p.accepted_on))}, "
            f"rejected from {kernel_version(by_kernel.get(p.rejected_from))}"
        )
    return text


@dataclass
class Problem:
    """A rejected (or unverdicted) cell, with what the reports say about it."""

    result: ProgramResult
    kernel: KernelInfo | None
    regression: bool  # newly rejected against the baseline
    required: bool  # a rejection on a required kernel that fails the gate
    baseline_object: str | None = None

    @property
    def fails_gate(self) -> bool:
        return self.regression or self.required

    @property
    def where(self) -> str:
        return f"{self.result.object}:{self.result.program} on {kernel_name(self.kernel, self.result.kernel)}"


def problems(result: RunResult, comparison: Comparison, facts) -> list[Problem]:
    """Every rejected cell, in program then kernel-axis order."""
    by_kernel = {k.id: k for k in result.kernels}
    order = {k: i for i, k in enumerate(comparison.kernel_order)}
    required = {(r.object, r.program, r.kernel) for r in facts.required_rejections}
    regressions = {(c.object, c.program, c.kernel): c for c in facts.regressions}
    prog_order = {p: i for i, p in enumerate(programs(result))}
    out = []
    for r in result.results:
        if r.verdict != "rejected":
            continue
        key = (r.object, r.program, r.kernel)
        change = regressions.get(key)
        out.append(
            Problem(r, by_kernel.get(r.kernel), change is not None, key in required,
                    change.baseline_object if change else None)
        )  # fmt: skip
    out.sort(key=lambda p: (prog_order.get((p.result.object, p.result.program), 0), order.get(p.result.kernel, 0)))
    return out


def retyped(result: RunResult) -> list[str]:
    """One line per program loaded as a type its section does not give: guessed from its context
    argument or set by --program-type (its verdicts hold for that type)."""
    seen: dict[tuple[str, str], str] = {}
    for r in result.results:
        if r.prog_type_from in (CONTEXT, OPTION) and (r.object, r.program) not in seen:
            how = "set by --program-type" if r.prog_type_from == OPTION else "guessed from its context and helpers"
            seen[(r.object, r.program)] = f"{r.object}:{r.program} (section '{r.section}'): {r.prog_type}, {how}"
    return list(seen.values())


def clip(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"… {len(lines) - limit} more line(s)"]


def cell_findings(r: ProgramResult | None) -> tuple[str | None, str | None]:
    """What a cell adds to its verdict, in words: (the kernel warned during the check, a status of
    its own; the object as shipped does not load, or was built for another architecture's
    pt_regs), each None when it does not apply."""
    if r is None:
        return None, None
    said = [w for w in (object_load_words(r.object_load, r.program), r.pt_regs) if w]
    return warning_words(r.kernel_warnings), "; ".join(said) or None
