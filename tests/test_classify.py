"""Classification of rejections from guest records and probe results (pure host code)."""

from compat.classify import classify, last_error_line
from compat.inventory import Inventory, diff, helper_label

INV_510 = Inventory(
    prog_types={"tracepoint": True, "xdp": True, "syscall": False},
    map_types={"ringbuf": True, "arena": False},
    helpers={"tracepoint": [1, 2, 14], "xdp": [1, 2]},
    helper_names={1: "bpf_map_lookup_elem", 2: "bpf_map_update_elem", 14: "bpf_get_current_pid_tgid"},
    kfuncs={"bpf_obj_new_impl"},
)
NAMES = {**INV_510.helper_names, 181: "bpf_loop"}


def rec(**kw):
    base = {"program": "p", "prog_type": "tracepoint", "verdict": "rejected", "stage": "load", "errno": 22,
            "message": None, "libbpf_log": "", "log": "", "helpers": [], "kfuncs": []}  # fmt: skip
    return {**base, **kw}


def test_missing_helper_beats_a_misleading_verifier_message():
    r = rec(helpers=[14, 181], log="number of funcs in func_info doesn't match number of subprogs")
    c = classify(r, {}, INV_510, NAMES)
    assert c.reason == "missing_helper"
    assert c.message == "helper bpf_loop (181) is not available on this kernel"


def test_helper_present_for_other_program_types():
    c = classify(rec(prog_type="xdp", helpers=[14]), {}, INV_510, NAMES)
    assert c.reason == "missing_helper" and "not available to xdp programs" in c.message


def test_unsupported_program_type():
    c = classify(rec(prog_type="syscall"), {}, INV_510, NAMES)
    assert (c.reason, c.message) == ("unsupported_prog_type", "program type syscall is not supported by this kernel")


def test_strong_kfunc_missing_fails_the_whole_object():
    obj = {"externs": [{"name": "bpf_iter_num_new", "kind": "kfunc", "weak": False}]}
    log = "libbpf: extern (func ksym) 'bpf_iter_num_new': not found in kernel or module BTFs"
    mine = classify(rec(stage="prepare", libbpf_log=log, kfuncs=["bpf_iter_num_new"]), obj, INV_510, NAMES)
    assert mine.reason == "missing_kfunc" and mine.message == "kfunc bpf_iter_num_new is not available on this kernel"
    other = classify(rec(stage="prepare", libbpf_log=log), obj, INV_510, NAMES)
    assert other.reason == "missing_kfunc" and "libbpf fails the whole object" in other.message


def test_unguarded_weak_kfunc_is_named():
    obj = {"externs": [{"name": "bpf_rcu_read_lock", "kind": "kfunc", "weak": True}]}
    c = classify(rec(log="0: (85) call unknown#2002000001\ninvalid func unknown#2002000001"), obj, INV_510, NAMES)
    assert c.reason == "missing_kfunc" and "bpf_rcu_read_lock" in c.message and "bpf_ksym_exists" in c.message


def test_core_relocation_names_the_field():
    log = ("prog 'p': relo #0: failed to resolve CO-RE relocation <byte_off> [12] struct task_struct.__state "
           "(0:1 @ offset 24)\n0: (85) call unknown#195896080\ninvalid func unknown#195896080")  # fmt: skip
    c = classify(rec(log=log), {}, INV_510, NAMES)
    assert c.reason == "core_relocation"
    assert c.message == "CO-RE relocation failed: task_struct.__state does not exist on this kernel"


def test_complexity_limit_and_verifier_rejection():
    big = classify(rec(errno=7, log="BPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns"), {},
                   INV_510, NAMES)  # fmt: skip
    assert big.reason == "complexity_limit" and "1,000,001" in big.message
    log = "0: (61) r2 = *(u32 *)(r1 +0)\ninvalid access to packet, off=0 size=4, R2(id=0,off=0,r=0)\nprocessed 3 insns"
    v = classify(rec(prog_type="xdp", errno=13, log=log), {}, INV_510, NAMES)
    assert v.reason == "verifier_rejection"
    assert v.message == "the verifier rejected the program: invalid access to packet, off=0 size=4, R2(id=0,off=0,r=0)"


def test_attach_target_btf_and_map_and_open():
    t = classify(rec(stage="prepare", libbpf_log="libbpf: prog 'p': failed to find kernel BTF type ID of 'do_new': -3"),
                 {}, INV_510, NAMES)  # fmt: skip
    assert (t.reason, t.message) == ("missing_attach_target", "attach target do_new does not exist on this kernel")
    b = classify(rec(stage="prepare", libbpf_log="libbpf: kernel BTF is missing at '/sys/kernel/btf/vmlinux'"), {},
                 INV_510, NAMES)  # fmt: skip
    assert b.reason == "missing_btf"
    m = classify(rec(stage="prepare"), {"maps": [{"name": "a", "type": "arena", "ok": False}]}, INV_510, NAMES)
    assert m.reason == "unsupported_map_type" and "arena" in m.message
    o = classify(rec(stage="open", message="elf: legacy map definitions in 'maps' section are not supported"), {},
                 INV_510, NAMES)  # fmt: skip
    assert o.reason == "object_error" and "legacy map" in o.message


def test_without_probe_results_classification_still_works():
    c = classify(rec(log="R1 type=ctx expected=fp\nprocessed 2 insns (limit 1000000)"), {}, None, {})
    assert c.reason == "verifier_rejection" and "R1 type=ctx expected=fp" in c.message


def test_last_error_line_skips_stats():
    log = "0: (b7) r0 = 0\nR0 !read_ok\nprocessed 1 insns (limit 1000000) max_states_per_insn 0\nverification time 5"
    assert last_error_line(log) == "R0 !read_ok"


def test_inventory_from_probe_and_diff():
    probe = {
        "prog_types": {"xdp": True, "syscall": True},
        "map_types": {"arena": True},
        "helpers": {"xdp": [1, 2, 181]},
        "helper_names": {"181": "bpf_loop"},
        "kfuncs_btf": ["bpf_iter_num_new"],
        "kfunc_allowed": {},
    }
    new = Inventory.from_probe(probe)
    d = diff(INV_510, new, {**NAMES, **new.helper_names})
    assert "syscall" in d.prog_types[0] and "arena" in d.map_types[0]
    assert "bpf_loop (181)" in d.helpers[0] and "bpf_get_current_pid_tgid (14)" in d.helpers[1]
    assert d.kfuncs == (["bpf_iter_num_new"], ["bpf_obj_new_impl"])
    assert helper_label(999, {}) == "#999"
    assert Inventory.from_probe({"helpers": "garbage", "prog_types": None}).helpers == {}
