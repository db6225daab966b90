"""Baseline transitions, the kernel axis and the gate, on synthetic runs (no VM)."""

from __future__ import annotations

import copy

import pytest
from synthetic_run import baseline, current

from compat.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, EXIT_USAGE
from compat.results.compare import compare, order_kernels
from compat.results.gate import exit_status, facts, gate_summary
from compat.results.model import KernelInfo, ObjectInfo, ProgramResult, RunResult


def transitions(comp) -> dict:
    return {(c.object, c.program, c.kernel): c.transition for c in comp.cells}


def test_transitions_against_the_baseline():
    t = transitions(compare(current(), baseline(), "file", "old.json"))
    assert t[("counter.o", "count_getpid", "5.10")] == "newly_rejected"
    assert t[("counter.o", "count_getpid", "sid")] == "still_accepted"
    assert t[("counter.o", "count_new", "5.10")] == "added"
    assert t[("counter.o", "count_new", "sid")] == "added"  # no baseline cell: added even without a verdict
    assert t[("filter.o", "xdp_filter", "6.1.176")] == "still_rejected"
    assert t[("filter.o", "xdp_pass", "5.10")] == "newly_accepted"
    assert all(t[("filter.o", "xdp_old", k)] == "removed" for k in ("5.10", "6.1.170", "6.1.176", "sid"))


def test_no_verdict_when_either_side_has_none():
    old = baseline()
    for r in old.results:
        if r.program == "count_getpid" and r.kernel == "sid":
            r.verdict, r.reason = "error", "infrastructure_error"
    t = transitions(compare(current(), old))
    assert t[("counter.o", "count_getpid", "sid")] == "no_verdict"


def test_stats_deltas():
    comp = compare(current(), baseline())
    cell = comp.cell("counter.o", "count_getpid", "6.1.170")
    d = cell.stats["insns_processed"]
    assert (d.old, d.new, d.delta, d.percent) == (20, 31, 11, 55.0)
    assert cell.stats["states_total"].delta == 1 and cell.stats_changed()
    assert d.describe() == "20 → 31 (+11, +55.0%)"
    assert not comp.cell("filter.o", "xdp_filter", "6.1.176").stats_changed()  # still rejected


def test_regression_carries_a_log_diff():
    (reg,) = compare(current(), baseline()).regressions()
    assert (reg.object, reg.program, reg.kernel) == ("counter.o", "count_getpid", "5.10")
    assert reg.baseline_object == "counter.o" and reg.baseline_verdict == "accepted"
    assert "+number of funcs in func_info doesn't match number of subprogs" in reg.log_diff.diff


def test_objects_with_other_names_are_paired_when_alone():
    old = baseline()
    old.results = [r for r in old.results if r.object == "counter.o"]
    for r in old.results:
        r.object = "counter-1.0.o"
    new = current()
    new.results = [r for r in new.results if r.object == "counter.o"]
    comp = compare(new, old, "object", "counter-1.0.o")
    cell = comp.cell("counter.o", "count_getpid", "5.10")
    assert cell.transition == "newly_rejected" and cell.baseline_object == "counter-1.0.o"


def test_kernel_axis_orders_by_version_not_matrix_order():
    comp = compare(current())
    assert comp.kernel_order == ["5.10", "6.1.170", "6.1.176", "sid"]  # the matrix lists sid first
    assert compare(current(), axis="matrix").kernel_order == ["sid", "5.10", "6.1.170", "6.1.176"]
    run = current()
    run.options["kernel_axis"] = "matrix"
    assert compare(run).kernel_order[0] == "sid"


def test_unknown_versions_go_last_in_matrix_order():
    ks = [
        KernelInfo(id="local", label="l", version="?", order=0),
        KernelInfo(id="6.1", label="6", version="6.1.1", order=1),
        KernelInfo(id="5.10", label="5", version="5.10.9", order=2),
    ]
    assert [k.id for k in order_kernels(ks)] == ["5.10", "6.1", "local"]


def test_floor_and_backport_regression():
    comp = compare(current())
    getpid = comp.program_axis("counter.o", "count_getpid")
    assert getpid.floor == "6.1.170" and getpid.rejected_from is None
    assert [(b.older, b.newer, b.kind) for b in getpid.boundaries] == [("5.10", "6.1.170", "accepted_from")]
    filt = comp.program_axis("filter.o", "xdp_filter")
    assert filt.floor == "5.10"
    assert (filt.accepted_on, filt.rejected_from) == ("6.1.170", "6.1.176")
    assert [(b.older, b.newer, b.kind) for b in filt.boundaries] == [
        ("6.1.170", "6.1.176", "rejected_from"),
        ("6.1.176", "sid", "accepted_from"),
    ]
    d = filt.boundaries[0].log_diff
    assert d.divergence is not None and d.divergence.last_insn == 5 and d.divergence.old_insn == 6
    new = comp.program_axis("counter.o", "count_new")
    assert new.verdicts["sid"] == "error" and new.floor == "5.10" and not new.boundaries


