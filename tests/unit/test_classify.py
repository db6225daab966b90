"""Classification of rejections from guest records and probe results (pure host code).

The cases are written as the guest's texts; classify() here gives each record the facts the
agent sends: what the agent knows itself, given by the case as the record's (or the object's)
"facts" the way the agent emits them directly, then what the kernel's and libbpf's words in the
texts say (compat_agent.wire.textfacts, as the agent reads them). Then it classifies from the
facts alone, as the host does, with the modules the host loaded first given as data.
"""

from collections.abc import Mapping
from typing import Any

from compat_agent.wire.facts import fact
from compat_agent.wire.textfacts import program_facts
from compat_agent.wire.verifierlog import error_line

from compat.results import classify as fact_classify
from compat.results.inventory import Inventory, diff, helper_label


def with_facts(program: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """A program record as the agent sends it: its own facts (the case's), then its texts' (add_facts)."""
    maps = [str(m.get("name")) for m in obj.get("maps") or [] if isinstance(m, dict)]
    open_log = str((obj.get("open") or {}).get("libbpf_log") or "")
    said = program_facts(program.get("message"), program.get("libbpf_log"), program.get("log"), open_log, maps)
    return {**program, "facts": [*(program.get("facts") or []), *said]}


def classify(
    program: dict,
    obj: dict,
    inventory: Inventory | None,
    names: dict[int, str],
    modules: Mapping[str, str] | None = None,
    **kw: Any,
):
    """The host's classification of a record written as texts (its facts made first)."""
    siblings = [with_facts(p, obj) for p in obj.get("programs") or []]
    return fact_classify.classify(with_facts(program, obj), {**obj, "programs": siblings}, inventory, names, modules,
                                  **kw)  # fmt: skip


def last_error_line(log: str) -> str | None:
    """The verifier's error line as the facts carry it (bounded)."""
    line = error_line(log)
    return line[:300] if line else None


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


def test_the_classification_carries_the_helpers_and_kfuncs_it_blames():
    # objects.sourcemap locates the rejection at their calls: it reads them here, not in the message.
    c = classify(rec(helpers=[14, 181]), {}, INV_510, {})  # no name for 181: "#181"
    assert (c.message, c.helpers, c.kfuncs) == ("helper #181 is not available on this kernel", (181,), ())
    obj = {"externs": [{"name": "bpf_iter_num_new", "kind": "kfunc", "weak": False},
                       {"name": "bpf_iter_num_next", "kind": "kfunc", "weak": False}]}  # fmt: skip
    log = ("libbpf: extern (func ksym) 'bpf_iter_num_new': not found in kernel or module BTFs\n"
           "libbpf: extern (func ksym) 'bpf_iter_num_next': not found in kernel or module BTFs")  # fmt: skip
    mine = classify(rec(stage="prepare", libbpf_log=log, kfuncs=["bpf_iter_num_new", "bpf_iter_num_next"]), obj,
                    INV_510, NAMES)  # fmt: skip
    assert (mine.reason, mine.helpers, mine.kfuncs) == ("missing_kfunc", (), ("bpf_iter_num_new", "bpf_iter_num_next"))
    other = classify(rec(stage="prepare", libbpf_log=log), obj, INV_510, NAMES)
    assert other.kfuncs == ("bpf_iter_num_new", "bpf_iter_num_next")
    verifier = classify(rec(log="R0 !read_ok\nprocessed 1 insns"), {}, INV_510, NAMES)
    assert (verifier.helpers, verifier.kfuncs) == ((), ())
    # A struct_ops program not verified because of its sibling blames what the sibling's reason blames.
    culprit = rec(program="a", prog_type="struct_ops", helpers=[181])
    sibling = so_rec(program="b", facts=[fact("struct_ops_sibling", map="m", program="a")])
    inv = Inventory(prog_types={"struct_ops": True}, helpers={"struct_ops": [1]})
    c = classify(sibling, {"programs": [culprit, sibling]}, inv, NAMES)
    assert (c.reason, c.helpers) == ("missing_helper", (181,))


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
        "features": {"struct_ops_link": True},
    }
    new = Inventory.from_probe(probe)
    d = diff(INV_510, new, {**NAMES, **new.helper_names})
    assert d.features == (["struct_ops_link"], [])
    assert "syscall" in d.prog_types[0] and "arena" in d.map_types[0]
    assert "bpf_loop (181)" in d.helpers[0] and "bpf_get_current_pid_tgid (14)" in d.helpers[1]
    assert d.kfuncs == (["bpf_iter_num_new"], ["bpf_obj_new_impl"])
    assert helper_label(999, {}) == "#999"
    assert Inventory.from_probe({"helpers": "garbage", "prog_types": None}).helpers == {}


