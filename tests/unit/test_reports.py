"""Every report format against golden files (tests/golden/), from a synthetic run and baseline
(tests/synthetic_run.py: no VM). COMPAT_UPDATE_GOLDEN=1 rewrites the golden files.

Also: the JSON document validates against the result schema, SARIF against a subset of the
SARIF 2.1.0 schema, JUnit parses into testsuites/testsuite/testcase with failures for
rejections, and `compat report` reproduces the same output from the saved JSON.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from conftest import run_compat
from synthetic_run import baseline, current

from compat.reports import RENDERERS, render
from compat.results.compare import compare
from compat.results.model import SCHEMA_FILE

GOLDEN = Path(__file__).parents[1] / "golden"
UPDATE = os.environ.get("COMPAT_UPDATE_GOLDEN") == "1"
SUFFIX = {"table": "txt", "json": "json", "markdown": "md", "github": "txt", "junit": "xml", "sarif": "sarif.json",
          "csv": "csv", "requirements": "md", "requirements-json": "json"}  # fmt: skip


def comparison_with_baseline():
    return compare(current(), baseline(), "file", "release-1.2.json")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run the tests with COMPAT_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text()
    assert text == expected, f"{name} differs from its golden file (COMPAT_UPDATE_GOLDEN=1 regenerates it)"


@pytest.fixture(autouse=True)
def _no_workspace(monkeypatch):
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)


def test_every_format_has_a_golden_test():
    assert set(RENDERERS) == set(SUFFIX)


@pytest.mark.parametrize("fmt", sorted(SUFFIX))
def test_format_with_baseline_matches_golden(fmt):
    check_golden(f"baseline.{fmt}.{SUFFIX[fmt]}", render(fmt, current(), comparison_with_baseline()))


@pytest.mark.parametrize("fmt", ["table", "markdown", "github", "junit", "sarif", "csv", "requirements"])
def test_format_without_baseline_matches_golden(fmt):
    check_golden(f"nobaseline.{fmt}.{SUFFIX[fmt]}", render(fmt, current(), compare(current())))


def test_json_document_is_schema_valid_and_carries_the_comparison():
    doc = json.loads(render("json", current(), comparison_with_baseline()))
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    comp = doc["comparison"]
    assert comp["kernel_order"] == ["5.10", "6.1.170", "6.1.176", "sid"]
    assert comp["summary"]["regressions"] == 1
    regression = next(c for c in comp["cells"] if c["transition"] == "newly_rejected")
    assert (regression["program"], regression["kernel"]) == ("count_getpid", "5.10")
    assert regression["log_diff"]["diff"][0].startswith("--- baseline counter.o:count_getpid on 5.10")
    assert comp["baseline_result"]["schema"] == "compat/v1" and "comparison" not in comp["baseline_result"]


def test_markdown_names_regression_reason_source_and_diff():
    md = render("markdown", current(), comparison_with_baseline())
    assert "| `counter.o` `count_getpid` | 🔺 | ✅ | ✅ | ✅ |" in md
    section = md.split("<summary>🔺 <code>counter.o:count_getpid</code> on 5.10 (5.10.262): missing helper</summary>")[
        1
    ]
    section = section.split("</details>")[0]
    assert "helper bpf_loop (181) is not available on this kernel" in section
    assert "`src/counter.bpf.c:31`" in section and "bpf_loop(1, add_one, &step, 0);" in section
    assert "```diff" in section
    assert "accepted on 6.1.170, rejected from 6.1.176" in md


def test_github_annotations():
    lines = render("github", current(), comparison_with_baseline()).splitlines()
    errors = [ln for ln in lines if ln.startswith("::error file=")]
    assert len(errors) == 1
    assert errors[0].startswith("::error file=src/counter.bpf.c,line=31,col=2,title=compat%3A count_getpid rejected")
    assert any(ln.startswith("::warning file=src/filter.bpf.c,line=14,") for ln in lines)
    # no baseline: a rejection on the required kernel fails the gate, so it is an error
    lines = render("github", current(), compare(current())).splitlines()
    assert any(ln.startswith("::error file=src/filter.bpf.c,line=14,") for ln in lines)
    assert any(ln.startswith("::warning file=src/counter.bpf.c,line=31,") for ln in lines)


# The part of SARIF 2.1.0 that viewers (GitHub code scanning) need, as a JSON Schema.
SARIF_SUBSET = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "version": {"type": "string"},
                                    "rules": {
                                        "type": "array",
                                        # what GitHub code scanning shows of a rule
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "shortDescription", "fullDescription", "help"],
                                            "properties": {
                                                "help": {"type": "object", "required": ["text", "markdown"]},
                                                "fullDescription": {"type": "object", "required": ["text"]},
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "message", "locations", "partialFingerprints"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": {
                                    "type": "object",
                                    "required": ["text"],
                                    "properties": {"text": {"type": "string"}},
                                },
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation"],
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "required": ["uri"],
                                                        "properties": {"uri": {"type": "string", "minLength": 1}},
                                                    },
                                                    "region": {
                                                        "type": "object",
                                                        "required": ["startLine"],
                                                        "properties": {
                                                            "startLine": {"type": "integer", "minimum": 1},
                                                            "startColumn": {"type": "integer", "minimum": 1},
                                                        },
                                                    },
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_sarif_structure():
    doc = json.loads(render("sarif", current(), comparison_with_baseline()))
    _validate_sarif(doc)
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "compat"
    (result,) = run["results"]  # one result per regression
    assert result["ruleId"] == "regression/missing_helper" and result["level"] == "error"
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "src/counter.bpf.c"
    assert physical["region"]["startLine"] == 31
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]


def _official_sarif_schema() -> dict | None:
    """The official SARIF 2.1.0 schema (sarif-schema-2.1.0.json of oasis-tcs/sarif-spec) when
    COMPAT_SARIF_SCHEMA names a copy of it: the tests run offline and the repository does not carry
    it, so without it SARIF_SUBSET stands in."""
    path = os.environ.get("COMPAT_SARIF_SCHEMA")
    return json.loads(Path(path).read_text()) if path else None


def _validate_sarif(doc: dict) -> None:
    jsonschema.validate(doc, SARIF_SUBSET)
    official = _official_sarif_schema()
    if official is not None:
        jsonschema.validators.validator_for(official)(official).validate(doc)


def test_sarif_one_result_per_program_rule_and_line():
    """A program rejected for one reason at one line on several kernels is one result listing them
    (GitHub fingerprints by the line: per-kernel results collapsed into one alert); two programs
    failing at one shared line stay two results with distinct fingerprints."""
    now, old = current(), baseline()
    template = next(r for r in now.results if r.program == "count_getpid" and r.kernel == "5.10")
    for r in now.results:  # count_getpid now rejected on 6.1.170 too, at the same line
        if r.program == "count_getpid" and r.kernel == "6.1.170":
            r.verdict, r.reason, r.message, r.source = "rejected", template.reason, template.message, template.source
    twin = copy.deepcopy([r for r in now.results if r.program == "count_getpid"])
    for r in twin:
        r.program = "count_getpid_twin"
    now.results += twin
    old.results += copy.deepcopy([r for r in old.results if r.program == "count_getpid"])
    for r in old.results[-4:]:
        r.program = "count_getpid_twin"
    doc = json.loads(render("sarif", now, compare(now, old, "file", "old.json")))
    _validate_sarif(doc)
    results = doc["runs"][0]["results"]
    assert [(r["properties"]["program"], r["properties"]["kernels"]) for r in results] == [
        ("count_getpid", ["5.10", "6.1.170"]), ("count_getpid_twin", ["5.10", "6.1.170"])]  # fmt: skip
    assert "is rejected on 5.10 (5.10.262), 6.1.170;" in results[0]["message"]["text"]
    prints = [r["partialFingerprints"] for r in results]
    assert prints[0] != prints[1] and all(set(p) == {"compatProgram/v2", "primaryLocationLineHash"} for p in prints)
    # stable: the same alert whatever kernels it fails on
    assert prints[0] == json.loads(render("sarif", current(), comparison_with_baseline()))["runs"][0]["results"][0][
        "partialFingerprints"]  # fmt: skip
    for rule in doc["runs"][0]["tool"]["driver"]["rules"]:
        assert rule["fullDescription"]["text"] and rule["help"]["text"] and rule["help"]["markdown"]


def test_sarif_without_source_points_at_the_object():
    run = current()
    for r in run.results:
        r.source = None
    doc = json.loads(render("sarif", run, compare(run, baseline(), "file", "b.json")))
    _validate_sarif(doc)
    (result,) = doc["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "build/counter.o"}}


def test_junit_structure():
    root = ET.fromstring(render("junit", current(), comparison_with_baseline()))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        "compat 5.10 (5.10.262)",
        "compat 6.1.170",
        "compat 6.1.176",
        "compat sid (7.2.13)",
    ]
    cases = root.findall("testsuite/testcase")
    assert len(cases) == 4 * 4 == int(root.get("tests"))  # one per program × kernel (xdp_old is gone)
    failures = root.findall("testsuite/testcase/failure")
    # the regression fails; filter.o:xdp_filter's rejection on the required 6.1.176 was rejected in
    # the baseline too: the gate passes it, so it passes, its verdict in system-out
    assert len(failures) == 1 == int(root.get("failures"))
    assert failures[0].get("type") == "missing_helper" and failures[0].get("message").startswith("regression: ")
    assert "src/counter.bpf.c:31" in failures[0].text
    allowed = next(c for c in cases if (c.get("classname"), c.get("name")) == ("compat.6_1_176.filter_o", "xdp_filter"))
    assert allowed.find("failure") is None and allowed.find("skipped") is None
    assert "rejected (verifier rejection)" in allowed.find("system-out").text
    assert len(root.findall("testsuite/testcase/error")) == 1 == int(root.get("errors"))
    for suite in suites:
        assert int(suite.get("tests")) == len(suite.findall("testcase"))


def _junit_counts(xml: str) -> tuple[int, int]:
    root = ET.fromstring(xml.split("\n", 1)[1])
    assert len(root.findall("testsuite/testcase/failure")) == int(root.get("failures"))
    return int(root.get("failures")), int(root.get("errors"))


def test_junit_failures_follow_the_gate(tmp_path):
    """A result checked against itself as baseline passes the gate: its JUnit has no failure (it had
    one per rejection, which turned Jenkins and GitLab builds red while compat exited 0)."""
    run = current()
    run.results = [r for r in run.results if r.verdict != "error"]  # no exit 3 to muddle the gate
    saved = tmp_path / "run.json"
    saved.write_text(render("json", run, compare(run)))
    out = tmp_path / "junit.xml"
    proc = run_compat("report", str(saved), "--baseline", str(saved), "--format", "junit", "--output", str(out),
                      cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _junit_counts(out.read_text()) == (0, 0)
    rejections = sum(r.verdict == "rejected" for r in run.results)
    assert out.read_text().count("<system-out>rejected (") == rejections > 0
    # --fail-on rejection: every rejection fails the gate and is a failure
    proc = run_compat("report", str(saved), "--baseline", str(saved), "--fail-on", "rejection", "--format", "junit",
                      "--output", str(out), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1 and _junit_counts(out.read_text()) == (rejections, 0)
    # --fail-on never: no failure at all
    assert _junit_counts(render("junit", run, compare(run), fail_on="never")) == (0, 0)


def test_junit_regression_is_a_failure_and_errors_stay_errors():
    now = current()
    comparison = comparison_with_baseline()
    assert _junit_counts(render("junit", now, comparison)) == (1, 1)  # the regression; sid's guest died
    # without a baseline, the rejection on the required kernel fails the gate: a failure
    xml = render("junit", now, compare(now))
    assert _junit_counts(xml) == (1, 1) and 'message="required kernel: ' in xml
    assert _junit_counts(render("junit", now, comparison, fail_on="rejection")) == (2, 1)


def test_markdown_stays_under_the_comment_limit():
    run, base = current(), baseline()
    long_log = "\n".join(f"{i}: (b7) r{i % 10} = {i}" for i in range(20000)) + "\nsome error\n"
    for r in run.results:
        if r.verdict == "rejected":
            r.log = long_log
    md = render("markdown", run, compare(run, base, "file", "b.json"))
    assert len(md) <= 60_000 and "🔺" in md


def test_report_reproduces_every_format_from_the_saved_json(tmp_path):
    saved = tmp_path / "result.json"
    saved.write_text(render("json", current(), comparison_with_baseline()))
    for fmt in sorted(SUFFIX):
        out = tmp_path / f"out.{fmt}"
        proc = run_compat("report", str(saved), "--format", fmt, "--output", str(out), cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr  # the regression fails the gate
        assert out.read_text() == render(fmt, current(), comparison_with_baseline()), fmt
        assert proc.stderr.startswith("compat: 4 program(s), 4 kernel(s): 1 regression(s)"), proc.stderr


def test_report_with_a_baseline_file(tmp_path):
    now, old = tmp_path / "now.json", tmp_path / "old.json"
    now.write_text(render("json", current(), compare(current())))
    old.write_text(render("json", baseline(), compare(baseline())))
    proc = run_compat("report", str(now), "--baseline", str(old), "--format", "table", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "▲ REJECTED missing_helper" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert f"1 regression(s) against {old}: counter.o:count_getpid on 5.10 (5.10.262) (missing helper)" in last
    # without a baseline, the rejection on the required kernel 6.1.176 fails the gate
    proc = run_compat("report", str(now), "--format", "github", cwd=tmp_path)
    assert proc.returncode == 1 and "rejection(s) on required kernels" in proc.stderr
    assert run_compat("report", str(now), "--fail-on", "never", cwd=tmp_path).returncode == 3  # sid: no verdict
    assert run_compat("report", str(old), "--fail-on", "never", cwd=tmp_path).returncode == 0
    assert run_compat("report", str(old), "--fail-on", "rejection", cwd=tmp_path).returncode == 1


def test_github_annotations_stay_within_what_github_shows():
    from compat.reports.github import ANNOTATIONS_PER_KIND

    run = current()
    template = next(r for r in run.results if r.program == "count_getpid" and r.kernel == "5.10")
    for i in range(25):  # 25 more rejected programs: warnings without a baseline
        extra = copy.deepcopy(template)
        extra.program, extra.kernel = f"extra_{i:02}", "6.1.170"
        run.results.append(extra)
    lines = render("github", run, compare(run)).splitlines()
    warnings = [ln for ln in lines if ln.startswith("::warning")]
    assert len(warnings) == ANNOTATIONS_PER_KIND
    assert "more warning(s) not annotated (GitHub shows 10 per step)" in warnings[-1]
    plain = [ln for ln in lines if ln.startswith("compat warning: ")]
    total = sum(r.verdict == "rejected" and r.kernel != "6.1.176" for r in run.results)  # 6.1.176: required
    assert len(warnings) - 1 + len(plain) == total  # every finding is in the log, annotated or not
    assert plain[-1].startswith("compat warning: src/counter.bpf.c:31: compat: extra_24 rejected on ")


def test_markdown_of_a_large_object_set_keeps_its_regressions():
    from compat.reports.markdown import MAX_CHARS

    now, old = current(), baseline()
    for run in (now, old):
        template = next(r for r in run.results if r.program == "count_new" or r.program == "count_getpid")
        for i in range(1500):  # a large object set: programs every kernel accepts
            for kernel in ("5.10", "6.1.170", "6.1.176", "sid"):
                extra = copy.deepcopy(template)
                extra.object, extra.program, extra.kernel = "big.o", f"prog_{i:04}", kernel
                extra.verdict, extra.reason, extra.message = "accepted", None, ""
                run.results.append(extra)
    md = render("markdown", now, compare(now, old, "file", "old.json"))
    assert len(md) <= MAX_CHARS
    assert "more program(s), accepted on every kernel" in md and "`big.o` `prog_0001`" not in md
    assert "more, in the JSON result file" in md  # the statistics table is held to its largest changes
    assert "### Regressions" in md and "count_getpid</code> on 5.10" in md
    assert "```diff" in md  # the regression's log diff is kept


def test_summary_line_is_bounded(tmp_path):
    """On 361 real objects the summary line listed every regression and boundary in one line of
    10,000 characters: it names at most SUMMARY_NAMED items per list, then how many more."""
    from compat.results.gate import SUMMARY_NAMED, gate_summary

    now, old = current(), baseline()
    for run, verdict in ((now, "rejected"), (old, "accepted")):
        template = next(r for r in run.results if r.program == "count_getpid" and r.kernel == "5.10")
        for i in range(400):
            extra = copy.deepcopy(template)
            extra.program, extra.verdict = f"many_{i:03}", verdict
            run.results.append(extra)
    line = gate_summary(now, compare(now, old, "file", "old.json"))
    assert "401 regression(s) against old.json" in line
    assert f", and {401 - SUMMARY_NAMED} more (see the report)" in line and len(line) < 1000, len(line)
    for fmt in ("table", "github"):  # they print the same line
        assert f"and {401 - SUMMARY_NAMED} more (see the report)" in render(fmt, now, compare(now, old, "file", "o"))
    saved, base = tmp_path / "now.json", tmp_path / "old.json"
    saved.write_text(render("json", now, compare(now)))
    base.write_text(render("json", old, compare(old)))
    proc = run_compat("report", str(saved), "--baseline", str(base), "--format", "json", "--output", "-", cwd=tmp_path)
    (summary,) = [ln for ln in proc.stderr.splitlines() if "regression(s)" in ln]
    assert len(summary) < 1000 and "more (see the report)" in summary


# The CSV `veristat -o csv` wrote in the commit that added its CSV output (tools/testing/selftests/
# bpf/veristat.c, "veristat: add CSV output format"): a script built around veristat reads this.
VERISTAT_CSV = """file_name,prog_name,verdict,duration,total_insns,total_states,peak_states
biosnoop_bpf.o,blk_account_io_merge_bio,success,36,24,1,1
biosnoop_bpf.o,blk_account_io_start,failure,0,0,0,0
"""
# veristat's CSV column names (stat_defs[].names[0]) in its default CSV order.
VERISTAT_COLUMNS = ["file_name", "prog_name", "verdict", "duration", "total_insns", "total_states", "peak_states",
                    "max_states_per_insn", "max_mark_read_len", "prog_size", "prog_size_jited", "prog_type",
                    "attach_type", "stack_depth"]  # fmt: skip


def _veristat_script(text: str) -> dict[tuple[str, str], tuple[bool, int, int]]:
    """What a script built around veristat's CSV does: rows by name, verdicts and counts as numbers."""
    rows = csv.DictReader(io.StringIO(text))
    return {(r["file_name"], r["prog_name"]): (r["verdict"] == "success", int(r["total_insns"] or 0),
                                              int(r["duration"] or 0)) for r in rows}  # fmt: skip


