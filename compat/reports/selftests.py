"""The reports of `compat selftests`: table (terminal), json and markdown.

Per point release: how many selftest expectations are met, not met and not judged, and which are
not met with why; then where each program's outcome changed (the last release with the old
outcome, the first with the new, with the BPF backports between them as suspects, worded as
candidates), and the expectations that are stale within the series. With several privileges
(--privilege), each release is shown once per mode ('6.12.43 (unprivileged)'), and a change or a
stale expectation names its mode. Everything that came from an object, a guest or a changelog goes
through escape.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from compat.errors import UserError
from compat.results.privilege import ROOT, column
from compat.run.bisect import SUSPECTS_ARE
from compat.run.selftests import Change, SweepResult

from . import escape
from .escape import markdown as md
from .escape import terminal as t

FORMATS = ("table", "json", "markdown")
FAILING_SHOWN = 40  # not-met programs listed per release in table and markdown (the JSON keeps all)
SUSPECTS_SHOWN = 20
MAX_MARKDOWN = 60_000


def _label(result: SweepResult, version: str, privilege: str) -> str:
    """A release as the report names it: with its mode when the sweep has several, or not root."""
    return column(version, privilege) if len(result.modes) > 1 or privilege != ROOT else version


def _mode(result: SweepResult, privilege: str) -> str:
    """' (unprivileged)' after a program's name when the sweep has several modes (or not root)."""
    return f" ({privilege})" if len(result.modes) > 1 or privilege != ROOT else ""


def _met(met: bool | None) -> str:
    return "met" if met is True else "not met" if met is False else "not judged"


def _head(result: SweepResult) -> list[str]:
    span = f"{result.releases[0]} to {result.releases[-1]}" if result.releases else "(empty)"
    lines = [f"series {result.series}, {span}: {len(result.releases)} point release(s); "
             f"{len(result.run.objects)} selftest object(s) from {result.source}, "
             f"{len(result.outcomes)} annotated program(s)"]  # fmt: skip
    if result.privileges:
        lines.append(f"checked under {', '.join(result.modes)} (--privilege; the unprivileged column is judged "
                     "against the tests' unprivileged expectations, caps is not judged)")  # fmt: skip
    if result.unannotated:
        lines.append(f"{result.unannotated} built object(s) carry no expectation: not checked")
    if result.not_built:
        lines.append(f"{result.not_built} selftest source(s) did not build (bench/selftests.py --list shows why)")
    for v, why in result.failed.items():
        lines.append(f"release {v}: no verdict ({why})")
    return lines


def _suspects(c: Change, esc: Callable[[object], str], indent: str, shown: int) -> list[str]:
    s = c.suspects
    if s.note:
        return [f"{indent}no suspects: {esc(s.note)}"]
    if not s.commits:
        return [
            f"{indent}no BPF-related commit in the changelogs between {esc(s.old_version)} and {esc(s.new_version)}"
        ]
    out = [f"{indent}suspects (candidates, newest first): {len(s.commits)}"]
    out += [f"{indent}  {esc(x.release)}: {esc(x.subject)}" for x in s.commits[:shown]]
    if len(s.commits) > shown:
        out.append(f"{indent}  … {len(s.commits) - shown} more (see --format json)")
    return out


