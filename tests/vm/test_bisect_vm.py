"""compat bisect on real guests: a tiny real range of the 6.1 series (two point releases)."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat

pytestmark = pytest.mark.vm


def test_bisect_of_an_unchanged_object_on_two_real_releases(tmp_path, built_programs):
    """6.1.190 and 6.1.192 both accept counter.o: exit 0, 'equal at both ends' said, both ends
    checked on real guests (--no-cache), and a second run (result cache) boots nothing new."""
    counter = built_programs["counter"]  # built by the tests: a fresh clone has no build/
    out = tmp_path / "bisect.json"
    done = run_compat("bisect", counter, "--series", "6.1", "--from", "6.1.190", "--to", "6.1.192", "--no-cache",
                      "--format", "json", "--output", out, "--format", "table", timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "equal at both ends" in done.stdout and "assumed unchanged" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["changes"] == [] and doc["releases_checked"] == ["6.1.190", "6.1.192"]
    assert doc["unchanged"] == [{"object": "counter.o", "program": "count_getpid", "verdict": "accepted"}]
    assert doc["failed_releases"] == []
    again = run_compat("bisect", counter, "--series", "6.1", "--from", "6.1.190", "--to", "6.1.192",
                       "--format", "json", timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["wall_seconds"] < 5  # served by the result cache: no guest booted
