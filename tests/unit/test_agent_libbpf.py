"""Host-only unit tests of the guest agent's log, ELF and BTF parsing (no VM, no kernel).

The verifier log samples are real level-4/level-1 outputs of Debian's 5.10, 6.12 and 7.2
kernels (as the agent receives them), trimmed.
"""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from compat_agent.bpf import libbpf as lb
from compat_agent.checker.state import explain
from compat_agent.elf.analysis import analyze_elf, helpers_from_insns
from compat_agent.elf.sections import attach_target
from compat_agent.probe.probe import decl_tagged
from compat_agent.wire.stats import parse_stats
from compat_agent.wire.verifierlog import error_line

LOG_510_ACCEPT = (
    "verification time 107 usec\nstack depth 0\n"
    "processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
)
LOG_612_E2BIG = (
    "BPF program is too large. Processed 1000001 insn\nverification time 5522547 usec\nstack depth 8\n"
    "processed 1000001 insns (limit 1000000) max_states_per_insn 4 total_states 11112 peak_states 11112 mark_read 1\n"
)
# 7.2 adds "insns processed N" and "max" to the stack depth line.
LOG_72_REJECT = (
    "invalid access to packet, off=0 size=1, R1(id=0,off=0,r=0)\n"
    "R1 min value is outside of the allowed memory range\n"
    "verification time 646 usec\nstack depth 8+16 max 0\ninsns processed 2\n"
    "processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
)
LOG_510_BPF_LOOP = (
    "number of funcs in func_info doesn't match number of subprogs\n"
    "processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
)
LOG_510_WEAK_KFUNC = (
    "4: (b7) r3 = 10\n5: <invalid kfunc call>\nkfunc 'bpf_iter_num_new' is referenced but wasn't resolved\n"
    "processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
)


def test_stats_of_an_accepted_program():
    assert parse_stats(LOG_510_ACCEPT) == {
        "insns_processed": 2,
        "states_total": 0,
        "states_peak": 0,
        "verification_time_us": 107,
        "stack_depth": [0],
        "max_states_per_insn": 0,
        "mark_read": 0,
    }


def test_stats_of_e2big_and_of_newer_formats():
    big = parse_stats(LOG_612_E2BIG)
    assert big["insns_processed"] == 1000001 and big["states_peak"] == 11112 and big["stack_depth"] == [8]
    new = parse_stats(LOG_72_REJECT)
    assert new["insns_processed"] == 2 and new["verification_time_us"] == 646 and new["stack_depth"] == [8, 16]


def test_stats_of_a_log_without_stats():
    assert parse_stats("") == dict.fromkeys(
        ("insns_processed", "states_total", "states_peak", "verification_time_us", "stack_depth",
         "max_states_per_insn", "mark_read")
    )  # fmt: skip
    # Only the "too large" line survives in a log truncated by an old kernel: still counted.
    assert parse_stats("BPF program is too large. Processed 1000001 insn\n")["insns_processed"] == 1000001


def test_error_line_skips_statistics():
    assert error_line(LOG_72_REJECT) == "R1 min value is outside of the allowed memory range"
    assert error_line(LOG_510_BPF_LOOP) == "number of funcs in func_info doesn't match number of subprogs"
    assert error_line(LOG_612_E2BIG) == "BPF program is too large. Processed 1000001 insn"
    assert error_line(LOG_510_ACCEPT) is None
    assert error_line("") is None


def test_poisoned_kfunc_calls_are_said_in_words():
    text = explain(error_line(LOG_510_WEAK_KFUNC), ["bpf_iter_num_new"])
    assert text is not None and "bpf_iter_num_new" in text and "bpf_ksym_exists" in text
    poisoned = explain("invalid func unknown#2002000001", ["bpf_a", "bpf_b"])
    assert poisoned is not None and "bpf_a" in poisoned and "unknown#" not in poisoned
    assert explain("R0 !read_ok", []) == "R0 !read_ok"
    assert explain(None, []) is None


@pytest.mark.parametrize(
    ("section", "target"),
    [
        ("kprobe/vfs_read", "vfs_read"),
        ("kretprobe/do_sys_open+0x10", "do_sys_open+0x10"),
        ("fentry/tcp_connect", "tcp_connect"),
        ("tp/syscalls/sys_enter_getpid", "syscalls/sys_enter_getpid"),
        ("lsm.s/file_open", "file_open"),
        ("kprobe", None),
        ("xdp", None),
        ("cgroup_skb/ingress", None),
    ],
)
def test_attach_target_from_section(section, target):
    assert attach_target(section) == target


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def test_helpers_from_raw_instructions():
    code = insn(0x85, imm=181) + insn(0x85, src=1, imm=3) + insn(0x85, src=2, imm=1234) + insn(0x85, imm=1)
    assert helpers_from_insns(code + insn(0x95)) == [1, 181]