# Real texts from third-party objects (Debian's systemd, xdp-tools, opensnitch, suricata).
def test_program_using_a_map_that_was_not_created_is_an_object_error():
    message = ("BPF map 'sd_bind_allow' is referenced but wasn't created "
               "(map 'sd_bind_allow': failed to create: Invalid argument(-22))")  # fmt: skip
    log = "17: <invalid BPF map reference>\nBPF map 'sd_bind_allow' is referenced but wasn't created\nprocessed 17"
    obj = {"maps": [{"name": "sd_bind_allow", "type": "hash", "ok": False, "errno": -22}]}
    r = rec(prog_type="cgroup_sock_addr", message=message, libbpf_log="map 'sd_bind_allow': failed to create: "
            "Invalid argument(-22)", log=log)  # fmt: skip
    c = classify(r, obj, INV_510, NAMES)
    assert (c.reason, c.message) == (
        "object_error",
        "map sd_bind_allow could not be created (failed to create: Invalid argument(-22)), so the program cannot load",
    )
    # Only the verifier's poison line (older results): the errno comes from the map record.
    c = classify(rec(prog_type="cgroup_sock_addr", log=log), obj, INV_510, NAMES)
    assert c.message == (
        "map sd_bind_allow could not be created (failed to create: Invalid argument(-22)), so the program cannot load"
    )
    # A map type the kernel lacks is still named as such.
    arena = {"maps": [{"name": "sd_bind_allow", "type": "arena", "ok": False, "errno": -22}]}
    assert classify(r, arena, INV_510, NAMES).reason == "unsupported_map_type"


def test_map_of_maps_whose_inner_map_the_loader_supplies():
    message = ("BPF map 'cgroup_hash' is referenced but wasn't created "
               "(map 'cgroup_hash': failed to create: Invalid argument(-22))")  # fmt: skip
    obj = {"maps": [{"name": "cgroup_hash", "type": "hash_of_maps", "ok": False, "errno": -22}]}
    c = classify(rec(prog_type="lsm", message=message), obj, INV_510, NAMES)
    assert c.reason == "object_error"
    assert c.message == (
        "map cgroup_hash could not be created (failed to create: Invalid argument(-22)): it is a map of maps whose "
        "inner map its loader must supply at run time (bpf_map__set_inner_map_fd), so the program cannot load here"
    )
    # An inner map the object defines itself (libbpf names it '<outer>.inner') that failed.
    lines = ("map 'cgroup_hash.inner': failed to create: Invalid argument(-22)\n"
             "map 'cgroup_hash': failed to create inner map: -22\n"
             "map 'cgroup_hash': failed to create: Invalid argument(-22)")  # fmt: skip
    c = classify(rec(prog_type="lsm", stage="prepare", libbpf_log=lines), obj, INV_510, NAMES)
    assert c.reason == "object_error"
    assert c.message == (
        "map cgroup_hash could not be created: its inner map failed to create "
        "(failed to create: Invalid argument(-22)), so the program cannot load"
    )


