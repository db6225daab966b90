"""Hostile names through every report format (issue 14, deliverable 2; issue 19's escaping defects).

A run is built through the real result model (tests/synthetic_run.py) and its object, program,
section, kernel, message, log and source strings are replaced by hostile text: control
characters, ESC/OSC sequences, bidi overrides, "::" workflow commands, "|", "</details>", "<b>",
backticks, "*", newlines, NUL, U+FFFE, lone surrogates. Each format's output is then checked with
its real parser: JSON (json + the result schema), JUnit (ElementTree), SARIF (json + structure),
markdown (markdown-it-py with tables), GitHub workflow commands (the toolkit's rules), table (no
control byte). In no format may a line begin with "::" unless compat wrote that command.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from conftest import run_compat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from synthetic_run import baseline, current

from compat.reports import RENDERERS, escape, junit, render
from compat.results.compare import compare
from compat.results.model import SCHEMA_FILE, RunResult

SCHEMA = json.loads(SCHEMA_FILE.read_text())
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)  # built once: most of a check's time
MD = MarkdownIt("commonmark").enable("table")
COMMANDS = {"error", "warning", "notice", "group", "endgroup"}
COMMAND_PROPS = {"title", "file", "line", "col", "endLine", "endColumn"}
ALLOWED_TAGS = {"details", "summary", "sub", "br", "code"}
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Characters no terminal line of compat's may carry raw.
FORBIDDEN_IN_TERMINAL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

# The pieces hostile names are made of.
PIECES = [
    "::warning title=t::text", "::add-mask::x", "::stop-commands::tok", "##[error]x", "|", "||", "\\|",
    "</details>", "<details>", "<b>", "</code>", "<script>", "&amp;", "`", "```", "``", "*", "**", "_", "[x](y)",
    "\n", "\r\n", "\r", "\x00", "\x1b[31m", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\", "\x9b2J", "\x07", "\x7f",
    "\t", "\x0b", "\x0c", "\x85", "\u2028", "\ufffe", "\uffff", "\udcff", "\ud800", "%0A", "%", ":", ",", " ", "  ",
    "#1", "@user", "-", "a", "é", "🔺", *BIDI,
]
hostile_text = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(alphabet=st.characters(max_codepoint=0x3000), max_size=4)),
    min_size=1, max_size=8,
).map("".join)  # fmt: skip


def hostile_run(
    obj: str, prog: str, kernel: str, message: str, log_line: str, source: str, label: str = "x"
) -> tuple[RunResult, object]:
    """The synthetic run and its baseline with counter.o, count_getpid and kernel 5.10 renamed to
    hostile names (suffixed so that they never meet the fixture's other names), and hostile text in
    the message, log, section, source path and line, and kernel label and release."""
    names = {"counter.o": obj + "·o", "count_getpid": prog + "·p", "5.10": kernel + "·k"}

    def rename(run: RunResult, baseline_run: bool) -> RunResult:
        for k in run.kernels:
            if k.id == "5.10":
                k.label, k.release = label + k.label, label + k.release
            k.id = names.get(k.id, k.id)
        for o in run.objects:
            o.object = names.get(o.object, o.object)
            o.programs = [names.get(p, p) for p in o.programs]
        for r in run.results:
            hit = r.object == "counter.o" and r.program == "count_getpid"
            r.object, r.program, r.kernel = (names.get(x, x) for x in (r.object, r.program, r.kernel))
            if hit and not baseline_run:
                r.section = message + r.section
                if r.message:
                    r.message += message
                    r.detail = (r.detail or "") + message
                r.log = (r.log or "") + log_line + "\n"
                if r.source:
                    r.source = {**r.source, "file": "src/" + source + ".c", "text": source}
        return run

    now, old = rename(current(), False), rename(baseline(), True)
    return now, compare(now, old, "file", label + "release.json")


def assert_no_foreign_commands(fmt: str, text: str) -> None:
    """Every line that GitHub would read as a workflow command is one compat wrote (github format
    only) and parses by the toolkit's rules."""
    for line in text.split("\n"):
        stripped = line.lstrip()
        if not stripped.startswith("::"):
            # The runner tries the legacy form, "##[command]", anywhere in a line that is no "::"
            # command (a "::" command line is parsed as such first).
            assert "##[" not in line, (fmt, line)
            continue
        assert fmt == "github", (fmt, line)
        parse_command(stripped)


def parse_command(line: str) -> tuple[str, dict[str, str], str]:
    """A workflow command as the runner parses it (ActionCommand.TryParseV2), checked."""
    end = line.find("::", 2)
    assert end > 0, line
    name, _, props_text = line[2:end].partition(" ")
    assert name in COMMANDS, line
    props = {}
    for prop in filter(None, props_text.split(",")):
        key, sep, value = prop.partition("=")
        assert sep and key in COMMAND_PROPS, line
        props[key] = value.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",")
        props[key] = props[key].replace("%25", "%")
        assert not re.search("[\x00-\x1f\x7f-\x9f]", props[key]), line
    data = line[end + 2 :].replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", data), line
    return name, props, data