def test_csv_has_veristats_header_and_a_row_per_program_and_kernel():
    text = render("csv", current(), comparison_with_baseline())
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    real = VERISTAT_CSV.splitlines()[0].split(",")
    assert header[: len(real)] == real  # veristat's own header, in its order
    compat_own = header[header.index("kernel"):]
    assert compat_own == ["kernel", "kernel_version"]
    veristat_part = header[: header.index("kernel")]
    assert veristat_part == [c for c in VERISTAT_COLUMNS if c in veristat_part]  # veristat's names and order
    assert {"max_states_per_insn", "max_mark_read_len", "prog_type", "stack_depth"} <= set(veristat_part)
    assert len(rows) - 1 == len(current().results) == 16  # one row per program × kernel
    by = {(r[0], r[1], r[header.index("kernel")]): dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert by[("counter.o", "count_getpid", "5.10")]["verdict"] == "failure"
    ok = by[("counter.o", "count_getpid", "6.1.170")]
    assert (ok["verdict"], ok["total_insns"], ok["total_states"], ok["duration"]) == ("success", "31", "3", "40")
    assert by[("counter.o", "count_new", "sid")]["verdict"] == "N/A"  # the guest died: no verdict
    # the same script reads veristat's CSV and compat's (one kernel's rows)
    assert _veristat_script(VERISTAT_CSV)[("biosnoop_bpf.o", "blk_account_io_start")] == (False, 0, 0)
    one_kernel = "\n".join(",".join(r) for r in rows if r is rows[0] or r[-2] == "6.1.170")
    assert _veristat_script(one_kernel)[("counter.o", "count_getpid")] == (True, 31, 40)


def test_csv_reads_the_statistics_the_log_has_and_escapes_names():
    from compat_agent.wire.stats import parse_stats

    run = current()
    r = run.results[0]
    r.object, r.program = "=cmd|' /C calc'!A0,x", "p\x1b[31m\"q"
    r.stats = parse_stats("processed 7 insns (limit 1000000) max_states_per_insn 2 total_states 3 peak_states 3 "
                          "mark_read 1\nverification time 9 usec\nstack depth 16+8\n")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(render("csv", run, compare(run)))))
    row = next(x for x in rows if x["prog_name"].startswith("p"))
    assert row["file_name"] == "'=cmd|' /C calc'!A0,x"  # a spreadsheet shows it, does not run it
    assert row["prog_name"] == 'p\\x1b[31m"q'  # the ESC shown, the quote kept (csv quoting)
    assert (row["total_insns"], row["max_states_per_insn"], row["max_mark_read_len"], row["stack_depth"]) == (
        "7", "2", "1", "24")  # fmt: skip