def test_unknown_section_name_needs_the_loader_to_set_the_type():
    log = "prog 'lb': missing BPF prog type, check ELF section name 'loadbalancer'"
    want = (
        "object_error",
        "libbpf cannot tell the program type from section 'loadbalancer' and its context argument does not tell "
        "it either: its loader sets it (bpf_program__set_type); --program-type 'loadbalancer=TYPE' checks it as "
        "one (tc, xdp, lwt_xmit, ...)",
    )
    for stage in ("prepare", "load"):  # older results say "load"
        r = rec(prog_type="unspec", stage=stage, errno=22, message=log.split(": ", 1)[1], libbpf_log=log)
        c = classify(r, {}, INV_510, NAMES)
        assert (c.reason, c.message) == want
    c = classify(rec(prog_type="unspec", section="loadbalancer"), {}, INV_510, NAMES)
    assert (c.reason, c.message) == want
    # --program-type named a section libbpf does not know: the agent's words, not the generic ones.
    words = (
        "--program-type names section 'tcx_nope', which libbpf 1.5 does not know "
        "(a section name such as tc, xdp or lwt_xmit)"
    )
    option = fact("unknown_type_option", section="tcx_nope", libbpf="1.5")  # the agent's fact for its words
    c = classify(rec(prog_type="unspec", stage="prepare", message=words, facts=[option]), {}, INV_510, NAMES)
    assert (c.reason, c.message) == ("object_error", words)


def test_unresolved_weak_kfunc_at_load_is_missing_not_disallowed():
    # bpf_rdonly_cast arrived in 6.2: the 6.1 kernel lacks it, so it is "not allowed" in every probe too.
    inv = Inventory(prog_types={"lsm": True}, helpers={"lsm": [1]}, kfuncs_checked={"bpf_rdonly_cast"},
                    kfunc_allowed={"bpf_rdonly_cast": {"lsm": False}})  # fmt: skip
    obj = {"externs": [{"name": "bpf_rdonly_cast", "kind": "kfunc", "weak": True}]}
    want = (
        "missing_kfunc",
        "kfunc bpf_rdonly_cast is not available on this kernel and the call is not guarded by bpf_ksym_exists()",
    )
    libbpf = "kfunc 'bpf_rdonly_cast' is referenced but wasn't resolved"
    agent = ("calls kfunc 'bpf_rdonly_cast', which this kernel does not have "
             "(a __weak extern: guard the call with bpf_ksym_exists())")  # fmt: skip
    # libbpf's words, or the agent's rewording of them (it sends the fact with it: explain()).
    reworded = [fact("kfunc_unresolved", name="bpf_rdonly_cast")]
    for message, log, facts in ((libbpf, f"5: <invalid kfunc call>\n{libbpf}\n", []), (agent, "", reworded)):
        r = rec(prog_type="lsm", message=message, log=log, kfuncs=["bpf_rdonly_cast"], facts=facts)
        c = classify(r, obj, inv, NAMES)
        assert (c.reason, c.message) == want
        # Even without the inventory having looked the kfunc up.
        assert classify(r, obj, Inventory(prog_types={"lsm": True}), NAMES).message == want[1]
    # Absent by the inventory alone (no text): never "not allowed".
    r = rec(prog_type="lsm", log="R1 invalid mem access 'scalar'", kfuncs=["bpf_rdonly_cast"])
    c = classify(r, obj, inv, NAMES)
    assert c.reason == "verifier_rejection"
    # A kfunc the kernel has but does not allow in this program type still says so.
    inv.kfuncs.add("bpf_rdonly_cast")
    c = classify(rec(prog_type="lsm", log="calling kernel function bpf_rdonly_cast is not allowed",
                     kfuncs=["bpf_rdonly_cast"]), obj, inv, NAMES)  # fmt: skip
    assert c.message == "kfunc bpf_rdonly_cast is not allowed in lsm programs on this kernel"