def html_tags(tokens) -> list[str]:
    """The names of the HTML tags of a markdown-it token stream (blocks and inline)."""
    tags = []
    for t in tokens:
        if t.type in ("html_block", "html_inline"):
            tags += re.findall(r"<\s*/?\s*([A-Za-z][A-Za-z0-9-]*)", t.content)
        tags += html_tags(t.children or [])
    return tags


def matrix_rows(tokens) -> list[list]:
    """The rows (header first) of the first table: per cell, its inline token."""
    rows, row, inside = [], None, False
    for t in tokens:
        if t.type == "table_open":
            inside = True
        elif t.type == "table_close":
            break
        elif inside and t.type == "tr_open":
            row = []
        elif inside and t.type == "tr_close":
            rows.append(row)
        elif inside and t.type == "inline" and row is not None:
            row.append(t)
    return rows


def _no_pipe_escapes(text: str) -> str:
    return re.sub(r"\\+\|", "|", text)


def check_all_formats(now: RunResult, comparison, obj: str, prog: str, kernel: str) -> dict[str, str]:
    """Render every format and check each with its parser; the outputs by format."""
    out = {fmt: render(fmt, now, comparison) for fmt in RENDERERS}
    hobj, hprog, hkernel = obj + "·o", prog + "·p", kernel + "·k"

    # JSON: valid, schema-valid, and the record keeps the names exactly.
    doc = json.loads(out["json"])
    VALIDATOR.validate(doc)
    # (A high and a low lone surrogate side by side are a pair to JSON: one character.)
    paired = [x.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass") for x in (hobj, hprog)]
    assert {r["object"] for r in doc["results"]} >= {paired[0]}
    assert {r["program"] for r in doc["results"]} >= {paired[1]}
    assert out["json"].isascii()

    # JUnit: parses, names round-trip through the XML escaping, classname splits at compat's dots.
    root = ET.fromstring(out["junit"].split("\n", 1)[1])
    cases = root.findall("./testsuite/testcase")
    assert escape.xml(hprog) in {c.get("name") for c in cases}
    classnames = {c.get("classname") for c in cases}
    assert junit.classname(hkernel, hobj) in classnames
    for c in classnames:
        assert c.count(".") == 2 and c.startswith("compat."), c

    # SARIF: JSON with its structure; no raw control character in any message.
    sarif = json.loads(out["sarif"])
    run = sarif["runs"][0]
    for result in run["results"]:
        assert {"ruleId", "message", "locations"} <= set(result)
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]", result["message"]["text"])
        assert result["properties"]["object"] in (escape.json_text(hobj), "filter.o")
    assert escape.json_text(hobj) in {r["properties"]["object"] for r in run["results"]}
    out["sarif"].encode()  # encodable (no lone surrogate)

    # Markdown: the matrix keeps its columns with the 🔺 under the hostile kernel, names are
    # code and never HTML, <details> blocks balance.
    tokens = MD.parse(out["markdown"])
    rows = matrix_rows(tokens)
    kernels = now.kernels
    assert len(rows) == 1 + len({(r.object, r.program) for r in now.results} | {(hobj, "xdp_old")})
    header = [c.content for c in rows[0]]
    assert len(header) == 1 + len(kernels)
    column = next(i for i, h in enumerate(header) if h.endswith("<sub>5.10.262</sub>"))
    first = rows[1]
    assert first[column].content == "🔺", [c.content for c in first]
    assert all(c.content == "✅" for i, c in enumerate(first) if i not in (0, column))
    codes = [c.content for c in first[0].children if c.type == "code_inline"]
    # Mid-line, only the legacy "##[" command prefix is altered (to "##\\[").
    shown = [_no_pipe_escapes(escape.visible(name).replace("##[", "##\\[")) for name in (hobj, hprog)]
    assert [_no_pipe_escapes(c) for c in codes] == shown
    tags = html_tags(tokens)
    assert {t.lower() for t in tags} <= ALLOWED_TAGS, tags
    opened = sum(1 for t in tokens if t.type == "html_block" and "<details>" in t.content)
    closed = sum(1 for t in tokens if t.type == "html_block" and "</details>" in t.content)
    assert opened == closed

    # GitHub: every command line parses; the others are plain.
    names = [parse_command(line)[0] for line in out["github"].splitlines() if line.startswith("::")]
    assert names and names[-1] == "notice"

    # Table: no control byte but newlines, no ESC, no bidi override.
    assert not FORBIDDEN_IN_TERMINAL.search(out["table"]), repr(FORBIDDEN_IN_TERMINAL.search(out["table"]))
    out["table"].encode()

    for fmt, text in out.items():
        assert_no_foreign_commands(fmt, text)
        assert not FORBIDDEN_IN_TERMINAL.search(text.replace("\t", "")), fmt
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=hostile_text, prog=hostile_text, kernel=hostile_text, message=hostile_text, log_line=hostile_text,
       source=hostile_text, label=hostile_text)  # fmt: skip
