"""The regression example end to end on the real default kernels: programs/baseline/new/counter.bpf.c
adds bpf_loop (5.17) to programs/baseline/old/counter.bpf.c, so 5.10 rejects the new build only."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from bpf_build import PROGRAMS_DIR, build_programs
from conftest import run_compat

from compat.results.model import SCHEMA_FILE

pytestmark = [pytest.mark.vm, pytest.mark.network]

REPO = PROGRAMS_DIR.parent
NEW_SOURCE = PROGRAMS_DIR / "baseline" / "new" / "counter.bpf.c"


def bpf_loop_line() -> int:
    return next(i for i, t in enumerate(NEW_SOURCE.read_text().splitlines(), 1) if "bpf_loop(1, add_one" in t)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("pair")
    old = build_programs(out / "old", PROGRAMS_DIR / "baseline" / "old")["counter"]
    new = build_programs(out / "new", PROGRAMS_DIR / "baseline" / "new")["counter"]
    return out, old, new


@pytest.fixture(scope="module")
def regression_run(pair):
    out, old, new = pair
    files = {fmt: out / f"run.{fmt}" for fmt in ("json", "markdown", "github")}
    args = ["check", str(new), "--baseline-object", str(old)]
    for fmt, path in files.items():
        args += ["--format", fmt, "--output", str(path)]
    proc = run_compat(*args, cwd=REPO)
    return proc, {fmt: path.read_text() for fmt, path in files.items()}, files["json"]


def test_regression_fails_the_gate(regression_run):
    proc, outputs, _ = regression_run
    assert proc.returncode == 1, proc.stderr
    assert "1 regression(s)" in proc.stderr and "counter.o:count_getpid on 5.10" in proc.stderr
    doc = json.loads(outputs["json"])
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    (reg,) = [c for c in doc["comparison"]["cells"] if c["transition"] == "newly_rejected"]
    assert (reg["kernel"], reg["reason"]) == ("5.10", "missing_helper")
    assert {c["kernel"] for c in doc["comparison"]["cells"] if c["transition"] == "still_accepted"} == {
        "6.1", "6.12", "sid",
    }  # fmt: skip
    cell = next(r for r in doc["results"] if r["kernel"] == "5.10")
    assert cell["source"]["line"] == bpf_loop_line() and cell["source"]["how"] == "call"


def test_markdown_names_the_regression_reason_and_source_line(regression_run):
    md = regression_run[1]["markdown"]
    assert "| `counter.o` `count_getpid` | 🔺 | ✅ | ✅ | ✅ |" in md
    assert "<summary>🔺 <code>counter.o:count_getpid</code> on 5.10 (5.10." in md
    assert "**Reason:** missing helper: helper bpf_loop (181) is not available on this kernel" in md
    assert f"**Source:** `programs/baseline/new/counter.bpf.c:{bpf_loop_line()}`" in md
    assert "bpf_loop(1, add_one, &step, 0);" in md


def test_github_puts_an_error_on_the_bpf_loop_line(regression_run):
    lines = regression_run[1]["github"].splitlines()
    errors = [ln for ln in lines if ln.startswith("::error ")]
    assert len(errors) == 1, lines
    assert errors[0].startswith(f"::error file=programs/baseline/new/counter.bpf.c,line={bpf_loop_line()},")


def test_report_reproduces_the_saved_run(regression_run, tmp_path):
    _, outputs, saved = regression_run
    md, gh = tmp_path / "md", tmp_path / "gh"
    proc = run_compat("report", str(saved), "--format", "markdown", "--format", "github", "--output", str(md),
                  "--output", str(gh), cwd=REPO)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert md.read_text() == outputs["markdown"] and gh.read_text() == outputs["github"]


def test_baseline_result_file(pair):
    out, old, new = pair
    saved = out / "old.json"
    proc = run_compat("check", str(old), "--format", "json", "--output", str(saved), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    proc = run_compat("check", str(new), "--baseline", str(saved), "--format", "table", cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert "▲ REJECTED missing_helper" in proc.stdout
    assert Path(saved).name in proc.stdout.strip().splitlines()[-1]
