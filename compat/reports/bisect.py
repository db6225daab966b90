"""The reports of `compat bisect`: table (terminal), json and markdown (a pull-request comment:
"the next stable update breaks this program").

Per changed program: the last release with the old verdict, the first with the new one, both
verdicts with reasons and messages, the releases between them without a verdict, the
verifier-log diff at the boundary and the suspects (BPF backports between the two releases),
worded as candidates. Everything that came from an object, a guest or a changelog goes through
escape.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from compat.errors import UserError
from compat.results.model import ProgramResult
from compat.run.bisect import ASSUMPTION, SUSPECTS_ARE, BisectResult, Boundary

from . import escape
from .escape import markdown as md
from .escape import terminal as t

DIFF_LINES = 30  # log-diff lines shown per boundary (the JSON keeps the whole diff)
SUSPECTS_SHOWN = 40  # suspects listed per boundary in table and markdown (the JSON keeps all)
MAX_MARKDOWN = 60_000  # under GitHub's 65,536-character comment limit


def _verdict(r: ProgramResult) -> str:
    words = r.verdict
    if r.reason:
        words += f" ({r.reason})"
    return words


def _unknown_note(b: Boundary) -> str:
    return f"no verdict on {', '.join(b.unknown)} in between: the change is at one of them or at {b.after_version}"


def _summary(result: BisectResult) -> list[str]:
    lines = []
    span = f"{result.releases[0]} to {result.releases[-1]}" if result.releases else "(empty)"
    lines.append(f"series {result.series}, {span}: {len(result.releases)} point releases, "
                 f"{len(result.checked)} checked ({', '.join(result.checked)})")  # fmt: skip
    if not result.boundaries:
        if result.unchanged:
            lines.append("verdicts equal at both ends of the range: no change found")
        else:
            lines.append("no change found")
    if not result.exhaustive:
        lines.append(ASSUMPTION)
    for v, why in result.failed.items():
        lines.append(f"release {v} could not be checked (no verdict): {why}")
    return lines


def render_table(result: BisectResult) -> str:
    """The terminal report."""
    out = ["compat bisect: " + t(line) if i == 0 else t(line) for i, line in enumerate(_summary(result))]
    for b in result.boundaries:
        out += ["", f"{t(b.object)} {t(b.program)}: {t(_verdict(b.before))} on {t(b.before_version)}, "
                f"{t(_verdict(b.after))} from {t(b.after_version)}"]  # fmt: skip
        for side, r in (("before", b.before), ("after", b.after)):
            if r.message:
                out.append(f"  {side} ({t(r.kernel)}): {t(r.message)}")
        if b.unknown:
            out.append(f"  {t(_unknown_note(b))}")
        if b.logdiff.divergence:
            out.append(f"  log diff: {t(b.logdiff.divergence.describe())}")
        elif b.logdiff.note:
            out.append(f"  log diff: {t(b.logdiff.note)}")
        for line in b.logdiff.diff[:DIFF_LINES]:
            out.append("    " + t(line))
        if len(b.logdiff.diff) > DIFF_LINES:
            more = len(b.logdiff.diff) - DIFF_LINES + b.logdiff.left_off
            out.append(f"    … {more} more diff lines (see --format json)")
        out += _suspect_lines(b, t, "  ")
    if result.boundaries:
        out += ["", t(SUSPECTS_ARE)]
    if result.unchanged:
        out += ["", "unchanged" + ("" if result.exhaustive else " (at both ends)") + ":"]
        out += [f"  {t(o)} {t(p)}: {t(v)}" for o, p, v in result.unchanged]
    if result.no_verdict:
        out += ["", "no verdict on enough releases to compare:"]
        out += [f"  {t(o)} {t(p)}" for o, p in result.no_verdict]
    return escape.no_commands("\n".join(out) + "\n")


def _suspect_lines(b: Boundary, esc: Callable[[object], str], indent: str) -> list[str]:
    s = b.suspects
    head = f"{indent}suspects between {esc(b.before_version)} and {esc(b.after_version)} (candidates, newest first)"
    if s.note:
        return [f"{head}: none listed: {esc(s.note)}"]
    if not s.commits:
        return [f"{head}: the changelog lists no BPF-related commit in between"]
    lines = [f"{head}: {len(s.commits)}"]
    for c in s.commits[:SUSPECTS_SHOWN]:
        lines.append(f"{indent}  {esc(c.release)}: {esc(c.subject)}")
    if len(s.commits) > SUSPECTS_SHOWN:
        lines.append(f"{indent}  … {len(s.commits) - SUSPECTS_SHOWN} more (see --format json)")
    return lines


def render_json(result: BisectResult) -> str:
    """The JSON document (escaped for a JSON document: no command lines on stdout)."""
    return escape.json_document(json.dumps(result.to_json(), indent=1)) + "\n"


def render_markdown(result: BisectResult) -> str:
    """A pull-request comment; shortened (diffs, then suspects) to stay under GitHub's limit."""
    for diff, suspects in ((DIFF_LINES, SUSPECTS_SHOWN), (10, 15), (0, 5), (0, 0)):
        text = _markdown(result, diff, suspects)
        if len(text) <= MAX_MARKDOWN:
            return text
    cut = text.rfind("\n", 0, MAX_MARKDOWN - 80)
    return text[:cut] + "\n\n… (report shortened: see the JSON report for everything)\n"


