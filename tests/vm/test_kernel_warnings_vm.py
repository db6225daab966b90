"""A kernel that warns (issue 16, deliverable 6) on a real guest: the path from the guest's
/dev/kmsg to every report and to --fail-on warning. No cheap BPF program makes a Debian kernel
warn on purpose, so the test build of the guest image writes a splat (a verifier WARN_ONCE with a
REG INVARIANTS VIOLATION, in the kernel's format) into the real kernel log while it checks an
object named compat-fault-kmsg... for real: what is tested is the agent's reading of the real
/dev/kmsg after the check and everything after it, not the kernel's own warning."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat

pytestmark = [pytest.mark.vm, pytest.mark.network]


def test_a_splat_during_a_check_is_its_own_status_and_gates(built_programs, tmp_path):
    splat = tmp_path / "compat-fault-kmsg.o"
    splat.write_bytes(built_programs["counter"].read_bytes() + b"kmsg")
    quiet = tmp_path / "quiet.o"
    quiet.write_bytes(built_programs["counter"].read_bytes())
    out = {fmt: tmp_path / f"out.{fmt}" for fmt in ("json", "table", "markdown")}
    args = [a for fmt, path in out.items() for a in ("--format", fmt, "--output", path)]
    proc = run_compat("check", splat, quiet, "--kernel", "6.12", "--no-attach", "--fail-on", "warning", *args,
                      env={"COMPAT_TEST_FAULTS": "1"}, timeout=3000)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    by_object = {r["object"]: r for r in json.loads(out["json"].read_text())["results"]}
    warned, calm = by_object["compat-fault-kmsg.o"], by_object["quiet.o"]
    assert warned["verdict"] == calm["verdict"] == "accepted"
    assert [w["kind"] for w in warned["kernel_warnings"]] == ["reg_invariants"]
    assert any("REG INVARIANTS VIOLATION" in line for line in warned["kernel_warnings"][0]["lines"])
    assert "kernel_warnings" not in calm  # read from where the last read stopped: not the earlier object's
    words = "the kernel warned: verifier bug (REG INVARIANTS VIOLATION): verifier bug: REG INVARIANTS VIOLATION"
    assert f"ok, but {words}" in out["table"].read_text()
    assert words in out["markdown"].read_text()
