"""pt_regs of another architecture (compat_agent/elf/ptregs.py): objects compiled with clang for
x86's or arm64's pt_regs, with and without CO-RE, are told apart from their own BTF."""

from __future__ import annotations

import pytest
from bpf_build import build_source
from compat_agent.elf.ptregs import pt_regs_arch

HEAD = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
"""

# x86 without CO-RE: the uapi struct pt_regs, PT_REGS_PARM1 a read at di's fixed offset.
X86_PLAIN = HEAD + """#include <linux/ptrace.h>
#include <bpf/bpf_tracing.h>
long seen;
SEC("kprobe/do_nanosleep")
int probe(struct pt_regs *ctx)
{
	seen = PT_REGS_PARM1(ctx) + PT_REGS_PARM2(ctx);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""

# x86 with CO-RE (as vmlinux.h declares it): PT_REGS_PARM1_CORE relocates pt_regs.di.
X86_CORE = HEAD + """#include <bpf/bpf_core_read.h>
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
} __attribute__((preserve_access_index));
#define __VMLINUX_H__ 1 /* the kernel's register names, as with vmlinux.h */
#include <bpf/bpf_tracing.h>
long seen;
SEC("kprobe/do_nanosleep")
int probe(struct pt_regs *ctx)
{
	seen = PT_REGS_PARM1_CORE(ctx);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""

# arm64 with CO-RE: bpf_tracing.h reads user_pt_regs.regs[0].
ARM64_CORE = HEAD + """#include <bpf/bpf_core_read.h>
#undef __TARGET_ARCH_x86
#define __TARGET_ARCH_arm64 1
struct user_pt_regs { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; } __attribute__((preserve_access_index));
struct pt_regs { union { struct user_pt_regs user_regs; struct { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; }; };
	__u64 orig_x0; } __attribute__((preserve_access_index));
#include <bpf/bpf_tracing.h>
long seen;
SEC("kprobe/do_nanosleep")
int probe(struct pt_regs *ctx)
{
	seen = PT_REGS_PARM1_CORE(ctx);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""

# No pt_regs at all (a tracepoint), and a CO-RE read of sp only (both architectures have it).
NONE = HEAD + """SEC("tracepoint/syscalls/sys_enter_getpid")
int tp(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""
SP_ONLY = HEAD + """#include <bpf/bpf_core_read.h>
struct pt_regs { unsigned long di, si, sp; } __attribute__((preserve_access_index));
long seen;
SEC("kprobe/do_nanosleep")
int probe(struct pt_regs *ctx)
{
	seen = BPF_CORE_READ(ctx, sp);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    d = tmp_path_factory.mktemp("ptregs")
    sources = {"x86_plain": X86_PLAIN, "x86_core": X86_CORE, "arm64_core": ARM64_CORE, "none": NONE, "sp": SP_ONLY}
    return {name: build_source(text, d, name).read_bytes() for name, text in sources.items()}


def test_x86_without_core_reads_garbage_on_arm64(objects):
    found = pt_regs_arch(objects["x86_plain"])
    assert found is not None and found.arch == "x86" and found.debian_arch() == "amd64"
    assert {"rdi", "rsi"} <= set(found.fields) and not found.core_fields
    assert found.words("amd64") is None
    words = found.words("arm64")
    assert words and words.startswith("built for x86 pt_regs (") and "on arm64 it would load and read garbage" in words


def test_x86_core_reads_are_named(objects):
    found = pt_regs_arch(objects["x86_core"])
    assert found is not None and found.arch == "x86" and found.core_fields == ["di"]
    assert "CO-RE reads of di" in (found.words("arm64") or "") and found.words("amd64") is None


def test_arm64_object_on_amd64(objects):
    found = pt_regs_arch(objects["arm64_core"])
    assert found is not None and found.arch == "arm64" and found.debian_arch() == "arm64"
    assert found.core_fields and set(found.core_fields) <= {"regs", "user_regs"}
    assert found.words("arm64") is None and "__TARGET_ARCH_x86" in (found.words("amd64") or "")


def test_no_finding_without_arch_fields(objects):
    assert pt_regs_arch(objects["none"]) is None
    assert pt_regs_arch(objects["sp"]) is None  # CO-RE on sp alone is right on both
    assert pt_regs_arch(b"not an elf") is None
    assert pt_regs_arch(objects["x86_plain"][:200]) is None  # truncated: no finding, no exception