# unit.o, built with clang -g -O2 -target bpf and stripped of DWARF (BTF kept), from:
#   extern int bpf_iter_num_new(void *it, int start, int end) __ksym;
#   extern void bpf_iter_num_destroy(void *it) __ksym __weak;
#   extern unsigned int CONFIG_HZ __kconfig __weak;
#   static __noinline int sub(int x) { return bpf_get_smp_processor_id() + x; }
#   static int cb(__u32 i, void *c) { bpf_ktime_get_ns(); return 0; }
#   SEC("xdp") int use_kfuncs(struct xdp_md *ctx) {
#       unsigned long long it[1];
#       bpf_iter_num_new(it, 0, 1);
#       if (bpf_iter_num_destroy) bpf_iter_num_destroy(it);
#       return XDP_PASS;
#   }
#   SEC("kprobe/vfs_read") int use_helpers(void *ctx) { bpf_loop(4, cb, 0, 0); return sub(CONFIG_HZ); }
UNIT_O = zlib.decompress(
    base64.b64decode(
        "eNqtV91rHFUUPzPJJps0SRObxH0IdKwVJ+262VbFxQjmw00TWOLaREyKcN3M3iRDdme3M7NxQxEDUhTBF1EQEayg0Ad9s6QPFv+F"
        "IoK+FPoo+NI3fYv348zO3Zvd9sULN/f+7vn4nfsx52w+zBeWTMOAqBnwD8Qoboen4vkc/h1hmjfZLMH6Ecq+xPHXSTlyeZL10+9p"
        "8u/k2M/I/j0+Pj4yJT7qAcF/cxSALR+ntGAmjJ6O9pE+j8NUeI6YvJeNKbPdz1EPjr1xnHe4nsZXGkP5aLvfK8UCfPu3ASnEU6bs"
        "P8c8pglyL30shBSeA9LCMM4t1idxPoeYz/lxZXF+yPrrOL/F+qp0keShr+O19aKtvEMY7uOxIz9t1zFcuT6UQP0e1OdtAMc+bcRj"
        "hQuGmAwlFS5QbGdRfqpDLFxeNCT3cOxUyO8bcn+/GVLvd3kPQ6c1P2dNGdMz8pyH+PVcl/ORXgzyhsTiVSeh9ZzF0Y/jeXPdQ7P9"
        "7L5APxN4bt+YYhQhnEEnXPcHU/CI9UHlrQwp8x8V26cVW2iW66RahnIpLIk/hHoSkSplS66349MgIO6265VpE/wmud6gDUokpO1S"
        "QhovXoaGF7g7Hi1brheCEzaBj42Akr3thucEnBJmwmp9Zqu+Hc40PDfMsFnGgbX8on2OSc9Nc1MrNrGD0G84oSWDtS4wp9PWDbBY"
        "Y5bEDalPvEaVePR92w3TVjZtXZqeFXJ327LbdMqUOasdTFudVpk12vk0bPietfFGkRTn19ZmQSeCTvZim7u0Uqd+AHt1v7ZFZ/a3"
        "A+LTUlluT1tUtopm9n7NbW1RBFmp1er2S2nL2RI7y07PRtEFjS178c3VpZUrZPkaW/4AXHDA2YJMSJshBGEpdB1B4GzZ4nIsN20h"
        "QeR+L3SrlOzQkHiBHfvOcndNYBSRH0K8mutVXI8Kl5ycjyJONOL+uKegWidsow57HDWfuGV72rpoNbnHVrjg7JZ89mLmr16d3yRr"
        "K9fyZH2zmCcECiuL+dW1PGT2nJq37e6wSXBQDaDiOtQLqMhzUW55DfsUe9wb+GXxXBBC/KH1s/6uEeMR1v8wMIGwNsrzLOtP4TxU"
        "8kyT9c9AfpBJxKDYcXyP1xwbwEb8gOeWNMCygs8yvIF4gnEnsjKmXoWnwvDLOZlnI/xOTubhCK8xXFRwISf3osb7gOFnp+J4OX5l"
        "Su6R4+dMuWFLwRdTcfwcL6XiODg+n4Inth4wu6z3nFi7g5KNjvqJE2sfi1wa+4/C+QjXIxy9iyVxnzHvLo6TeG96MxRbtb0q/MTx"
        "RPF+3UX/J9bHxItTcqyiO4jv01Z4RR1S5AOoE8kNrL0R5rVsWdHna4+MuKhwedKMMfc1rmDuP23G8fE6kVbiNfGbijDvBQUbcZ1v"
        "4V3NvqnhTzT8lYZva/iuhu9r8TzU8CMNRx97hFNGe7y2hnMaXtbwhoZ3NTx2ZrxvsnNJOFE4ZHLO+LSSWVhfynCglg2lUnIdXi0z"
        "lcp+lZTKZZ9V1lYe5FK9xvB0zfM/ow5LfDyo8jHOuhFtK8sWFhay5DL8T+1T5Tel2u7hD5NfOnx3ans+/o3a1uZwzGnrSQ2/3cW+"
        "qeWBbvZv4fcxp63/iYpZ7fdyUqkFvAVd+B9q+aMbf60Lf3LgJH+iA/8O8ut3oL7vx53/7Q5ros7i4l+aA93f913izw203+Mwxq7H"
        "f6kL/3k80KbxeP4XuvA3I34j5h/swL/Jz65wXMN/c1rtLr7fxBPO73OAjlXwVn/7PRj4uySp1bP/AG0Fo7U="
    )
)