def test_gate_policies():
    now, old = current(), baseline()
    with_base = compare(now, old)
    assert exit_status(now, with_base, "regression") == EXIT_FAILED
    assert exit_status(now, with_base, "rejection") == EXIT_FAILED
    assert exit_status(now, with_base, "never") == EXIT_INFRA  # count_new on sid has no verdict
    assert exit_status(now, with_base, "never", bad_input=True) == EXIT_USAGE
    # without a baseline: the required kernel 6.1.176 rejects xdp_filter
    f = facts(now, compare(now))
    assert [(r.program, r.kernel) for r in f.required_rejections] == [("xdp_filter", "6.1.176")]
    assert exit_status(now, compare(now), "regression") == EXIT_FAILED
    # with a baseline, the baseline covers that cell (still rejected): not a gate failure by itself
    assert facts(now, with_base).required_rejections == []
    # unless the baseline has no verdict there
    old_error = baseline()
    for r in old_error.results:
        if (r.program, r.kernel) == ("xdp_filter", "6.1.176"):
            r.verdict = "error"
    assert len(facts(now, compare(now, old_error)).required_rejections) == 1


def _tiny(verdict: str, required: bool = False) -> RunResult:
    r = ProgramResult(
        object="a.o",
        object_sha256="0" * 64,
        program="p",
        section="xdp",
        prog_type="xdp",
        kernel="6.1",
        verdict=verdict,
        reason=None if verdict == "accepted" else "verifier_rejection",
    )
    k = KernelInfo(id="6.1", label="6.1", version="6.1.1", required=required)
    return RunResult(kernels=[k], objects=[ObjectInfo("a.o", "a.o")], results=[r])


@pytest.mark.parametrize(
    ("verdict", "required", "fail_on", "status"),
    [
        ("accepted", True, "regression", EXIT_OK),
        ("rejected", False, "regression", EXIT_OK),
        ("rejected", True, "regression", EXIT_FAILED),
        ("rejected", False, "rejection", EXIT_FAILED),
        ("rejected", True, "never", EXIT_OK),
        ("error", False, "regression", EXIT_INFRA),
    ],
)
def test_gate_without_baseline(verdict, required, fail_on, status):
    run = _tiny(verdict, required)
    assert exit_status(run, compare(run), fail_on) == status


def test_regression_beats_infrastructure_error_and_accepted_baseline_passes():
    now = _tiny("rejected")
    old = _tiny("accepted")
    assert exit_status(now, compare(now, old), "regression") == EXIT_FAILED
    assert exit_status(old, compare(old, copy.deepcopy(old)), "regression") == EXIT_OK


def test_summary_names_programs_kernels_and_regressions():
    text = gate_summary(current(), compare(current(), baseline(), "file", "old.json"))
    assert text.startswith("4 program(s), 4 kernel(s): 1 regression(s) against old.json: ")
    assert "counter.o:count_getpid on 5.10 (5.10.262) (missing helper)" in text
    assert "filter.o:xdp_filter (accepted on 6.1.170, rejected from 6.1.176)" in text


def test_matrix_declares_its_axis(tmp_path):
    from compat.errors import UserError
    from compat.kernels.matrix import parse_matrix

    kernels = [{"series": "6.1"}, {"series": "5.10"}]
    assert parse_matrix({"kernels": kernels}, tmp_path / "m.yaml").axis == "version"
    assert parse_matrix({"axis": "matrix", "kernels": kernels}, tmp_path / "m.yaml").axis == "matrix"
    with pytest.raises(UserError, match="axis must be one of version, matrix"):
        parse_matrix({"axis": "alphabet", "kernels": kernels}, tmp_path / "m.yaml")


def test_a_program_rejected_everywhere_for_one_reason_says_so():
    from compat.reports.common import axis_summary

    run = current()
    for r in run.results:
        if r.program == "xdp_pass":
            r.verdict, r.reason = "rejected", "object_error"
        if r.program == "count_getpid":
            r.verdict, r.reason = "rejected", "missing_kfunc"
        if r.program == "count_new":
            r.verdict, r.reason = "rejected", "missing_attach_target"
    comp = compare(run)
    axes = {p.program: p for p in comp.programs}
    by_kernel = {k.id: k for k in run.kernels}
    # libbpf refusing the object everywhere is the object's problem, not a kernel difference
    assert axes["xdp_pass"].rejected_for == "object_error"
    assert "not a kernel" in axis_summary(axes["xdp_pass"], by_kernel, "!")
    assert axis_summary(axes["count_getpid"], by_kernel, "!") == "rejected on every kernel (missing kfunc)"
    # a target no kernel has: newer than all of them, or a BPF program's function (fexit on a subprogram)
    assert "one of another BPF program" in axis_summary(axes["count_new"], by_kernel, "!")
    assert axes["xdp_filter"].rejected_for is None  # accepted somewhere
    # Rejected everywhere, for reasons that differ between kernels: each says which.
    for r in run.results:
        if r.program == "count_getpid" and r.kernel == "sid":
            r.reason = "missing_helper"
    mixed = {p.program: p for p in compare(run).programs}["count_getpid"]
    assert axis_summary(mixed, by_kernel, "!") == (
        "rejected on every kernel: missing kfunc on 5.10, 6.1.170, 6.1.176; missing helper on sid"
    )


def test_an_object_s_programs_with_one_summary_share_a_line():
    from compat.reports.common import axis_groups, axis_label

    run = current()
    for r in run.results:
        if r.program in ("count_getpid", "count_new"):  # counter.o's two programs: placeholders, say
            r.verdict, r.reason = "rejected", "missing_attach_target"
    groups = axis_groups(compare(run), {k.id: k for k in run.kernels}, "!")
    labels = [axis_label(programs) for programs, _ in groups]
    assert "counter.o:{count_getpid, count_new}" in labels
    assert "filter.o:xdp_filter" in labels  # another object, another summary: a line of its own
