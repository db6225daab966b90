"""A kernel that warns (issue 16, deliverable 6) without a guest: the agent's pattern table on
splats in the kernel's own formats (a verifier WARN_ONCE with a REG INVARIANTS VIOLATION as
6.17/6.18 print it, a plain WARN, a BUG, lockdep, KASAN), the wire record, the host's words, the
cells, the schema and --fail-on warning."""

from __future__ import annotations

import json

import jsonschema
import pytest
from compat_agent.checker.kmsg import KINDS, LINES_MAX, SPLATS_MAX, splats
from compat_agent.wire.messages import CheckResult, WireError

from compat.errors import EXIT_FAILED, EXIT_OK
from compat.reports import markdown, table
from compat.results.classify import WARNING_KINDS, kernel_warnings, warning_words
from compat.results.compare import compare
from compat.results.gate import FAIL_ON, exit_status, gate_summary
from compat.results.model import SCHEMA_FILE, KernelInfo, ObjectInfo, ProgramResult, RunResult

REG_INVARIANTS = [
    "------------[ cut here ]------------",
    "verifier bug: REG INVARIANTS VIOLATION (false_reg2): range bounds violation u64=[0xd, 0xc] s64=[0xd, 0xc] "
    "u32=[0xd, 0xc] s32=[0xd, 0xc] var_off=(0xc, 0x0)",
    "WARNING: CPU: 1 PID: 4242 at kernel/bpf/verifier.c:2721 reg_bounds_sanity_check+0x1b1/0x1c0",
    "Modules linked in: virtio_console",
    "CPU: 1 UID: 0 PID: 4242 Comm: python3 Not tainted 6.17.8-amd64 #1 Debian 6.17.8-1",
    "RIP: 0010:reg_bounds_sanity_check+0x1b1/0x1c0",
    "---[ end trace 0000000000000000 ]---",
]
BACKTRACKING = [
    "------------[ cut here ]------------",
    "verifier backtracking bug",
    "WARNING: CPU: 0 PID: 97 at kernel/bpf/verifier.c:3606 __mark_chain_precision+0x1d2/0x1030",
    "---[ end trace 0000000000000000 ]---",
]
PLAIN_WARN = [
    "WARNING: CPU: 0 PID: 97 at mm/page_alloc.c:4671 __alloc_pages+0x22b/0x310",
    "Call Trace:",
    "---[ end trace 0000000000000000 ]---",
]
BUG = ["BUG: kernel NULL pointer dereference, address: 0000000000000008", "#PF: supervisor read access in kernel mode"]
LOCKDEP = [
    "======================================================",
    "WARNING: possible circular locking dependency detected",
    "6.12.43-amd64 #1 Not tainted",
    "------------------------------------------------------",
]
KASAN = ["BUG: KASAN: slab-out-of-bounds in bpf_prog_test_run_skb+0x3a/0x500",
         "Read of size 8 at addr ffff888003f1e000 by task python3/97"]  # fmt: skip
QUIET = ["xdp: driver lo does not support XDP", "audit: type=1334 audit(0.0:5): prog-id=12 op=LOAD"]


@pytest.mark.parametrize(
    "lines,kind",
    [(REG_INVARIANTS, "reg_invariants"), (BACKTRACKING, "verifier_bug"), (PLAIN_WARN, "warning"), (BUG, "bug"),
     (LOCKDEP, "lockdep"), (KASAN, "kasan")],
)  # fmt: skip
def test_each_splat_is_one_of_its_kind(lines, kind):
    found = splats(QUIET + lines + QUIET)
    assert [s["kind"] for s in found] == [kind]
    assert found[0]["lines"][0] in (lines[0], lines[1])  # a lockdep splat starts at its WARNING line


def test_quiet_lines_are_no_splat_and_splats_are_bounded():
    assert splats(QUIET) == []
    assert [s["kind"] for s in splats(PLAIN_WARN + REG_INVARIANTS)] == ["warning", "reg_invariants"]
    flood = splats((PLAIN_WARN[:1] + ["x"] * 100 + PLAIN_WARN[-1:]) * 20)
    assert len(flood) == SPLATS_MAX and all(len(s["lines"]) == LINES_MAX for s in flood)
    assert set(KINDS) == set(WARNING_KINDS)  # the host words every kind the agent reports


def _reply(warnings):
    return {"type": "check_result", "open": {"ok": True}, "programs": [], "kernel_warnings": warnings}


def test_the_wire_and_the_host_words():
    reply = _reply(splats(REG_INVARIANTS))
    CheckResult.from_json(reply)
    with pytest.raises(WireError):
        CheckResult.from_json(_reply([{"kind": "oops", "lines": []}]))
    with pytest.raises(WireError):
        CheckResult.from_json(_reply([{"kind": "bug", "lines": ["x"]}] * 17))
    said = warning_words(kernel_warnings(reply))
    assert said == ("the kernel warned: verifier bug (REG INVARIANTS VIOLATION): " + REG_INVARIANTS[1])[:len(said)]
    assert kernel_warnings(_reply([])) is None and warning_words(None) is None


def _run(warnings):
    r = ProgramResult(object="a.o", object_sha256="0" * 64, program="p", section="xdp", prog_type="xdp",
                      kernel="6.12", verdict="accepted", kernel_warnings=warnings)  # fmt: skip
    k = KernelInfo(id="6.12", label="6.12", version="6.12.43")
    return RunResult(kernels=[k], objects=[ObjectInfo(object="a.o", path="a.o", programs=["p"])], results=[r])


def test_cells_schema_and_the_gate():
    run = _run(kernel_warnings(_reply(splats(BACKTRACKING))))
    jsonschema.validate(run.to_json(), json.loads(SCHEMA_FILE.read_text()))
    comparison = compare(run, None)
    assert "ok, but the kernel warned: verifier bug: verifier backtracking bug" in table.render(run, comparison)
    assert "the kernel warned: verifier bug: verifier backtracking bug" in markdown.render(run, comparison)
    assert "warning" in FAIL_ON
    assert exit_status(run, comparison, "warning") == EXIT_FAILED
    assert exit_status(run, comparison, "rejection") == EXIT_OK  # accepted: only --fail-on warning gates on it
    assert "the kernel warned on 1 cell(s): a.o:p on" in gate_summary(run, comparison)
    quiet = _run(None)
    assert exit_status(quiet, compare(quiet, None), "warning") == EXIT_OK
    assert "kernel_warnings" not in quiet.to_json()["results"][0]
