"""The reports of `compat run` (compat/run/command.py's CommandResult): table, json, markdown.

Everything from the guest (output, kernel log, program and map names) is escaped for where it goes
(escape.py), as in every other report.
"""

from __future__ import annotations

import json

from compat.results.command import CommandResult, KernelRun

from . import escape

FORMATS = ("table", "json", "markdown")
LINES_SHOWN = 20  # of stdout, stderr and the kernel log, per kernel, in table and markdown


def verdict(k: KernelRun) -> str:
    """The kernel's cell in words: ok, failed (how) or error."""
    if k.ok is None:
        return "error"
    if k.timed_out:
        return "ok (still running at the timeout)" if k.ok else "failed (still running at the timeout)"
    if k.error:
        return "failed (could not start)"
    if k.ok:
        return "ok (exit 0)"
    return f"failed (killed by signal {k.signal})" if k.signal else f"failed (exit {k.exit_status})"


def _warned(k: KernelRun) -> str:
    kinds = sorted({str(w.get("kind")) for w in k.kernel_warnings})
    return f", but the kernel warned: {', '.join(kinds)}" if kinds else ""


def render(fmt: str, result: CommandResult) -> str:
    """The report of result in fmt (one of FORMATS)."""
    if fmt == "json":
        return escape.json_document(json.dumps(result.to_json(), indent=1, ensure_ascii=True)) + "\n"
    if fmt == "markdown":
        return escape.no_commands(markdown(result))
    return escape.no_commands(table(result))


def table(result: CommandResult) -> str:
    """A terminal report: a line per kernel, then each kernel's details."""
    t = escape.terminal
    out = [f"compat run {t(' '.join(result.argv))} ({result.kind}, timeout {result.timeout:g} s)", ""]
    width = max([len(t(k.kernel)) for k in result.kernels] + [6])
    for k in result.kernels:
        loaded = ", ".join(t(p) for p in k.programs) or "none"
        out.append(f"{t(k.kernel):<{width}}  {verdict(k)}{_warned(k)}; programs loaded: {loaded}")
    for k in result.kernels:
        out += ["", f"== {t(k.kernel)} ({t(k.release or k.version or '?')}): {verdict(k)}{_warned(k)}"]
        if k.error:
            out.append(f"  error: {t(k.error)}")
        if k.duration is not None:
            out.append(f"  duration: {k.duration:.2f} s")
        for p in k.program_details:
            insns = p.get("verified_insns")
            gone = "" if p.get("loaded_at_end") else ", gone at the end"
            out.append(f"  program {t(p['name'])} ({t(p['type'])}, id {p['id']}, verified insns "
                       f"{insns if insns is not None else 'unknown'}){gone}")  # fmt: skip
        for m in k.maps:
            out.append(f"  map {t(m['name'])} ({t(m['type'])}, id {m['id']}, key {m['key_size']}, value "
                       f"{m['value_size']}, entries {m['max_entries']})")  # fmt: skip
        for f in k.fidelity:
            out.append(f"  fidelity: {t(f.get('message', ''))}")
        for name, text, cut in (("stdout", k.stdout, k.stdout_truncated), ("stderr", k.stderr, k.stderr_truncated)):
            lines = text.splitlines()
            if lines:
                out.append(f"  {name}{' (cut)' if cut or len(lines) > LINES_SHOWN else ''}:")
                out += ["    " + line for line in escape.terminal_lines("\n".join(lines[:LINES_SHOWN]))]
        if k.kernel_log:
            cut = k.kernel_log_truncated or len(k.kernel_log) > LINES_SHOWN
            out.append(f"  kernel log{' (cut)' if cut else ''}:")
            out += ["    " + t(line) for line in k.kernel_log[:LINES_SHOWN]]
    failed = sum(1 for k in result.kernels if k.ok is False)
    errors = sum(1 for k in result.kernels if k.ok is None)
    out += ["", f"{len(result.kernels)} kernel(s): {len(result.kernels) - failed - errors} ok, {failed} failed, "
            f"{errors} error"]  # fmt: skip
    return "\n".join(out) + "\n"


def markdown(result: CommandResult) -> str:
    """A Markdown report: a table of kernels, then each kernel's details in a fenced block."""
    m, code = escape.markdown, escape.markdown_code
    out = [f"### compat run {code(' '.join(result.argv))}", "",
           "| kernel | result | programs loaded | maps | duration |", "|---|---|---|---|---|"]  # fmt: skip
    for k in result.kernels:
        programs = ", ".join(code(p, table=True) for p in k.programs) or "none"
        # a map the loader made twice (a load retried) is one name here; the JSON keeps each id
        maps = ", ".join(code(name, table=True) for name in dict.fromkeys(x["name"] for x in k.maps)) or "none"
        duration = f"{k.duration:.2f} s" if k.duration is not None else ""
        icon = "✅" if k.ok else ("❌" if k.ok is False else "⚠️")
        out.append(f"| {m(k.kernel)} | {icon} {m(verdict(k) + _warned(k))} | {programs} | {maps} | {duration} |")
    fidelity = [(k, f) for k in result.kernels for f in k.fidelity]
    if fidelity:
        out += ["", "**Generic load and your loader disagree:**", ""]
        out += [f"- {m(k.kernel)}: {m(f.get('message', ''))}" for k, f in fidelity]
    for k in result.kernels:
        out += ["", f"<details><summary>{escape.html(k.kernel)}: {escape.html(verdict(k))}</summary>", ""]
        if k.error:
            out += [f"Error: {m(k.error)}", ""]
        for name, lines in (("stdout", k.stdout.splitlines()), ("stderr", k.stderr.splitlines()),
                            ("kernel log", k.kernel_log)):  # fmt: skip
            if lines:
                out += [f"{name}:", "", *escape.markdown_fence(lines[:LINES_SHOWN]), ""]
        out.append("</details>")
    return "\n".join(out) + "\n"