def test_requirements_on_the_golden_result():
    doc = json.loads(render("requirements-json", current(), compare(current())))
    assert doc["schema"] == "compat-requirements/v1"
    # upstream-version order, not the matrix's (sid is first in the matrix)
    assert [k["kernel"] for k in doc["kernels"]] == ["5.10", "6.1.170", "6.1.176", "sid"]
    by = {(p["object"], p["program"]): p for p in doc["programs"]}
    getpid = by[("counter.o", "count_getpid")]
    assert getpid["oldest"] == {"kernel": "6.1.170", "version": "6.1.170"}
    assert [(n["kernel"], n["reason"]) for n in getpid["older"]] == [("5.10", "missing_helper")]
    assert "bpf_loop" in getpid["older"][0]["message"]
    xdp = by[("filter.o", "xdp_filter")]
    assert xdp["oldest"]["kernel"] == "5.10" and [n["kernel"] for n in xdp["newer_rejections"]] == ["6.1.176"]
    assert [n["kernel"] for n in by[("counter.o", "count_new")]["no_verdict"]] == ["sid"]
    md = render("requirements", current(), compare(current()))
    assert ("| `counter.o` `count_getpid` | 6.1.170 | 5.10 (5.10.262): needs Linux 5.17 (bpf_loop); missing helper: "
            "helper bpf_loop") in md
    assert "also rejected on 6.1.176: verifier rejection" in md