def test_elf_externs_with_kind_and_weakness():
    info = analyze_elf(UNIT_O)
    assert info.externs == [
        {"name": "bpf_iter_num_new", "kind": "kfunc", "weak": False},
        {"name": "bpf_iter_num_destroy", "kind": "kfunc", "weak": True},
        {"name": "CONFIG_HZ", "kind": "kconfig", "weak": True},
    ]


def test_elf_calls_follow_subprograms_and_callbacks():
    calls = analyze_elf(UNIT_O).calls
    # bpf_loop (181) itself, ktime_get_ns (5) in its callback, smp_processor_id (8) in a subprogram.
    assert calls[("kprobe/vfs_read", "use_helpers")] == ([5, 8, 181], [])
    assert calls[("xdp", "use_kfuncs")] == ([], ["bpf_iter_num_destroy", "bpf_iter_num_new"])


def test_elf_rejects_what_is_not_a_bpf_object():
    with pytest.raises(ValueError):
        analyze_elf(b"garbage")


def btf_blob(types: bytes, strings: bytes) -> bytes:
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings)) + types + strings


def test_kfunc_decl_tags_are_found_by_byte_search():
    strings = b"\0int\0bpf_foo\0bpf_kfunc\0bpf_bar\0"
    name = {s: strings.index(s.encode() + b"\0") for s in ("int", "bpf_foo", "bpf_kfunc", "bpf_bar")}
    types = b"".join(
        (
            struct.pack("<IIII", name["int"], 1 << 24, 4, 32),  # [1] INT
            struct.pack("<III", 0, 13 << 24, 1),  # [2] FUNC_PROTO, returns int
            struct.pack("<III", name["bpf_foo"], 12 << 24 | 1, 2),  # [3] FUNC bpf_foo
            struct.pack("<III", name["bpf_bar"], 12 << 24 | 1, 2),  # [4] FUNC bpf_bar
            struct.pack("<IIIi", name["bpf_kfunc"], 17 << 24, 3, -1),  # [5] DECL_TAG on [3]
            struct.pack("<IIIi", name["bpf_kfunc"], 17 << 24, 3, 0),  # [6] a tag on an argument: not a kfunc tag
        )
    )
    assert decl_tagged(btf_blob(types, strings)) == [3]
    assert decl_tagged(btf_blob(types[:-32], strings)) == []


def test_libbpf_lines_drop_prefix_and_echoed_verifier_logs():
    chunks = [
        "libbpf: prog 'x': -- BEGIN PROG LOAD LOG --\n0: (b7) r0 = 0\nR0 !read_ok\n-- END PROG LOAD LOG --\n",
        "libbpf: prog 'x': failed to load: -13\n",
    ]
    out = lb.lines(chunks)
    assert out[-1] == "prog 'x': failed to load: -13"
    assert not any("R0 !read_ok" in line for line in out)


def test_errno_text_knows_libbpf_codes():
    assert lb.errno_text(-4007) == "Program too big"
    assert lb.errno_text(13) == "Permission denied"
    assert lb.LibbpfError("bpf_x", -2, ["first", "last"]).message == "last"