def test_legacy_map_sections():
    o = classify(rec(stage="open", errno=22, message="bad map relo against 'events' in section 'maps/events'"), {},
                 INV_510, NAMES)  # fmt: skip
    assert (o.reason, o.message) == (
        "object_error",
        "libbpf cannot parse this object: it defines maps in legacy 'maps/...' sections (struct bpf_map_def), which "
        "libbpf 1.0 and later do not support: bad map relo against 'events' in section 'maps/events'",
    )
    # The agent's legacy-map loader could not load it either: why is kept (the object's fact, check.py).
    why = "compat's legacy-map loader cannot load it either: it also has CO-RE relocations, which need libbpf 1.x"
    unsupported = {"facts": [fact("legacy_unsupported", kind="core_relocations")]}
    o = classify(rec(stage="open", errno=22, message="bad map relo against 'events' in section 'maps/events'"),
                 unsupported, INV_510, NAMES)  # fmt: skip
    assert o.message.endswith(f"'maps/events' ({why})")
    # A reason with parameters is worded by the host from them (the agent sends a code, no prose).
    sized = {"facts": [fact("legacy_unsupported", kind="map_definition_size", map="events", size=8)]}
    o = classify(rec(stage="open", errno=22, message="bad map relo against 'events' in section 'maps/events'"),
                 sized, INV_510, NAMES)  # fmt: skip
    assert o.message.endswith("cannot load it either: map 'events' has a definition of 8 bytes)")
    # Suricata's single 'maps' section: libbpf's own words are clear already.
    msg = "elf: legacy map definitions in 'maps' section are not supported by libbpf v1.0+"
    s = classify(rec(stage="open", message=msg), {}, INV_510, NAMES)
    assert s.message == f"libbpf cannot parse this object: {msg}"


def test_an_object_to_link_with_others_says_so():
    for message, what in (
        ("unrecognized extern section '.maps'", "extern maps (section '.maps')"),
        ("failed to find BTF for extern 'set_output_val2' [354] section: -2", "extern 'set_output_val2'"),
    ):
        c = classify(rec(stage="open", errno=22, message=message), {}, INV_510, NAMES)
        assert (c.reason, c.message) == (
            "object_error",
            f"libbpf cannot load this object alone: it declares {what}, defined in another BPF object; link them "
            "first (bpftool gen object linked.o a.bpf.o b.bpf.o) and check the linked object",
        )


def test_missing_helper_still_wins_over_a_different_verifier_error():
    # 5.10, LSM: the helper is missing there; the verifier's first complaint is about the attach target.
    inv = Inventory(prog_types={"lsm": True}, helpers={"lsm": [1, 2]}, helper_names=NAMES)
    log = "The function bpf_lsm_path_chown arg1 type STRUCT is unsupported.\nprocessed 0 insns"
    c = classify(rec(prog_type="lsm", helpers=[1, 181], log=log), {}, inv, NAMES)
    assert (c.reason, c.message) == ("missing_helper", "helper bpf_loop (181) is not available on this kernel")


def test_attach_target_in_a_module_without_module_btf():
    # 5.10: the host loaded ext4 for fentry/ext4_file_read_iter, but 5.10 has no module BTF.
    program = {
        "prog_type": "tracing",
        "stage": "prepare",
        "errno": 3,
        "message": "failed to find kernel BTF type ID of 'ext4_file_read_iter': -3",
        "libbpf_log": "[compat: module ext4 loaded first: it defines ext4_file_read_iter]\n"
        "prog 'ext4_read_entry': failed to find kernel BTF type ID of 'ext4_file_read_iter': -3",
        "log": "",
    }
    got = classify(program, {}, None, {}, {"ext4_file_read_iter": "ext4"})  # what the host loaded, as data
    assert got.reason == "missing_attach_target"
    assert "in module ext4" in got.message and "5.11" in got.message


def test_a_sleepable_program_on_a_target_the_kernel_keeps_non_sleepable():
    # kernel selftests' fentry.s/__x64_sys_getpgid on Debian (no CONFIG_FUNCTION_ERROR_INJECTION)
    log = "__x64_sys_getpgid is not sleepable\nprocessed 0 insns (limit 1000000) max_states_per_insn 0\n"
    c = classify(rec(prog_type="tracing", log=log), {}, INV_510, NAMES)
    assert c.reason == "missing_attach_target"
    assert c.message.startswith("attach target __x64_sys_getpgid takes no sleepable programs on this kernel")


def test_helpers_the_probe_cannot_see_do_not_hide_the_real_error():
    # bpf_seq_printf: iterator programs only; the probe tries tracing programs as fentry
    log = "R2 invalid mem access 'trusted_ptr_or_null_'\nprocessed 12 insns (limit 1000000)\n"
    c = classify(rec(prog_type="tracing", helpers=[126], log=log), {}, INV_510, NAMES)
    assert c.reason == "verifier_rejection" and "invalid mem access" in c.message