def _markdown(result: BisectResult, diff_lines: int, suspects_shown: int) -> str:
    span = f"{result.releases[0]} → {result.releases[-1]}" if result.releases else ""
    out = [f"## compat bisect: Linux {md(result.series)} stable series {md(span)}"]
    if result.boundaries:
        out.append(f"**A stable update changes the verdict of {len(result.boundaries)} program(s).** "
                   "Where a program is rejected from some release on, the next stable update breaks it.")  # fmt: skip
        out += ["", "| object | program | last old verdict | first new verdict |", "|---|---|---|---|"]
        for b in result.boundaries:
            out.append(f"| {_code(b.object)} | {_code(b.program)} | {md(_verdict(b.before))} on "
                       f"{md(b.before_version)} | {md(_verdict(b.after))} from {md(b.after_version)} |")  # fmt: skip
    for line in _summary(result):
        out += ["", md(line)]
    for b in result.boundaries:
        out += ["", f"### {_code(b.object, False)} {_code(b.program, False)}: {md(b.before_version)} → "
                f"{md(b.after_version)}", ""]  # fmt: skip
        for side, r in (("last with the old verdict", b.before), ("first with the new verdict", b.after)):
            msg = f": {md(r.message)}" if r.message else ""
            out.append(f"- {side}: **{md(r.kernel)}**, {md(_verdict(r))}{msg}")
        if b.unknown:
            out.append(f"- {md(_unknown_note(b))}")
        if b.logdiff.divergence:
            out.append(f"- verifier log: {md(b.logdiff.divergence.describe())}")
        elif b.logdiff.note:
            out.append(f"- verifier log: {md(b.logdiff.note)}")
        if b.logdiff.diff and diff_lines:
            out += ["", "<details><summary>verifier-log diff</summary>", ""]
            out += escape.markdown_fence(b.logdiff.diff[:diff_lines], "diff")
            out += ["", "</details>"]
        s = b.suspects
        out += ["", f"Suspects between {md(b.before_version)} and {md(b.after_version)} (candidates, not a proven "
                "cause; newest first):"]  # fmt: skip
        if s.note:
            out.append(f"none listed: {md(s.note)}")
        elif not s.commits:
            out.append("the changelog lists no BPF-related commit in between")
        else:
            out.append("")
            out += [f"- {md(c.release)}: {md(c.subject)}" for c in s.commits[:suspects_shown]]
            if len(s.commits) > suspects_shown:
                out.append(f"- … {len(s.commits) - suspects_shown} more (see the JSON report)")
    if result.boundaries:
        out += ["", f"_{md(SUSPECTS_ARE)}_"]
    if result.unchanged:
        out += ["", "<details><summary>unchanged programs</summary>", ""]
        out += [f"- {_code(o, False)} {_code(p, False)}: {md(v)}" for o, p, v in result.unchanged]
        out += ["", "</details>"]
    if result.no_verdict:
        out += ["", "No verdict on enough releases to compare: "
                + ", ".join(f"{_code(o, False)} {_code(p, False)}" for o, p in result.no_verdict)]  # fmt: skip
    return escape.no_commands("\n".join(out) + "\n")


def _code(text: object, table: bool = True) -> str:
    return escape.markdown_code(text, table=table)


RENDERERS: dict[str, Callable[[BisectResult], str]] = {
    "table": render_table,
    "json": render_json,
    "markdown": render_markdown,
}


def render(fmt: str, result: BisectResult) -> str:
    """The report of a bisect in one format (table, json, markdown)."""
    try:
        return RENDERERS[fmt](result)
    except KeyError:
        raise UserError(f"unknown format '{fmt}' for bisect", f"use one of {', '.join(RENDERERS)}") from None