def test_hostile_names_in_every_format(obj, prog, kernel, message, log_line, source, label):
    now, comparison = hostile_run(obj, prog, kernel, message, log_line, source, label)
    check_all_formats(now, comparison, obj, prog, kernel)


@settings(max_examples=60, deadline=None)
@given(obj=hostile_text, prog=hostile_text, kernel=hostile_text, message=hostile_text)
def test_hostile_names_add_no_line(obj, prog, kernel, message):
    """Names and messages never start a line: every line-oriented format has as many lines as with
    plain names (the log stays plain here: its own lines are lines)."""
    plain = hostile_run("x", "y", "z", "m", "", "s")
    hostile = hostile_run(obj, prog, kernel, message, "", "s")
    for fmt in ("table", "markdown", "github", "junit"):
        a, b = render(fmt, *plain), render(fmt, *hostile)
        assert a.count("\n") == b.count("\n"), fmt


# The reproductions of issue 14 and issue 19, one by one.

INJECTION = "x\n::warning title=t::text"


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_object_name_with_a_workflow_command_starts_no_line(fmt):
    now, comparison = hostile_run(INJECTION, "p", "5.10", "m", "", "s")
    text = render(fmt, now, comparison)
    assert_no_foreign_commands(fmt, text)
    assert not any(line.lstrip().startswith("::warning title=t") for line in text.split("\n"))


def test_verifier_log_line_that_is_a_command_is_shown_not_run():
    now, comparison = hostile_run("o", "p", "5.10", "m", "::add-mask::secret", "s")
    for fmt in ("table", "markdown", "junit", "github"):
        text = render(fmt, now, comparison)
        assert_no_foreign_commands(fmt, text)
    assert "\\::add-mask::secret" in render("markdown", now, comparison)


