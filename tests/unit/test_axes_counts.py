"""Columns counted honestly and kernel axes kept apart (SEL's follow-ups to --privilege and arm64):
the summary of a run with --privilege counts kernels × modes, the per-kernel progress line counts
every mode's programs, and the requirements view runs per architecture and per privilege (an
arm64 or unprivileged rejection after an amd64/root acceptance is no newer kernel's doing)."""

from __future__ import annotations

import json

from compat.reports import render
from compat.reports.table import summary_line
from compat.results.compare import compare
from compat.results.gate import gate_summary
from compat.results.model import KernelInfo, ProgramResult, RunResult
from compat.results.privilege import CAPS, ROOT, UNPRIVILEGED, column, columns, kernel_count
from compat.run.checker import reply_verdicts


def result(kernel: str, verdict: str, privilege: str = ROOT, program: str = "p", **kw) -> ProgramResult:
    return ProgramResult(object="t.o", object_sha256="0" * 64, program=program, section="socket",
                         prog_type="socket_filter", kernel=column(kernel, privilege), verdict=verdict,
                         privilege=privilege, **kw)  # fmt: skip


def run(results: list[ProgramResult], privs=(ROOT,), kernels=("6.1",), arch: dict | None = None) -> RunResult:
    infos = [c for i, k in enumerate(kernels)
             for c in columns(KernelInfo(k, k, (arch or {}).get(k, {}).get("version", f"{k}.5"), order=i,
                                         arch=(arch or {}).get(k, {}).get("arch", "amd64")), privs)]  # fmt: skip
    return RunResult(kernels=infos, objects=[], results=results)


# -- item 3: counts -----------------------------------------------------------------------------------


def test_one_kernel_under_two_modes_is_one_kernel_times_two_modes():
    """Before: '2 kernel(s)' for 6.1 under root and unprivileged."""
    doc = run([result("6.1", "accepted"), result("6.1", "rejected", UNPRIVILEGED, reason="verifier_rejection")],
              privs=(ROOT, UNPRIVILEGED))  # fmt: skip
    comp = compare(doc)
    assert kernel_count(doc.kernels) == "1 kernel(s) × 2 mode(s)"
    assert "1 kernel(s) × 2 mode(s): 1 accepted, 1 rejected" in summary_line(doc, comp)
    assert gate_summary(doc, comp).startswith("1 program(s), 1 kernel(s) × 2 mode(s): ")
    assert "1 program(s) × 1 kernel(s) × 2 mode(s)" in render("markdown", doc, comp)
    # caps and unprivileged without root: still one kernel (its columns all carry a mode)
    two = run([], privs=(CAPS, UNPRIVILEGED), kernels=("6.1", "6.12"))
    assert kernel_count(two.kernels) == "2 kernel(s) × 2 mode(s)"


def test_a_run_of_one_privilege_counts_kernels_as_before():
    doc = run([result("6.1", "accepted"), result("6.12", "accepted")], kernels=("6.1", "6.12"))
    assert kernel_count(doc.kernels) == "2 kernel(s)"
    assert "1 program(s), 2 kernel(s): 2 accepted" in summary_line(doc, compare(doc))


def test_progress_counts_every_privileges_programs():
    """Before: the per-kernel line counted the first mode's programs only (2 here, not 4)."""
    reply = {"type": "check_result", "programs": [{"verdict": "accepted"}, {"verdict": "accepted"}],
             "privileges": {"unprivileged": {"type": "check_result",
                                             "programs": [{"verdict": "accepted"}, {"verdict": "rejected"}]},
                            "caps": {"type": "error", "error": "privilege_unavailable"}}}  # fmt: skip
    assert sorted(reply_verdicts([reply])) == ["accepted", "accepted", "accepted", "rejected"]
    assert reply_verdicts([{"type": "check_result", "programs": [{"verdict": "rejected"}]}]) == ["rejected"]


# -- item 4: the requirements view per architecture and privilege ---------------------------------------


def _mixed_arch() -> RunResult:
    """amd64 6.1 and 6.12, arm64 6.1 and 6.12: accepted on amd64 6.1, rejected on both arm64 kernels."""
    arch = {"6.1": {"version": "6.1.5"}, "6.12": {"version": "6.12.5"},
            "6.1-arm64": {"version": "6.1.5", "arch": "arm64"}, "6.12-arm64": {"version": "6.12.5", "arch": "arm64"}}
    results = [result("6.1", "accepted"), result("6.12", "accepted"),
               result("6.1-arm64", "rejected", reason="verifier_rejection", message="no trampoline"),
               result("6.12-arm64", "rejected", reason="verifier_rejection", message="no trampoline")]  # fmt: skip
    return run(results, kernels=("6.1", "6.12", "6.1-arm64", "6.12-arm64"), arch=arch)


def test_arm64_rejections_after_an_amd64_acceptance_are_not_newer_kernels():
    """Before: one axis over both architectures listed the arm64 rejections as 'newer_rejections'
    of a program whose oldest kernel was amd64 6.1."""
    doc = _mixed_arch()
    data = json.loads(render("requirements-json", doc, compare(doc)))
    by = {(p["arch"], p["privilege"]): p for p in data["programs"]}
    assert set(by) == {("amd64", "root"), ("arm64", "root")}
    amd, arm = by[("amd64", "root")], by[("arm64", "root")]
    assert amd["oldest"]["kernel"] == "6.1" and not amd["newer_rejections"] and not amd["older"]
    assert arm["oldest"] is None and [n["kernel"] for n in arm["older"]] == ["6.1-arm64", "6.12-arm64"]
    assert not arm["newer_rejections"]
    assert [(k["kernel"], k["arch"]) for k in data["kernels"]] == [
        ("6.1", "amd64"), ("6.12", "amd64"), ("6.1-arm64", "arm64"), ("6.12-arm64", "arm64")]
    md = render("requirements", doc, compare(doc))
    assert "### amd64" in md and "### arm64" in md and "also rejected on" not in md


def test_unprivileged_rejections_are_their_own_axis():
    doc = run([result("6.1", "accepted"), result("6.12", "accepted"),
               result("6.1", "rejected", UNPRIVILEGED, reason="not_permitted", message="needs CAP_BPF"),
               result("6.12", "accepted", UNPRIVILEGED)],
              privs=(ROOT, UNPRIVILEGED), kernels=("6.1", "6.12"))  # fmt: skip
    data = json.loads(render("requirements-json", doc, compare(doc)))
    by = {p["privilege"]: p for p in data["programs"]}
    assert by["root"]["oldest"]["kernel"] == "6.1" and not by["root"]["newer_rejections"]
    assert by["unprivileged"]["oldest"]["kernel"] == "6.12 (unprivileged)"
    assert [n["kernel"] for n in by["unprivileged"]["older"]] == ["6.1 (unprivileged)"]
    assert "### amd64, unprivileged" in render("requirements", doc, compare(doc))


def test_one_axis_reads_as_before():
    doc = run([result("6.1", "rejected", reason="verifier_rejection"), result("6.12", "accepted")],
              kernels=("6.1", "6.12"))  # fmt: skip
    data = json.loads(render("requirements-json", doc, compare(doc)))
    (p,) = data["programs"]
    assert "arch" not in p and "arch" not in data["kernels"][0] and p["oldest"]["kernel"] == "6.12"
    assert "###" not in render("requirements", doc, compare(doc))
