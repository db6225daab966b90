"""compat selftests without a VM: where an expectation's outcome changed and which are stale
(run/selftests.py) on crafted outcomes, including a non-monotonic series; the three reports
(hostile names escaped, suspects worded as candidates); bad input of the command (one line, exit 2).
The sweep on real guests is tests/vm/test_expectations_vm.py."""

from __future__ import annotations

import json

from conftest import run_compat

from compat.kernels.changelog import Commit, Suspects
from compat.reports.selftests import render
from compat.results.model import ObjectInfo, ProgramResult, RunResult
from compat.run.selftests import BROKEN_LATER, FIXED_LATER, Change, SweepResult, outcomes_of, stale_of, transitions

RELEASES = ["6.12.43", "6.12.57", "6.12.69", "6.12.118"]


def result(kernel: str, verdict: str, met: bool | None, program: str = "p") -> ProgramResult:
    why = None if met else ("expected rejected, accepted" if met is False else "not judged: needs program flags X")
    return ProgramResult(object="t.o", object_sha256="0" * 64, program=program, section="socket",
                         prog_type="socket_filter", kernel=kernel, verdict=verdict,
                         expectation={"expected": "rejected", "met": met, "why": why})  # fmt: skip


def test_fixed_later_boundary_skips_unjudged_releases():
    rs = [result("6.12.43", "accepted", False), result("6.12.57", "accepted", False),
          result("6.12.69", "accepted", None), result("6.12.118", "rejected", True)]  # fmt: skip
    outs = outcomes_of(list(reversed(rs)), RELEASES)[("t.o", "p")]
    assert [o.version for o in outs] == RELEASES  # release order, whatever the results' order
    flips = transitions(outs)
    assert [(a.version, b.version) for a, b in flips] == [("6.12.57", "6.12.118")]
    stale = stale_of(("t.o", "p"), outs)
    assert stale is not None and stale.kind == FIXED_LATER and (stale.before, stale.after) == ("6.12.57", "6.12.118")
    assert "fixed the behaviour" in stale.words


def test_non_monotonic_broken_then_fixed_is_two_changes_and_not_stale():
    rs = [result("6.12.43", "rejected", True), result("6.12.57", "accepted", False),
          result("6.12.69", "rejected", True), result("6.12.118", "rejected", True)]  # fmt: skip
    outs = outcomes_of(rs, RELEASES)[("t.o", "p")]
    assert [(a.version, b.version) for a, b in transitions(outs)] == [("6.12.43", "6.12.57"), ("6.12.57", "6.12.69")]
    assert stale_of(("t.o", "p"), outs) is None  # equal at both ends


def test_broken_later():
    rs = [result(v, "rejected" if i < 2 else "accepted", i < 2) for i, v in enumerate(RELEASES)]
    stale = stale_of(("t.o", "p"), outcomes_of(rs, RELEASES)[("t.o", "p")])
    assert stale is not None and stale.kind == BROKEN_LATER and stale.after == "6.12.69"


def sweep_result(name: str = "t.o") -> SweepResult:
    rs = [result("6.12.43", "accepted", False, "p\x1b[31m"), result("6.12.118", "rejected", True, "p\x1b[31m")]
    for r in rs:
        r.object = name
    run = RunResult(kernels=[], objects=[ObjectInfo(object=name, path=f"/x/{name}")], results=rs)
    outs = outcomes_of(rs, ["6.12.43", "6.12.118"])
    (key, o), = outs.items()  # fmt: skip
    commit = Commit("bpf: Fix the check of `x` | <b>", "6.12.100", "6.12.100-1")
    suspects = Suspects("6.12.43", "6.12.118", [commit])
    change = Change(key[0], key[1], o[0], o[1], suspects)
    stale = [s for s in [stale_of(key, o)] if s]
    return SweepResult("6.12", "linux-source-6.12=6.12.118-1", ["6.12.43", "6.12.118"], run, outs, [change], stale, {})


def test_reports_say_failing_changes_suspects_and_stale():
    res = sweep_result()
    table = render("table", res)
    assert "6.12.43: 0 / 1 / 0" in table and "6.12.118: 1 / 0 / 0" in table
    assert "not met on 6.12.43 (accepted), met from 6.12.118 (rejected)" in table
    assert "candidates" in table and "bpf: Fix the check" in table and "Stale expectations" in table
    assert "\x1b" not in table
    doc = json.loads(render("json", res))
    assert doc["schema"] == "compat-selftests/v1"
    assert doc["per_release"][0]["failing"][0]["why"] == "expected rejected, accepted"
    assert doc["changes"][0]["suspects"][0]["release"] == "6.12.100"
    assert doc["stale"][0]["kind"] == FIXED_LATER
    markdown = render("markdown", res)
    assert "| 6.12.43 | 0 | 1 | 0 |" in markdown and "<b>" not in markdown and "\x1b" not in markdown


def test_bad_input_is_one_line_exit_2(tmp_path):
    proc = run_compat("selftests", "--series", "6.12", "--format", "sarif")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown format 'sarif'" in proc.stderr
    proc = run_compat("selftests", "--series", "6.12", "--limit", "0")
    assert proc.returncode == 2 and "between 1 and" in proc.stderr
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run_compat("selftests", "--series", "6.12", env={"PATH": str(empty)})
    assert proc.returncode == 2 and proc.stderr.startswith("compat: error: bpftool is not installed")
    assert proc.stderr.count("\n") == 1
