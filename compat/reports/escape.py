"""Escaping for every medium compat writes to, in one place.

Every string that came from an object, a guest or a kernel (object, program, section, map and
kfunc names, paths, verifier and libbpf logs, messages, kernel release strings) is untrusted:
compat runs in CI on objects from pull requests. Each writer passes such strings through the one
function of this module that matches its medium, and nothing else escapes on its own:

- ``visible`` (compat/text.py, shared with the objects layer): the common first step. Control
  characters (C0, DEL, C1: ESC, CSI, OSC, BEL, CR,
  NEL …), lone surrogates (undecodable bytes of a file name), bidi overrides and isolates,
  line/paragraph separators and the noncharacters U+FFFE/U+FFFF become Python-style escapes
  (``\\x1b``, ``\\n``, ``\\u202e``): visible, ASCII, never interpreted by a terminal or a viewer.
- ``terminal``/``terminal_lines``: the table report and compat's own stderr lines.
- ``markdown``, ``markdown_code``, ``markdown_fence``, ``html``: pull-request comments.
- ``xml``: JUnit (characters XML 1.0 forbids never reach the XML library).
- ``junit_name``: a variable part of a JUnit classname (its dots would split packages).
- ``workflow_data``, ``workflow_property``: GitHub workflow commands (the toolkit's escaping).
- ``json_text``: texts of the SARIF file (the JSON encoder does the rest).
- ``csv_cell``: a cell of the CSV report (the csv module quotes separators and quotes).

And ``no_commands``: GitHub Actions treats any stdout line that begins (after white space) with
``::`` as a workflow command (``::add-mask::``, ``::stop-commands::`` …). Every report that can
be written to stdout runs its lines through it, so that only the commands compat itself wrote
begin with ``::``.
"""

from __future__ import annotations

import html as _html
import re

from compat.text import visible

# A line GitHub Actions reads as a workflow command: "::" after leading white space (the runner
# trims it), or the legacy "##[" form.
_COMMAND_START = re.compile(r"^(\s*)::")
_LEGACY_COMMAND = "##["


def no_command(line: str) -> str:
    """A line that GitHub Actions cannot read as a workflow command: a leading "::" gets a visible
    backslash ("\\::warning …"), and "##[" becomes "##\\[". Other lines are returned unchanged."""
    line = _COMMAND_START.sub(r"\1\\::", line, count=1)
    return line.replace(_LEGACY_COMMAND, "##\\[") if _LEGACY_COMMAND in line else line


def no_commands(text: str) -> str:
    """no_command on every line of text (the last step of every report that may go to stdout)."""
    if "::" not in text and _LEGACY_COMMAND not in text:
        return text
    return "\n".join(no_command(line) for line in text.split("\n"))


def terminal(text: object) -> str:
    """One line for a terminal or a table cell: controls (a newline too) shown as escapes."""
    return visible(text)


def terminal_lines(text: object) -> list[str]:
    """A multi-line text (a log) as terminal lines, each escaped and none a workflow command."""
    return [no_command(visible(line)) for line in str(text).split("\n")]


# Characters that format or link inline in CommonMark/GFM ("!" and "(" only after "[", "#" an
# issue reference); a backslash makes each literal (any ASCII punctuation may be escaped so).
# "|" splits table cells even inside code spans, "\|" does not.
# An "_" between two letters or digits cannot open or close emphasis (CommonMark's flanking
# rules), so names such as bpf_loop stay readable in the raw text.
_MD_SPECIAL = re.compile(r"[\\`*\[\]|~#<>&]|(?<![^\W_])_|_(?![^\W_])")
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _md_char(m: re.Match) -> str:
    ch = m.group()
    return _MD_ENTITIES.get(ch) or "\\" + ch


def markdown(text: object) -> str:
    """Inline markdown text (a table cell, a list item, a paragraph): no formatting, HTML, link or
    cell break comes from it, and no newline."""
    return _MD_SPECIAL.sub(_md_char, visible(text))