def test_a_failed_map_is_not_blamed_on_programs_verified_without_it():
    obj = {"maps": [{"name": "cgrp_ls_map", "type": "cgrp_storage", "ok": False, "errno": -22}]}
    inv = Inventory(prog_types={"tracing": True}, map_types={"cgrp_storage": False})
    verified = rec(prog_type="tracing", log="R1 invalid mem access 'scalar'\nprocessed 5 insns\n")
    assert classify(verified, obj, inv, NAMES).reason == "verifier_rejection"
    never = rec(prog_type="tracing", stage="prepare", libbpf_log="map 'cgrp_ls_map': failed to create: -22")
    assert classify(never, obj, inv, NAMES).reason == "unsupported_map_type"


# struct_ops: real texts of the kernel selftests' objects and programs/struct_ops.bpf.c on Debian's kernels.
INV_61 = Inventory(prog_types={"struct_ops": True}, map_types={"struct_ops": True},
                   features={"struct_ops_link": False})  # fmt: skip
INV_612 = Inventory(prog_types={"struct_ops": True}, map_types={"struct_ops": True},
                    features={"struct_ops_link": True})  # fmt: skip


def so_map(name, tname="tcp_congestion_ops", link=False, ok=False, errno=-22):
    return {"name": name, "type": "struct_ops", "ok": ok, "errno": errno, "struct_ops": {"type": tname, "link": link}}


def so_rec(**kw):
    return rec(**{"prog_type": "struct_ops", "stage": "prepare", "errno": None, **kw})


def test_struct_ops_type_the_kernel_lacks():
    line = "struct_ops init_kern: struct sched_ext_ops is not found in kernel BTF"
    obj = {"maps": [so_map("simple_ops", "sched_ext_ops", errno=-2)]}
    failed = [fact("struct_ops_map_failed", map="simple_ops")]  # the agent's fact for its note
    r = so_rec(message=f"not verified: its struct_ops map 'simple_ops' could not be created ({line})", facts=failed)
    c = classify(r, obj, INV_61, NAMES)
    assert (c.reason, c.message) == (
        "missing_attach_target",
        "struct_ops type sched_ext_ops does not exist on this kernel "
        "(sched_ext needs Linux 6.12 or later, built with CONFIG_SCHED_CLASS_EXT)",
    )
    # Newer libbpf looks for the value type first; a whole-object failure (no ELF analysis) says the same.
    newer = "struct_ops init_kern: struct bpf_struct_ops_hid_bpf_ops is not found in kernel BTF"
    c = classify(so_rec(errno=2, message=newer, libbpf_log=newer), {}, INV_61, NAMES)
    assert c.reason == "missing_attach_target" and c.message.startswith("struct_ops type hid_bpf_ops does not exist")
    assert "CONFIG_HID_BPF" in c.message
    odd = "struct_ops init_kern: struct compat_no_such_ops is not found in kernel BTF"
    c = classify(so_rec(message=odd), {}, INV_61, NAMES)
    assert c.message.endswith("(not in the BTF of the kernel or of a loaded module)")


def test_struct_ops_member_the_kernel_lacks():
    line = "struct_ops init_kern dummy_1: Cannot find member test_sleepable in kernel BTF"
    obj = {"maps": [so_map("dummy_1", "bpf_dummy_ops", errno=-95)]}
    failed = [fact("struct_ops_map_failed", map="dummy_1")]
    c = classify(so_rec(message=f"not verified: its struct_ops map 'dummy_1' could not be created ({line})",
                        facts=failed), obj, INV_61, NAMES)  # fmt: skip
    assert c.reason == "missing_attach_target"
    assert c.message.startswith(
        "struct_ops map dummy_1 sets test_sleepable, which this kernel's struct bpf_dummy_ops does not have"
    )
    mismatch = "struct_ops init_kern ops: Error in size of member name: 32 != 16(kernel)"
    c = classify(so_rec(message=mismatch), {"maps": [so_map("ops")]}, INV_61, NAMES)
    assert c.reason == "missing_attach_target"
    assert c.message == f"member name of struct tcp_congestion_ops differs on this kernel ({mismatch})"


