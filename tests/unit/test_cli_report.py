"""`compat report` and the baseline options of `compat check`: bad input is one line on stderr and
exit 2, before any VM boots; saved results re-render without a cache."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat
from synthetic_run import baseline, current

from compat.reports import render
from compat.results.compare import compare


def one_line_error(proc, words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compat: error:") and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(render("json", current(), compare(current(), baseline(), "file", "old.json")))
    return path


def test_report_bad_inputs(tmp_path, saved):
    one_line_error(run_compat("report", str(tmp_path / "none.json")), "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    one_line_error(run_compat("report", str(bad)), "not a readable JSON result file")
    bad.write_text(json.dumps({"schema": "other/v9"}))
    one_line_error(run_compat("report", str(bad)), "not a compat result file")
    bad.write_text(json.dumps({"schema": "compat/v1", "kernels": [], "objects": [], "results": [1]}))
    one_line_error(run_compat("report", str(bad)), "malformed compat result file")
    doc = json.loads(saved.read_text())
    doc["results"][0]["verdict"] = "maybe"
    bad.write_text(json.dumps(doc))
    one_line_error(run_compat("report", str(bad)), "unknown verdict")
    one_line_error(run_compat("report", str(tmp_path)), "is a directory")
    one_line_error(run_compat("report", str(saved), "--format", "pdf"), "unknown format 'pdf'")
    one_line_error(run_compat("report", str(saved), "--output", "a", "--output", "b"), "--output a: no --format goes")
    one_line_error(run_compat("report", str(saved), "--baseline", str(tmp_path / "old.json")), "no such file")
    one_line_error(run_compat("report", str(saved), "--baseline", str(tmp_path / "old.o")), "use --baseline-object")
    one_line_error(run_compat("report", str(saved), "--fail-on", "sometimes"), "invalid choice")


def test_report_needs_no_cache(tmp_path, saved):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_compat("--cache", str(blocker / "sub"), "report", str(saved), "--fail-on", "never")
    assert proc.returncode == 3, proc.stderr  # count_new on sid has no verdict
    assert "count_getpid" in proc.stdout


def test_report_writes_outputs_and_stdout(tmp_path, saved):
    md = tmp_path / "summary.md"
    proc = run_compat("report", str(saved), "--format", "markdown", "--format", "github", "--output", str(md),
                      cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    assert md.read_text().startswith("## compat: BPF programs × kernels")
    assert proc.stdout.startswith("::error file=src/counter.bpf.c,line=31,")


def test_check_bad_baseline_inputs_fail_before_booting(tmp_path):
    obj = tmp_path / "x.o"
    obj.write_bytes(b"\x7fELF")
    one_line_error(run_compat("check", str(obj), "--baseline", str(tmp_path / "old.json")), "no such file")
    one_line_error(
        run_compat("check", str(obj), "--baseline", "a.json", "--baseline-object", "b.o"),
        "--baseline and --baseline-object exclude each other",
    )
    one_line_error(run_compat("check", str(obj), "--baseline-object",
                              "/bin/ls"), "baseline object /bin/ls: an ELF file")  # fmt: skip
    one_line_error(run_compat("check", str(obj), "--format", "html"), "unknown format 'html'")
    one_line_error(run_compat("check", str(obj), "--format", "json", "--output", "a", "--output", "b"), "b: no")
    one_line_error(run_compat("check", str(obj), "--fail-on", "always"), "invalid choice")