def test_pipe_in_a_name_keeps_the_regression_in_its_kernel_column():
    now, comparison = hostile_run("a|b|c", "p|q", "5.10", "m", "", "s")
    check_all_formats(now, comparison, "a|b|c", "p|q", "5.10")
    row = next(line for line in render("markdown", now, comparison).splitlines() if "a\\|b" in line)
    assert row.endswith("| 🔺 | ✅ | ✅ | ✅ |"), row


def test_html_in_a_name_is_not_html():
    now, comparison = hostile_run("</details><b>x</b>", "<b>p</b>", "5.10", "</summary>", "", "<i>")
    md = render("markdown", now, comparison)
    assert "b" not in html_tags(MD.parse(md)) and "</summary></summary>" not in md
    assert "&lt;/details&gt;&lt;b&gt;x&lt;/b&gt;·o:&lt;b&gt;p&lt;/b&gt;·p" in md  # in <summary>
    check_all_formats(now, comparison, "</details><b>x</b>", "<b>p</b>", "5.10")


def test_markdown_emphasis_and_backticks_in_names_stay_literal():
    now, comparison = hostile_run("*o*", "`p``", "5.10", "**bold** [l](http://x)", "```", "`")
    md = render("markdown", now, comparison)
    tokens = MD.parse(md)
    first = matrix_rows(tokens)[1]
    assert [c.content for c in first[0].children if c.type == "code_inline"] == ["*o*·o", "`p``·p"]
    assert "\\*\\*bold\\*\\* \\[l\\](http://x)" in md
    # The log line "```" cannot close the fence of the verifier-log diff.
    fences = [t for t in tokens if t.type == "fence"]
    assert any("```" in t.content for t in fences)


def test_escape_sequences_are_shown_not_sent():
    esc = "\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://evil\x1b\\"
    now, comparison = hostile_run("o" + esc, "p\u202egnp.exe", "5.10", esc, esc, "s")
    table = render("table", now, comparison)
    assert "\x1b" not in table and "\u202e" not in table and "\x07" not in table
    assert "o\\x1b[2J\\x1b]0;pwned\\x07" in table and "p\\u202egnp.exe" in table
    check_all_formats(now, comparison, "o" + esc, "p\u202egnp.exe", "5.10")


def test_control_characters_make_valid_junit():
    nasty = "a\x00b\x01\x08\x0b\x0c\x1b\x1f\ufffe\uffff\ud800c"
    now, comparison = hostile_run(nasty, nasty, "5.10", nasty, nasty, nasty)
    xml = render("junit", now, comparison)
    root = ET.fromstring(xml.split("\n", 1)[1])
    names = {c.get("name") for c in root.iter("testcase")}
    assert escape.xml(nasty + "·p") in names
    xml.encode()


def test_junit_classname_does_not_split_at_the_dots_of_names():
    now, comparison = hostile_run("bpf_loop.o", "p", "5.10", "m", "", "s")
    root = ET.fromstring(render("junit", now, comparison).split("\n", 1)[1])
    classnames = {c.get("classname") for c in root.iter("testcase")}
    assert "compat.5_10·k.bpf_loop_o·o" in classnames
    assert "compat.6_1_170.filter_o" in classnames
    assert junit.classname("5.10", "bpf_loop.o") == "compat.5_10.bpf_loop_o"


def test_workflow_command_escaping_is_githubs():
    assert escape.workflow_data("50% a\nb") == "50%25 a%0Ab"
    assert escape.workflow_data("a\rb") == "a\\rb"  # a carriage return is shown, as everywhere
    assert escape.workflow_property("a:b,c\n%") == "a%3Ab%2Cc\\n%25"
    assert escape.workflow_data("\x1b[31m") == "\\x1b[31m"