_PIPE = re.compile(r"(\\*)\|")


def markdown_code(text: object, table: bool = False) -> str:
    """An inline code span of text, however many backticks it holds; in a table cell (table=True)
    its pipes are escaped so that they do not split the cell."""
    body = visible(text)
    if table:
        # GitHub (cmark-gfm) pairs backslashes left to right when it splits a row: a pipe after an
        # odd run of them would split the cell, so the run is made even before "\|".
        body = _PIPE.sub(lambda m: m.group(1) + "\\" * (len(m.group(1)) % 2) + "\\|", body)
    runs = [len(r) for r in re.findall(r"`+", body)]
    fence = "`" * (max(runs, default=0) + 1)
    # A space on each side keeps a leading/trailing backtick apart from the fence; CommonMark
    # strips exactly one from each side when both are there.
    pad = " " if runs or (body.startswith(" ") and body.endswith(" ") and body.strip()) or not body else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def markdown_fence(lines: list[str], lang: str = "") -> list[str]:
    """A fenced code block of lines: each escaped, none a workflow command, and a fence longer than
    any run of backticks in them, so that no line can close it."""
    body = [no_command(visible(line)) for line in lines]
    longest = max((len(r) for line in body for r in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{lang}", *body, fence]


def html(text: object) -> str:
    """Text inside raw HTML of a markdown document (<summary>, <sub>): entities for <, >, &, quotes,
    and no newline (a blank line would end the HTML block and let markdown in)."""
    return _html.escape(visible(text))


def xml(text: object, multiline: bool = False) -> str:
    """Text for an XML 1.0 document (attribute or element text; the XML library escapes markup):
    characters XML 1.0 forbids become visible escapes; with multiline, newlines and tabs stay and
    no line is a workflow command (a JUnit file can be printed to a CI log)."""
    if not multiline:
        return visible(text)
    return "\n".join(no_command(visible(line, keep="\t")) for line in str(text).split("\n"))


def junit_name(text: object) -> str:
    """A variable part of a JUnit classname (an object or kernel id): its dots become "_", since
    JUnit viewers split "compat.<kernel>.<object>" into package and class at the last dot."""
    return visible(text).replace(".", "_")


def workflow_data(text: object) -> str:
    """The message of a GitHub workflow command: newlines kept (as %0A), other controls shown,
    then the toolkit's escaping (% %0D %0A)."""
    return visible(text, keep="\n").replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def workflow_property(text: object) -> str:
    """A property value of a GitHub workflow command: workflow_data's escaping, plus ':' and ','."""
    return workflow_data(visible(text)).replace(":", "%3A").replace(",", "%2C")


def json_document(text: str) -> str:
    """A serialized JSON document that GitHub Actions cannot read a legacy "##[" command in when it
    is printed to a log ("#" only occurs inside JSON strings, where "\\u005b" is the same "[")."""
    return text.replace(_LEGACY_COMMAND, "##\\u005b")


def xml_document(text: str) -> str:
    """A serialized XML document with every "##[" written "##&#91;" (the same text to a parser; only
    in attribute values and element text, where compat's documents have a "#")."""
    return text.replace(_LEGACY_COMMAND, "##&#91;")


def json_text(text: object) -> str:
    """A text of a JSON document meant for display (SARIF messages): newlines kept, every other
    control, bidi override and lone surrogate (which UTF-8 cannot encode) shown as an escape."""
    return visible(text, keep="\n")


# A spreadsheet reads a cell that begins with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@")


def csv_cell(text: object) -> str:
    """A cell of the CSV report: one line (controls shown as escapes), and a leading "=", "+", "-"
    or "@" preceded by "'" so that a spreadsheet shows it rather than evaluating it (OWASP's advice
    for CSV injection). Commas and quotes are left to the csv module's quoting."""
    cell = visible(text)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell
