"""--format/--output of check, report and merge (compat/reports/outputs.py): every pair checked
before any work (one line, exit 2), a format told by an --output's suffix, no file twice, no
directory created, each report written atomically so a failed one loses no other."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat
from synthetic_run import baseline, current
from test_cli_report import one_line_error

from compat.errors import UserError
from compat.reports import RENDERERS, render
from compat.reports.outputs import Output, format_of, plan, write
from compat.results.compare import compare


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(render("json", current(), compare(current(), baseline(), "file", "old.json")))
    return path


def test_a_bad_first_output_fails_before_any_report_is_written(tmp_path, saved):
    md = tmp_path / "ok.md"
    proc = run_compat("report", str(saved), "--format", "json", "--output", tmp_path / "nodir" / "x.json",
                      "--format", "markdown", "--output", md)  # fmt: skip
    one_line_error(proc, "directory")
    assert "does not exist" in proc.stderr and not md.exists() and not (tmp_path / "nodir").exists()
    assert proc.stdout == ""


def test_check_refuses_bad_outputs_before_booting(tmp_path):
    obj = tmp_path / "x.o"
    obj.write_bytes(b"\x7fELF")
    one_line_error(run_compat("check", obj, "--format", "json", "--output", tmp_path / "no" / "r.json"),
                   "does not exist")  # fmt: skip
    assert not (tmp_path / "no").exists()


def test_the_same_file_twice_and_stdout_twice_are_errors(tmp_path, saved):
    out = tmp_path / "r.txt"
    one_line_error(run_compat("report", saved, "--format", "table", "--output", out, "--format", "github",
                              "--output", tmp_path / "." / "r.txt"), "would write the same file")  # fmt: skip
    one_line_error(run_compat("report", saved, "--format", "table", "--format", "github"), "would all go to stdout")
    one_line_error(run_compat("report", saved, "--format", "table", "--output", "-", "--format", "json",
                              "--output", "-"), "would all go to stdout")  # fmt: skip
    one_line_error(run_compat("report", saved, "--format", "json", "--output", tmp_path), "is a directory")
    assert not out.exists()


def test_output_without_format_takes_the_format_of_its_suffix(tmp_path, saved):
    out = tmp_path / "x.json"
    proc = run_compat("report", saved, "--output", out, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # the regression
    doc = json.loads(out.read_text())  # JSON, not the table it used to write there
    assert doc["schema"] == "compat/v1"
    assert proc.stdout == ""
    # a format then outputs of its own: the n-th --output with the n-th --format, the rest by suffix
    md, xml = tmp_path / "r.md", tmp_path / "r.xml"
    proc = run_compat("report", saved, "--format", "markdown", "--output", md, "--output", xml, cwd=tmp_path)
    assert proc.returncode == 1 and md.read_text().startswith("## compat") and xml.read_text().startswith("<?xml")
    one_line_error(run_compat("report", saved, "--output", tmp_path / "x.bin"), "no --format goes with it")


@pytest.mark.parametrize(("name", "fmt"), [("a.json", "json"), ("a.sarif", "sarif"), ("a.sarif.json", "sarif"),
                                           ("a.md", "markdown"), ("a.XML", "junit"), ("a.txt", "table"),
                                           ("a.csv", "csv"), ("a.o", None)])  # fmt: skip
def test_format_of(name, fmt):
    assert format_of(name) == fmt


def test_plan_defaults_and_pairs(tmp_path):
    known = list(RENDERERS)
    assert plan(None, None, known) == [Output("table", "-")]
    assert plan(["json", "github"], [str(tmp_path / "r.json")], known) == [
        Output("json", str(tmp_path / "r.json")), Output("github", "-")]  # fmt: skip
    with pytest.raises(UserError, match="unknown format 'pdf'"):
        plan(["pdf"], None, known)


def test_a_failed_write_loses_no_other_report(tmp_path, capsys):
    gone = tmp_path / "gone"
    gone.mkdir()
    planned = plan(["json", "markdown"], [str(gone / "r.json"), str(tmp_path / "r.md")], list(RENDERERS))
    gone.rmdir()  # the directory goes away during the run
    with pytest.raises(UserError, match=r"cannot write .*gone/r.json"):
        write(planned, lambda fmt: f"{fmt} report\n")
    assert (tmp_path / "r.md").read_text() == "markdown report\n"  # written all the same
    assert not gone.exists()  # not created
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_reports_replace_files_atomically_keeping_their_mode(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("old")
    out.chmod(0o640)
    write(plan(None, [str(out)], list(RENDERERS)), lambda fmt: "new\n")
    assert out.read_text() == "new\n" and out.stat().st_mode & 0o777 == 0o640