def test_no_command_guard():
    assert escape.no_command("::error::x") == "\\::error::x"
    assert escape.no_command("   ::group::x") == "   \\::group::x"
    assert escape.no_command("a ::b") == "a ::b"
    assert escape.no_command("x ##[error]y") == "x ##\\[error]y"


def test_visible_is_idempotent_and_ascii_for_controls():
    text = "".join(chr(c) for c in range(0x00, 0xA0)) + BIDI + "\ufffe\uffff\ud800\udfff\u2028"
    once = escape.visible(text)
    assert escape.visible(once) == once
    assert not FORBIDDEN_IN_TERMINAL.search(once)
    once.encode("utf-8")


def test_markdown_code_spans_survive_any_backticks():
    for text in ["`", "``", "a```b", "` x `", " ", "x`"]:
        span = escape.markdown_code(text)
        tokens = MD.parseInline(span)[0].children
        assert [t.content for t in tokens if t.type == "code_inline"] == [text], span


def test_cli_error_lines_show_hostile_file_names(tmp_path):
    """compat's own stderr lines that name an object escape it: a file name with a newline and a
    workflow command, or an ESC sequence, is one visible line."""

    bad = [tmp_path / "x\n::warning title=t::text.o", tmp_path / "y\x1b[31m.o"]
    for path in bad:
        path.write_bytes(b"garbage")
    missing = tmp_path / "gone\n::error::x.o"
    proc = run_compat("check", *map(str, bad), str(missing), "--kernel", "6.1", timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("compat: error: ") for line in lines), lines
    assert "x\\n::warning title=t::text.o: not an ELF file" in lines[0]
    assert "y\\x1b[31m.o" in lines[1] and "\x1b" not in proc.stderr
    assert proc.stdout == ""


def test_cli_error_line_of_a_user_error_is_one_escaped_line(tmp_path):
    """A usage error that names a file (here a --baseline and a `compat report` input that do not
    exist) is one line: its newline and ESC are shown, not sent (failed before: the error line was
    split and its second line began with "::warning")."""

    obj = tmp_path / "a.o"  # the baseline is read first: the object is never opened
    obj.write_bytes(b"garbage")
    runs = [
        ["check", str(obj), "--baseline", str(tmp_path / "b\n::warning title=t::x.json"), "--kernel", "6.1"],
        ["report", str(tmp_path / "r\x1b[31m\n::error::x.json")],
    ]
    for args in runs:
        proc = run_compat(*args, timeout=60)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("compat: error: "), lines
        assert "\x1b" not in proc.stderr and "\\n::" in lines[0]


def test_object_errors_use_the_one_escaper():
    # objfile had its own escaper, which let bidi overrides (U+202E) and lone surrogates through;
    # it now shows texts as every writer does (compat.text.visible), and controls as before.
    from compat.objects.objfile import one_line
    from compat.text import visible

    for text in ["sec\u202eevil", "a\udc80b", "x\x1b[2Jy", "tab\there", "line\u2028sep", "ok"]:
        assert one_line(text, 0) == visible(text) == escape.terminal(text)
    assert one_line("sec\u202eevil", 0) == "sec\\u202eevil"
    assert one_line("\x00\n\x85", 0) == "\\x00\\n\\x85"  # the old escaper's output, kept


def test_probe_diff_shows_guest_names_escaped():
    # `compat probe --diff` printed the helper, kfunc and type names the guest sent as they came.
    from compat.cli.kernels import diff_lines
    from compat.results.inventory import Inventory, diff

    old = Inventory(kfuncs={"bpf_x"}, map_types={"hash": True})
    new = Inventory(kfuncs={"bpf_x", "evil\x1b]0;owned\x07"}, map_types={"hash": True, "ring\nbuf": True})
    lines = diff_lines(diff(old, new, {}))
    assert "  + kfuncs: evil\\x1b]0;owned\\x07" in lines and "  + map types: ring\\nbuf" in lines
    assert all(line.isprintable() for line in lines)
    assert diff_lines(diff(old, old, {})) == ["  no change"]