def test_struct_ops_link_map_before_6_4():
    message = ("not verified: its struct_ops map 'ca_update_1' could not be created "
               "(map 'ca_update_1': failed to create: Invalid argument(-22))")  # fmt: skip
    failed = [fact("struct_ops_map_failed", map="ca_update_1")]
    obj = {"maps": [so_map("ca_update_1", link=True)]}
    c = classify(so_rec(message=message, facts=failed), obj, INV_61, NAMES)
    assert c.reason == "unsupported_map_type"
    assert 'declared SEC(".struct_ops.link")' in c.message and "Linux 6.4" in c.message
    # Where links are supported, the failure is something else: said as a map that failed.
    assert classify(so_rec(message=message, facts=failed), obj, INV_612, NAMES).reason == "object_error"
    # A kernel without struct_ops maps at all: the map type is the reason.
    old = Inventory(map_types={"struct_ops": False}, features={"struct_ops_link": False})
    c = classify(so_rec(message=message, facts=failed), obj, old, NAMES)
    assert (c.reason, c.message) == (
        "unsupported_map_type",
        "map type struct_ops (map ca_update_1) is not supported by this kernel",
    )


def test_struct_ops_program_not_verified_carries_its_siblings_reason():
    log = "BPF_CALL uses reserved fields\nprocessed 0 insns (limit 1000000) max_states_per_insn 0\n"
    culprit = rec(program="cc_cong_avoid", prog_type="struct_ops", log=log, kfuncs=["tcp_reno_cong_avoid"])
    sibling = so_rec(program="cc_ssthresh", message="not verified: its struct_ops map 'compat_cc' cannot be created "
                     "without program 'cc_cong_avoid', which was rejected",
                     facts=[fact("struct_ops_sibling", map="compat_cc", program="cc_cong_avoid")])  # fmt: skip
    obj = {"programs": [culprit, sibling], "maps": [so_map("compat_cc", ok=None, errno=None)],
           "externs": [{"name": "tcp_reno_cong_avoid", "kind": "kfunc", "weak": False}]}  # fmt: skip
    inv = Inventory(prog_types={"struct_ops": True}, map_types={"struct_ops": True}, kfuncs={"tcp_reno_cong_avoid"},
                    kfuncs_checked={"tcp_reno_cong_avoid"})  # fmt: skip
    own = classify(culprit, obj, inv, NAMES)
    assert (own.reason, own.message) == (
        "missing_kfunc",
        "this kernel cannot call kfuncs (Linux 5.13 and later can): the program calls tcp_reno_cong_avoid",
    )
    c = classify(sibling, obj, inv, NAMES)
    assert c.reason == "missing_kfunc"
    assert c.message == (
        f"not verified: struct_ops map compat_cc cannot be created without cc_cong_avoid, which this kernel "
        f"rejects: {own.message}"
    )


def test_struct_ops_callbacks_the_kernel_declares_otherwise():
    # bpf_cc_cubic on 6.1: cong_control gained arguments in 6.10
    log = ("5: (79) r4 = *(u64 *)(r1 +24)\nfunc 'cong_control' doesn't have 4-th argument\n"
           "invalid bpf_context access off=24 size=8\nprocessed 6 insns (limit 1000000)\n")  # fmt: skip
    c = classify(rec(prog_type="struct_ops", errno=13, log=log), {}, INV_61, NAMES)
    assert (c.reason, c.message) == (
        "missing_attach_target",
        "cong_control takes fewer than 4 arguments on this kernel, and the program reads argument 4 "
        "(it was written for another kernel's prototype)",
    )
    log = "attach to unsupported member get_info of struct tcp_congestion_ops\nprocessed 0 insns (limit 1000000)\n"
    c = classify(rec(prog_type="struct_ops", errno=524, log=log), {}, INV_61, NAMES)
    assert c.reason == "missing_attach_target"
    assert c.message.startswith("this kernel does not let BPF implement get_info of struct tcp_congestion_ops")
    log = "Only fentry/fexit/fmod_ret, lsm, and kprobe/uprobe programs can be sleepable\nprocessed 0 insns\n"
    c = classify(rec(prog_type="struct_ops", log=log), {}, INV_61, NAMES)
    assert c.reason == "missing_attach_target" and "no sleepable struct_ops programs" in c.message
    # tcp_ca_kfunc on 6.1: bbr_main is a kfunc there too, with the older prototype
    line = "extern (func ksym) 'bbr_main': func_proto [517] incompatible with tcp_bbr [100769]"
    c = classify(so_rec(errno=22, message=line, libbpf_log=line), {}, INV_61, NAMES)
    assert (c.reason, c.message) == (
        "missing_kfunc",
        "kfunc bbr_main has another prototype on this kernel (tcp_bbr) than the object declares "
        "(libbpf fails the whole object)",
    )