def render_table(result: SweepResult) -> str:
    """The terminal report."""
    out = [("compat selftests: " if i == 0 else "") + t(line) for i, line in enumerate(_head(result))]
    out += ["", "Per point release (met / not met / not judged):"]
    for v, m in result.columns:
        n = result.counts(v, m)
        out.append(f"  {t(_label(result, v, m))}: {n['met']} / {n['not_met']} / {n['not_judged']}")
        failing = result.not_met(v, m)
        for (obj, prog), o in failing[:FAILING_SHOWN]:
            out.append(f"      ✗ {t(obj)}:{t(prog)}: {t(o.why or '')}")
        if len(failing) > FAILING_SHOWN:
            out.append(f"      … {len(failing) - FAILING_SHOWN} more (see --format json)")
    if result.changes:
        out += ["", "Where an expectation's outcome changed:"]
        for c in result.changes:
            before = f"{_met(c.before.met)} on {t(c.before.version)} ({t(c.before.verdict)})"
            after = f"{_met(c.after.met)} from {t(c.after.version)} ({t(c.after.verdict)})"
            out.append(f"  {t(c.object)}:{t(c.program)}{_mode(result, c.privilege)}: {before}, {after}")
            if c.after.why or c.before.why:
                out.append(f"    {t(c.after.why or c.before.why)}")
            out += _suspects(c, t, "    ", SUSPECTS_SHOWN)
        out += ["", t(SUSPECTS_ARE)]
    if result.stale:
        out += ["", "Stale expectations within the series:"]
        out += [f"  {t(s.object)}:{t(s.program)}{_mode(result, s.privilege)}: {t(s.words)}" for s in result.stale]
    if not result.changes:
        out += ["", "no expectation changed its outcome across the range"]
    return escape.no_commands("\n".join(escape.visible(x) for x in "\n".join(out).split("\n")) + "\n")


def render_json(result: SweepResult) -> str:
    """The JSON document (schema compat-selftests/v1)."""
    return escape.json_document(json.dumps(result.to_json(), indent=1, ensure_ascii=True)) + "\n"


def _code(text: object) -> str:
    return escape.markdown_code(text, table=True)


def render_markdown(result: SweepResult) -> str:
    """A pull-request comment or step summary; shortened to stay under GitHub's comment limit."""
    for shown in (FAILING_SHOWN, 10, 0):
        text = _markdown(result, shown)
        if len(text) <= MAX_MARKDOWN:
            return text
    cut = text.rfind("\n", 0, MAX_MARKDOWN - 80)
    return text[:cut] + "\n\n… (report shortened: see --format json for everything)\n"


def _markdown(result: SweepResult, shown: int) -> str:
    out = ["## compat selftests: the kernel's own BPF selftests on every point release", ""]
    out += [md(line) for line in _head(result)] + [""]
    out += ["| release | ✓ met | ✗ not met | ? not judged |", "|---|:-:|:-:|:-:|"]
    for v, m in result.columns:
        n = result.counts(v, m)
        out.append(f"| {md(_label(result, v, m))} | {n['met']} | {n['not_met']} | {n['not_judged']} |")
    out.append("")
    for v, m in result.columns:
        failing = result.not_met(v, m)
        if not failing or not shown:
            continue
        out += [f"<details><summary>{escape.html(_label(result, v, m))}: {len(failing)} not met</summary>", ""]
        out += [f"- {_code(f'{obj}:{prog}')}: {md(o.why or '')}" for (obj, prog), o in failing[:shown]]
        if len(failing) > shown:
            out.append(f"- … {len(failing) - shown} more (see the JSON report)")
        out += ["", "</details>", ""]
    if result.changes:
        out += ["### Where an expectation's outcome changed", ""]
        for c in result.changes:
            out.append(f"- {_code(f'{c.object}:{c.program}')}{md(_mode(result, c.privilege))}: "
                       f"{_met(c.before.met)} on {md(c.before.version)}, "
                       f"**{_met(c.after.met)}** from {md(c.after.version)}")  # fmt: skip
            out += ["  " + line for line in _suspects(c, md, "", min(shown, SUSPECTS_SHOWN) or 5)]
        out += ["", f"<sub>{md(SUSPECTS_ARE)}</sub>", ""]
    if result.stale:
        out += ["### Stale expectations within the series", ""]
        out += [f"- {_code(f'{s.object}:{s.program}')}{md(_mode(result, s.privilege))}: {md(s.words)}"
                for s in result.stale]  # fmt: skip
        out.append("")
    return escape.no_commands("\n".join(out) + "\n")


def render(fmt: str, result: SweepResult) -> str:
    """One report of a sweep in a format of FORMATS."""
    renderers = {"table": render_table, "json": render_json, "markdown": render_markdown}
    if fmt not in renderers:
        raise UserError(f"unknown format '{fmt}' for selftests", f"use one of {', '.join(FORMATS)}")
    return renderers[fmt](result)
