"""arm64 guests (issue 18) on a real Debian arm64 kernel under qemu-system-aarch64 (TCG): one
kernel (6.1 on arm64), two small objects. What differs from amd64 is asserted on the real guest:

- syscall wrappers: a kprobe on x86-64's __x64_sys_getpid loads but does not attach on arm64
  (its wrapper is __arm64_sys_getpid; the attach record says so); SEC("ksyscall/getpid") attaches
  on both;
- BPF trampolines: fentry on a kernel function loads on arm64 6.1 but its attach fails with
  ENOTSUPP (524): arm64 attaches fentry/fexit to kernel functions from 6.4 on (x86-64 from 5.5;
  programs/module_targets.o's fentry attaches on amd64 6.1, see programs/expected.yaml);
- pt_regs: an object built with __TARGET_ARCH_x86 is flagged on arm64 (ProgramResult.pt_regs);
- the result names the architecture (kernels[].arch) and the guest is an aarch64 one.
"""

from __future__ import annotations

import json

import pytest
from bpf_build import build_source
from conftest import run_compat

pytestmark = pytest.mark.vm

WRAPPERS = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("kprobe/__x64_sys_getpid")
int x64_wrapper(void *ctx) { return 0; }
SEC("kprobe/__arm64_sys_getpid")
int arm64_wrapper(void *ctx) { return 0; }
SEC("ksyscall/getpid")
int any_arch(void *ctx) { return 0; }
SEC("fentry/do_nanosleep")
int entry(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""

X86_PT_REGS = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <linux/ptrace.h>
#include <bpf/bpf_tracing.h>
long seen;
SEC("kprobe/do_nanosleep")
int first_arg(struct pt_regs *ctx)
{
	seen = PT_REGS_PARM1(ctx);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def arm64_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("arm64")
    objects = [build_source(WRAPPERS, d, "wrappers"), build_source(X86_PT_REGS, d, "x86_pt_regs")]
    out = d / "result.json"
    proc = run_compat("-q", "check", *map(str, objects), "--kernel", "6.1", "--arch", "arm64", "--no-cache",
                      "--format", "json", "--output", str(out), "--format", "table", "--output", "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def _cell(doc: dict, program: str) -> dict:
    return next(r for r in doc["results"] if r["program"] == program)


def test_the_guest_is_arm64(arm64_run):
    doc, _ = arm64_run
    (kernel,) = doc["kernels"]
    assert (kernel["id"], kernel["arch"], kernel["accel"]) == ("6.1-arm64", "arm64", "tcg")
    assert kernel["release"].endswith("-arm64") and not kernel["error"]


def test_syscall_wrappers_are_the_guest_s(arm64_run):
    doc, _ = arm64_run
    x64, arm64, anyarch = (_cell(doc, p) for p in ("x64_wrapper", "arm64_wrapper", "any_arch"))
    assert x64["verdict"] == "accepted" and x64["attach"]["status"] == "failed"
    assert "__arm64_sys_getpid" in x64["attach"]["reason"] and "ksyscall/getpid" in x64["attach"]["reason"]
    assert arm64["attach"]["status"] == "ok" and anyarch["attach"]["status"] == "ok"


def test_fentry_attach_needs_arm64_trampolines(arm64_run):
    doc, _ = arm64_run
    entry = _cell(doc, "entry")
    assert entry["verdict"] == "accepted" and entry["attach"]["status"] == "failed"
    assert entry["attach"]["errno"] == 524 and "from Linux 6.4" in entry["attach"]["reason"]


def test_x86_pt_regs_object_is_flagged(arm64_run):
    doc, table = arm64_run
    cell = _cell(doc, "first_arg")
    assert cell["verdict"] == "accepted"  # it loads: and would read other registers than it means
    assert cell["pt_regs"].startswith("built for x86 pt_regs (") and "read garbage" in cell["pt_regs"]
    assert "pt_regs" not in _cell(doc, "x64_wrapper")  # no pt_regs in its BTF: nothing to say
    assert "built for x86 pt_regs" in table


def test_kernel_btf_is_lent_to_libbpf_on_arm64(real_cache):
    """The agent parses the kernel's BTF once and lends it to libbpf through libbpf's GOT: on an
    arm64 libbpf too (its relocation numbers are arm64's; with x86-64's every CO-RE load parsed
    the BTF again and CO-RE objects checked 3-6x slower than on amd64)."""
    from compat.guest.fleet import Fleet
    from compat.kernels.matrix import load_matrix

    fleet = Fleet(real_cache, load_matrix(arch="arm64").select(["6.1"]), jobs=1)
    (outcome,) = fleet.run(lambda session, kernel: session.request({"type": "warm"}, timeout=300)[0])
    assert outcome.error is None, outcome.error
    assert outcome.value["kernel_btf"] == "installed", outcome.value


def test_mixed_matrix_reports_both_architectures_side_by_side(built_programs, tmp_path):
    """amd64 and arm64 builds of 6.12 in one matrix: one column each, amd64's first, and the
    kprobe on __x64_sys_cachestat attaches on amd64 only (programs/expected.yaml, arm64:)."""
    matrix = tmp_path / "mixed.yaml"
    matrix.write_text('kernels:\n  - series: "6.12"\n  - series: "6.12"\n    arch: arm64\n')
    out = tmp_path / "result.json"
    objects = [str(built_programs["kprobe_new_target"]), str(built_programs["counter"])]
    report = tmp_path / "report.md"
    proc = run_compat("-q", "check", *objects, "--matrix", str(matrix), "--no-cache", "--format", "json",
                      "--output", str(out), "--format", "markdown", "--output", str(report))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert [(k["id"], k["arch"]) for k in doc["kernels"]] == [("6.12", "amd64"), ("6.12-arm64", "arm64")]
    attach = {r["kernel"]: r["attach"]["status"] for r in doc["results"] if r["program"] == "count_cachestat"}
    assert attach == {"6.12": "ok", "6.12-arm64": "failed"}
    header = next(line for line in report.read_text().splitlines() if line.startswith("| program"))
    assert header.index("6.12<br>") < header.index("6.12-arm64<br>")