def test_struct_ops_program_no_map_uses():
    c = classify(so_rec(message="libbpf did not load this program (a struct_ops program no struct_ops map uses)",
                        facts=[fact("struct_ops_unused", referenced=False)]), {}, INV_61, NAMES)  # fmt: skip
    assert c.reason == "object_error" and "no struct_ops map of the object uses this struct_ops program" in c.message
    line = """SEC("struct_ops") program isn't referenced anywhere, did you forget to use it?"""
    c = classify(so_rec(errno=22, message=line), {}, INV_61, NAMES)
    assert c.reason == "object_error" and "fails the whole object unless the loader turns it off" in c.message


def test_inventory_features_from_probe():
    inv = Inventory.from_probe({"features": {"struct_ops_link": False, "junk": True}})
    assert inv.features == {"struct_ops_link": False} and inv.to_json()["features"] == {"struct_ops_link": False}
    assert Inventory.from_probe({"features": {"struct_ops_link": "yes"}}).features == {}
    assert Inventory.from_probe({"features": ["struct_ops_link"]}).features == {}


def test_an_freplace_program_needs_its_target_program_from_its_loader():
    log = ("prog 'f': attach program FD is not set\nprog 'f': failed to prepare load attributes: -22\n"
           "prog 'f': failed to load: -22")  # fmt: skip
    c = classify(rec(program="f", prog_type="ext", stage="prepare", libbpf_log=log), {}, INV_510, NAMES)
    assert c.reason == "object_error" and "bpf_program__set_attach_target" in c.message


def test_instructions_of_a_newer_instruction_set_are_named_with_the_kernel_they_need():
    atomic = classify(rec(prog_type="xdp", log="0: (db) r1 = atomic64_fetch_add(...)\nBPF_STX uses reserved fields\n"),
                      {}, INV_510, NAMES)  # fmt: skip
    assert atomic.reason == "unsupported_instruction"
    assert "Linux 5.12" in atomic.message and "-mcpu=v3" in atomic.message
    memsx = classify(rec(prog_type="xdp", log="BPF_LDX uses reserved fields\nprocessed 3 insns"), {}, INV_510, NAMES)
    assert memsx.reason == "unsupported_instruction" and "Linux 6.6" in memsx.message and "-mcpu=v4" in memsx.message
    # A kfunc call on a kernel without kfunc calls stays a kfunc problem.
    call = classify(rec(prog_type="xdp", kfuncs=["bpf_x"], log="BPF_CALL uses reserved fields"), {}, INV_510, NAMES)
    assert call.reason == "missing_kfunc"


def test_a_section_without_a_target_and_a_missing_kernel_symbol_are_named():
    log = "prog 'f': no BTF-based attach target is specified, use bpf_program__set_attach_target()"
    c = classify(rec(program="f", prog_type="tracing", stage="prepare", libbpf_log=log), {}, INV_510, NAMES)
    assert c.reason == "object_error" and "names no attach target" in c.message
    obj = {"externs": [{"name": "bpf_fentry_test1", "kind": "ksym", "weak": False}]}
    log = "extern 'bpf_fentry_test1' (strong): not resolved\nfailed to load object 'x.o'"
    c = classify(rec(stage="prepare", libbpf_log=log), obj, INV_510, NAMES)
    assert (c.reason, c.message) == (
        "missing_attach_target",
        "kernel symbol bpf_fentry_test1 (a __ksym extern of the object) does not exist on this kernel: libbpf fails "
        "the whole object",
    )
