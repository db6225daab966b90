"""The front door on real guests: progress in CI (stderr not a terminal) and -q."""

import re

import pytest
from conftest import run_compat

pytestmark = [pytest.mark.vm, pytest.mark.network]


def test_ci_progress_lines_and_quiet(built_programs, tmp_path):
    """stderr captured (CI): a line per stage with its time (the guest's boot or restore, the
    kernel's objects); stdout holds the report only. -q: nothing on stderr but errors."""
    obj = built_programs["ringbuf"]
    out = tmp_path / "r.json"
    done = run_compat("check", obj, "--kernel", "6.1", "--no-cache", "--format", "json", "--output", out)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(re.fullmatch(r"compat: (restored|booted) 6\.1 in \d+\.\d s", line) for line in lines), lines
    assert any(re.match(r"compat: 6\.1 \(6\.1\.\d+\): \d+ program\(s\)", line) for line in lines), lines
    assert done.stdout == ""
    quiet = run_compat("-q", "check", obj, "--kernel", "6.1", "--no-cache", "--format", "json")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("{")