def test_requirements_name_the_features_of_the_table_and_escape_names():
    from compat_agent.wire.features import FEATURES

    run = current()
    v4 = FEATURES["cpu_v4"]
    for r in run.results:
        if r.program == "xdp_pass" and r.kernel in ("5.10", "6.1.170"):
            r.verdict, r.reason = "rejected", "unsupported_instruction"
            r.message = (f"this kernel does not know an instruction of the program (0xd7): {v4.what} {v4.need} "
                         f"Linux {v4.since}; build with a lower -mcpu for older kernels")  # fmt: skip
        if r.program == "count_new" and r.kernel != "sid":
            r.verdict, r.reason = "rejected", "unsupported_map_type"
            r.message = "map type arena (map heap) is not supported by this kernel"
            r.object_load = {"loads": False, "maps": [{"name": "heap", "type": "arena", "since": "6.9"}]}
        if r.program == "xdp_filter":
            r.verdict, r.reason, r.message = "rejected", "verifier_rejection", "R2 offset is outside of the packet"
            r.program = "x|</details><b>*y*"
    doc = json.loads(render("requirements-json", run, compare(run)))
    by = {p["program"]: p for p in doc["programs"]}
    assert by["xdp_pass"]["oldest"]["kernel"] == "6.1.176"
    needs = [{"feature": "cpu_v4", "what": v4.what, "since": "6.6"}]
    assert [n["needs"] for n in by["xdp_pass"]["older"]] == [needs, needs]
    assert by["count_new"]["oldest"] is None
    assert by["count_new"]["older"][0]["needs"][0]["since"] == "6.9"
    assert by["x|</details><b>*y*"]["oldest"] is None  # rejected everywhere: no minimum
    md = render("requirements", run, compare(run))
    assert f"needs Linux 6.6 ({escape_md(v4.what)})" in md
    assert "needs Linux 6.9 (BPF arena)" in md
    # rendered as GitHub does: the name stays one code span in its row's first cell, no HTML from it
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<code>x|&lt;/details&gt;&lt;b&gt;*y*</code></td>" in html and "<b>" not in html
    rows = [t for t in MarkdownIt("commonmark").enable("table").parse(md) if t.type == "tr_open"]
    assert len(rows) == 1 + 4  # the header and one row per program: no row split by a pipe


def escape_md(text: str) -> str:
    from compat.reports.escape import markdown

    return markdown(text)
