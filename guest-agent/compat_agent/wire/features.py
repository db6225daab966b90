"""Kernel features with the upstream release that brought them, as data (as cilium/ebpf keeps them).

Classification messages take "needs Linux X" from here, so a version is written once. Each
entry names the upstream commit (its subject) that brought the feature; the versions are those
compat has always printed, cross-checked against published feature tables (bcc's
docs/kernel-versions.md, which covers the older map types) and the kernel's release notes.
A distribution kernel may backport a feature to an older release or build without it: these
are the upstream minimums, for messages, never a verdict (the kernel's own probes decide).

Below FEATURES: every helper, program type and map type with its first upstream release
(HELPER_SINCE, PROG_TYPE_SINCE, MAP_TYPE_SINCE; helper_since() and the others look them up),
extracted from bcc's docs/kernel-versions.md with the upstream commit it cites for each; the
requirements view (compat/reports/requirements.py) names them: "needs Linux 5.17 (bpf_loop)".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["kernel", "insn_set", "map_type", "struct_ops", "attach", "helper", "prog_type"]


@dataclass(frozen=True)
class Feature:
    """One feature: its name (a map type's libbpf name, a struct_ops type, or a short word), what
    it is in words, the first upstream release with it, the kernel options it needs, and the
    upstream commit that brought it (its subject)."""

    name: str
    kind: Kind
    what: str
    since: str
    config: tuple[str, ...] = ()
    source: str = ""
    plural: bool = False  # what is plural ("BPF qdiscs need ..."): for the verb of messages

    @property
    def need(self) -> str:
        """The verb for what: "needs", or "need" for a plural."""
        return "need" if self.plural else "needs"


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("kfunc_calls", "kernel", "kfunc calls", "5.13", (),
                "bpf: Support bpf program calling kernel function"),
        Feature("module_btf", "kernel", "module BTF", "5.11", ("CONFIG_DEBUG_INFO_BTF_MODULES",),
                "bpf: Load and verify kernel module BTFs"),
        Feature("atomics_v3", "insn_set",
                "atomic operations other than a plain add (fetch-and-add/and/or/xor, xchg, cmpxchg: clang -mcpu=v3)",
                "5.12", (), "bpf: Add instructions for atomic_[cmp]xchg / atomic_fetch_*", plural=True),
        Feature("cpu_v4", "insn_set",
                "sign-extending loads and moves, byte swaps, signed division and long jumps (clang -mcpu=v4)",
                "6.6", (), "bpf: Support new sign-extension load/mov, bswap, sdiv/smod, gotol insns", plural=True),
        Feature("struct_ops_link", "attach", "struct_ops maps created with BPF_F_LINK (SEC(\".struct_ops.link\"))",
                "6.4", (), "bpf: Create links for BPF struct_ops maps"),
        # Map types (libbpf's names).
        Feature("inode_storage", "map_type", "inode local storage", "5.10", ("CONFIG_BPF_LSM",),
                "bpf: Implement bpf_local_storage for inodes"),
        Feature("ringbuf", "map_type", "BPF ring buffer", "5.8", (),
                "bpf: Implement BPF ring buffer and verifier support for it"),
        Feature("task_storage", "map_type", "task local storage", "5.11", (),
                "bpf: Implement task local storage"),
        Feature("bloom_filter", "map_type", "bloom filter map", "5.16", (),
                "bpf: Add bloom filter map implementation"),
        Feature("user_ringbuf", "map_type", "user ring buffer", "6.1", (),
                "bpf: Define new BPF_MAP_TYPE_USER_RINGBUF map type"),
        Feature("cgrp_storage", "map_type", "cgroup local storage", "6.2", (),
                "bpf: Implement cgroup storage available to non-cgroup-attached bpf progs"),
        Feature("arena", "map_type", "BPF arena", "6.9", (), "bpf: Introduce bpf_arena"),
        # struct_ops types users meet on kernels that lack them.
        Feature("tcp_congestion_ops", "struct_ops", "TCP congestion control in BPF", "5.6", (),
                "bpf: tcp: Support tcp_congestion_ops in bpf"),
        Feature("hid_bpf_ops", "struct_ops", "HID-BPF", "6.11", ("CONFIG_HID_BPF",),
                "HID: bpf: implement HID-BPF through bpf_struct_ops"),
        Feature("sched_ext_ops", "struct_ops", "sched_ext", "6.12", ("CONFIG_SCHED_CLASS_EXT",),
                "sched_ext: Implement BPF extensible scheduler class"),
        Feature("Qdisc_ops", "struct_ops", "BPF qdiscs", "6.16", ("CONFIG_NET_SCH_BPF",),
                "bpf: net_sched: Support implementation of Qdisc_ops in bpf", plural=True),
    )
}  # fmt: skip


def since(name: str) -> str:
    """The first upstream release with a feature, e.g. "5.13" (KeyError for one not listed)."""
    return FEATURES[name].since


def needs(name: str) -> str:
    """A struct_ops type's needs in words: "sched_ext needs Linux 6.12 or later, built with
    CONFIG_SCHED_CLASS_EXT"."""
    f = FEATURES[name]
    built = f", built with {' and '.join(f.config)}" if f.config else ""
    return f"{f.what} {f.need} Linux {f.since} or later{built}"


def struct_ops_types() -> dict[str, str]:
    """The struct_ops types of the table with their needs in words (classify's STRUCT_OPS_TYPES)."""
    return {n: needs(n) for n, f in FEATURES.items() if f.kind == "struct_ops"}


# Helpers, program types and map types with their first upstream release, extracted from bcc's
# table (github.com/iovisor/bcc, docs/kernel-versions.md as of bcc commit 1dcfcec51c89, its last
# change in the snapshot at 6d0a964c2cda): (name, release, the upstream commit bcc cites for it).
# Names are the kernel's without their prefix: BPF_FUNC_loop is "loop" (the probe and classify call
# it "bpf_loop"; helper_since takes either), BPF_PROG_TYPE_SCHED_CLS is "sched_cls" and
# BPF_MAP_TYPE_RINGBUF "ringbuf", libbpf's names (libbpf_bpf_prog_type_str, _map_type_str), which
# results and the probe use. One correction: bcc spells BPF_FUNC_skc_to_mptcp_sock
# "skc_to_mctcp_sock". Older map types only: the map types of FEATURES above (ringbuf, ...,
# arena) are not repeated (MAP_TYPE_SINCE merges both; bcc agrees on each of them).


@dataclass(frozen=True)
class Since:
    """The first upstream release with a helper, program type or map type, and its source: the
    upstream commit id (12 hex digits, as bcc's table cites it) or, for an entry bcc lacks, the
    commit's subject."""

    version: str
    source: str


def _rows(rows: tuple[tuple[str, str, str], ...]) -> dict[str, Since]:
    return {name: Since(version, source) for name, version, source in rows}


HELPERS: dict[str, Since] = _rows((
        ("bind", "4.17", "d74bad4e74ee"), ("bprm_opts_set", "5.11", "3f6719c7b62f"),
        ("btf_find_by_name_kind", "5.14", "3d78417b60fb"), ("cgrp_storage_delete", "6.2", "c4bcfb38a95e"),
        ("cgrp_storage_get", "6.2", "c4bcfb38a95e"), ("check_mtu", "5.12", "34b2021cc616"),
        ("clone_redirect", "4.2", "3896d655f4d4"), ("copy_from_user", "5.10", "07be4c4a3e7a"),
        ("copy_from_user_task", "5.18", "376040e47334"), ("csum_diff", "4.6", "7d672345ed29"),
        ("csum_level", "5.7", "7cdec54f9713"), ("csum_update", "4.9", "36bbef52c7eb"),
        ("current_task_under_cgroup", "4.9", "60d20f9195b2"), ("d_path", "5.10", "6e22ab9da793"),
        ("dynptr_data", "5.19", "34d4ef5775f7"), ("dynptr_from_mem", "5.19", "263ae152e962"),
        ("dynptr_read", "5.19", "13bbbfbea759"), ("dynptr_write", "5.19", "13bbbfbea759"),
        ("fib_lookup", "4.18", "87f5fc7e48dd"), ("find_vma", "5.17", "7c7e3d31e785"),
        ("for_each_map_elem", "5.13", "69c087ba6225"), ("get_attach_cookie", "5.15", "7adfc6c9b315"),
        ("get_branch_snapshot", "5.16", "856c02dbce4f"), ("get_cgroup_classid", "4.3", "8d20aabe1c76"),
        ("get_current_ancestor_cgroup_id", "5.6", "b4490c5c4e02"), ("get_current_cgroup_id", "4.18", "bf6fa2c893c5"),
        ("get_current_comm", "4.2", "ffeedafbf023"), ("get_current_pid_tgid", "4.2", "ffeedafbf023"),
        ("get_current_task", "4.8", "606274c5abd8"), ("get_current_task_btf", "5.11", "3ca1032ab7ab"),
        ("get_current_uid_gid", "4.2", "ffeedafbf023"), ("get_func_arg", "5.17", "f92c1e183604"),
        ("get_func_arg_cnt", "5.17", "f92c1e183604"), ("get_func_ip", "5.15", "5d8b583d04ae"),
        ("get_func_ret", "5.17", "f92c1e183604"), ("get_hash_recalc", "4.8", "13c5c240f789"),
        ("get_listener_sock", "5.1", "dbafd7ddd623"), ("get_local_storage", "4.19", "cd3394317653"),
        ("get_netns_cookie", "5.7", "f318903c0bf4"), ("get_ns_current_pid_tgid", "5.7", "b4490c5c4e02"),
        ("get_numa_node_id", "4.10", "2d0e30c30f84"), ("get_prandom_u32", "4.1", "03e69b508b6f"),
        ("get_retval", "5.18", "b44123b4a3dc"), ("get_route_realm", "4.4", "c46646d0484f"),
        ("get_smp_processor_id", "4.1", "c04167ce2ca0"), ("get_socket_cookie", "4.12", "91b8270f2a4d"),
        ("get_socket_uid", "4.12", "6acc5c291068"), ("get_stack", "4.18", "de2ff05f48af"),
        ("get_stackid", "4.6", "d5a3b1f69186"), ("get_task_stack", "5.9", "fa28dcb82a38"),
        ("getsockopt", "4.15", "cd86d1fd2102"), ("ima_file_hash", "5.18", "174b16946e39"),
        ("ima_inode_hash", "5.11", "27672f0d280a"), ("inode_storage_delete", "5.10", "8ea636848aca"),
        ("inode_storage_get", "5.10", "8ea636848aca"), ("jiffies64", "5.5", "5576b991e9c1"),
        ("kallsyms_lookup_name", "5.16", "d6aef08a872b"), ("kptr_xchg", "5.19", "c0a5a21c25f3"),
        ("ktime_get_boot_ns", "5.8", "71d19214776e"), ("ktime_get_coarse_ns", "5.11", "d05512618056"),
        ("ktime_get_ns", "4.1", "d9847d310ab4"), ("ktime_get_tai_ns", "6.1", "c8996c98f703"),
        ("l3_csum_replace", "4.1", "91bc4822c3d6"), ("l4_csum_replace", "4.1", "91bc4822c3d6"),
        ("load_hdr_opt", "5.10", "0813a841566f"), ("loop", "5.17", "e6f2dd0f8067"),
        ("lwt_push_encap", "4.18", "fe94cc290f53"), ("lwt_seg6_action", "4.18", "fe94cc290f53"),
        ("lwt_seg6_adjust_srh", "4.18", "fe94cc290f53"), ("lwt_seg6_store_bytes", "4.18", "fe94cc290f53"),
        ("map_delete_elem", "3.19", "d0003ec01c66"), ("map_lookup_elem", "3.19", "d0003ec01c66"),
        ("map_lookup_percpu_elem", "5.19", "07343110b293"), ("map_peek_elem", "4.20", "f1a2e44a3aec"),
        ("map_pop_elem", "4.20", "f1a2e44a3aec"), ("map_push_elem", "4.20", "f1a2e44a3aec"),
        ("map_update_elem", "3.19", "d0003ec01c66"), ("msg_apply_bytes", "4.17", "2a100317c9eb"),
        ("msg_cork_bytes", "4.17", "91843d540a13"), ("msg_pop_data", "5.0", "7246d8ed4dcc"),
        ("msg_pull_data", "4.17", "015632bb30da"), ("msg_push_data", "4.20", "6fff607e2f14"),
        ("msg_redirect_hash", "4.18", "81110384441a"), ("msg_redirect_map", "4.17", "4f738adba30a"),
        ("override_return", "4.16", "9802d86585db"), ("per_cpu_ptr", "5.10", "eaa6bcb71ef6"),
        ("perf_event_output", "4.4", "a43eec304259"), ("perf_event_read", "4.3", "35578d798400"),
        ("perf_event_read_value", "4.15", "908432ca84fc"), ("perf_prog_read_value", "4.15", "4bebdc7a85aa"),
        ("probe_read", "4.1", "2541517c32be"), ("probe_read_kernel", "5.5", "6ae08ae3dea2"),
        ("probe_read_kernel_str", "5.5", "6ae08ae3dea2"), ("probe_read_str", "4.11", "a5e8c07059d0"),
        ("probe_read_user", "5.5", "6ae08ae3dea2"), ("probe_read_user_str", "5.5", "6ae08ae3dea2"),
        ("probe_write_user", "4.8", "96ae52279594"), ("rc_keydown", "4.18", "f4364dcfc86d"),
        ("rc_pointer_rel", "5.0", "01d3240a04f4"), ("rc_repeat", "4.18", "f4364dcfc86d"),
        ("read_branch_records", "5.6", "fff7b64355ea"), ("redirect", "4.4", "27b29f63058d"),
        ("redirect_map", "4.14", "97f91a7cf04f"), ("redirect_neigh", "5.10", "b4ab31414970"),
        ("redirect_peer", "5.10", "9aa1206e8f48"), ("reserve_hdr_opt", "5.10", "0813a841566f"),
        ("ringbuf_discard", "5.8", "457f44363a88"), ("ringbuf_discard_dynptr", "5.19", "bc34dee65a65"),
        ("ringbuf_output", "5.8", "457f44363a88"), ("ringbuf_query", "5.8", "457f44363a88"),
        ("ringbuf_reserve", "5.8", "457f44363a88"), ("ringbuf_reserve_dynptr", "5.19", "bc34dee65a65"),
        ("ringbuf_submit", "5.8", "457f44363a88"), ("ringbuf_submit_dynptr", "5.19", "bc34dee65a65"),
        ("send_signal", "5.3", "8b401f9ed244"), ("send_signal_thread", "5.5", "8482941f0906"),
        ("seq_printf", "5.7", "492e639f0c22"), ("seq_printf_btf", "5.10", "eb411377aed9"),
        ("seq_write", "5.7", "492e639f0c22"), ("set_hash", "4.13", "ded092cd73c2"),
        ("set_hash_invalid", "4.9", "7a4b28c6cc9f"), ("set_retval", "5.18", "b44123b4a3dc"),
        ("setsockopt", "4.13", "8c4b4c7e9ff0"), ("sk_ancestor_cgroup_id", "5.7", "f307fa2cb4c9"),
        ("sk_assign", "5.6", "cf7fbe660f2d"), ("sk_cgroup_id", "5.7", "f307fa2cb4c9"),
        ("sk_fullsock", "5.1", "46f8bc92758c"), ("sk_lookup_tcp", "4.20", "6acc9b432e67"),
        ("sk_lookup_udp", "4.20", "6acc9b432e67"), ("sk_redirect_hash", "4.18", "81110384441a"),
        ("sk_redirect_map", "4.14", "174a79ff9515"), ("sk_release", "4.20", "6acc9b432e67"),
        ("sk_select_reuseport", "4.19", "2dbb9b9e6df6"), ("sk_storage_delete", "5.2", "6ac99e8f23d4"),
        ("sk_storage_get", "5.2", "6ac99e8f23d4"), ("skb_adjust_room", "4.13", "2be7e212d541"),
        ("skb_ancestor_cgroup_id", "4.19", "7723628101aa"), ("skb_cgroup_classid", "5.10", "b426ce83baa7"),
        ("skb_cgroup_id", "4.18", "cb20b08ead40"), ("skb_change_head", "4.10", "3a0af8fd61f9"),
        ("skb_change_proto", "4.8", "6578171a7ff0"), ("skb_change_tail", "4.9", "5293efe62df8"),
        ("skb_change_type", "4.8", "d2485c4242a8"), ("skb_ecn_set_ce", "5.1", "f7c917ba11a6"),
        ("skb_get_tunnel_key", "4.3", "d3aa45ce6b94"), ("skb_get_tunnel_opt", "4.6", "14ca0751c96f"),
        ("skb_get_xfrm_state", "4.18", "12bed760a78d"), ("skb_load_bytes", "4.5", "05c74e5e53f6"),
        ("skb_load_bytes_relative", "4.18", "4e1ec56cdc59"), ("skb_output", "5.5", "a7658e1a4164"),
        ("skb_pull_data", "4.9", "36bbef52c7eb"), ("skb_set_tstamp", "5.18", "9bb984f28d5b"),
        ("skb_set_tunnel_key", "4.3", "d3aa45ce6b94"), ("skb_set_tunnel_opt", "4.6", "14ca0751c96f"),
        ("skb_store_bytes", "4.1", "91bc4822c3d6"), ("skb_under_cgroup", "4.8", "4a482f34afcc"),
        ("skb_vlan_pop", "4.3", "4e10df9a60d9"), ("skb_vlan_push", "4.3", "4e10df9a60d9"),
        ("skc_lookup_tcp", "5.2", "edbf8c01de5a"), ("skc_to_mptcp_sock", "5.19", "3bc253c2e652"),
        ("skc_to_tcp6_sock", "5.9", "af7ec1383361"), ("skc_to_tcp_request_sock", "5.9", "478cfbdf5f13"),
        ("skc_to_tcp_sock", "5.9", "478cfbdf5f13"), ("skc_to_tcp_timewait_sock", "5.9", "478cfbdf5f13"),
        ("skc_to_udp6_sock", "5.9", "0d4fad3e57df"), ("skc_to_unix_sock", "5.16", "9eeb3aa33ae0"),
        ("snprintf", "5.13", "7b15523a989b"), ("snprintf_btf", "5.10", "c4d0bfb45068"),
        ("sock_from_file", "5.11", "4f19cab76136"), ("sock_hash_update", "4.18", "81110384441a"),
        ("sock_map_update", "4.14", "174a79ff9515"), ("sock_ops_cb_flags_set", "4.16", "b13d88072172"),
        ("spin_lock", "5.1", "d83525ca62cf"), ("spin_unlock", "5.1", "d83525ca62cf"),
        ("store_hdr_opt", "5.10", "0813a841566f"), ("strncmp", "5.17", "c5fb19937455"),
        ("strtol", "5.2", "d7a4cb9b6705"), ("strtoul", "5.2", "d7a4cb9b6705"),
        ("sys_bpf", "5.14", "79a7f8bdb159"), ("sys_close", "5.14", "3abea089246f"),
        ("sysctl_get_current_value", "5.2", "1d11b3016cec"), ("sysctl_get_name", "5.2", "808649fb787d"),
        ("sysctl_get_new_value", "5.2", "4e63acdff864"), ("sysctl_set_new_value", "5.2", "4e63acdff864"),
        ("tail_call", "4.2", "04fd61ab36ec"), ("task_pt_regs", "5.15", "dd6e10fbd9f"),
        ("task_storage_delete", "5.11", "4cf1bc1f1045"), ("task_storage_get", "5.11", "4cf1bc1f1045"),
        ("tcp_check_syncookie", "5.2", "399040847084"), ("tcp_gen_syncookie", "5.3", "70d66244317e"),
        ("tcp_raw_check_syncookie_ipv4", "6.0", "33bf9885040c"),
        ("tcp_raw_check_syncookie_ipv6", "6.0", "33bf9885040c"),
        ("tcp_raw_gen_syncookie_ipv4", "6.0", "33bf9885040c"), ("tcp_raw_gen_syncookie_ipv6", "6.0", "33bf9885040c"),
        ("tcp_send_ack", "5.5", "206057fe020a"), ("tcp_sock", "5.1", "655a51e536c0"),
        ("this_cpu_ptr", "5.10", "63d9b80dcf2c"), ("timer_cancel", "5.15", "b00628b1c7d5"),
        ("timer_init", "5.15", "b00628b1c7d5"), ("timer_set_callback", "5.15", "b00628b1c7d5"),
        ("timer_start", "5.15", "b00628b1c7d5"), ("trace_printk", "4.1", "9c959c863f82"),
        ("trace_vprintk", "5.16", "10aceb629e19"), ("user_ringbuf_drain", "6.1", "205715673844"),
        ("xdp_adjust_head", "4.10", "17bedab27231"), ("xdp_adjust_meta", "4.15", "de8f3a83b0a0"),
        ("xdp_adjust_tail", "4.18", "b32cc5b9a346"), ("xdp_get_buff_len", "5.18", "0165cc817075"),
        ("xdp_load_bytes", "5.18", "3f364222d032"), ("xdp_output", "5.6", "d831ee84bfc9"),
        ("xdp_store_bytes", "5.18", "3f364222d032"),
))  # fmt: skip

PROG_TYPES: dict[str, Since] = _rows((
        ("cgroup_device", "4.15", "ebc614f68736"), ("cgroup_skb", "4.10", "0e33661de493"),
        ("cgroup_sock", "4.10", "610236587600"), ("cgroup_sock_addr", "4.17", "4fbac77d2d09"),
        ("cgroup_sockopt", "5.3", "0d01da6afc54"), ("cgroup_sysctl", "5.2", "7b146cebe30c"),
        ("ext", "5.6", "be8704ff07d2"), ("flow_dissector", "4.20", "d58e468b1112"),
        ("kprobe", "4.1", "2541517c32be"), ("lirc_mode2", "4.18", "f4364dcfc86d"),
        ("lsm", "5.7", "fc611f47f218"), ("lwt_in", "4.10", "3a0af8fd61f9"),
        ("lwt_out", "4.10", "3a0af8fd61f9"), ("lwt_seg6local", "4.18", "004d4b274e2a"),
        ("lwt_xmit", "4.10", "3a0af8fd61f9"), ("perf_event", "4.9", "0515e5999a46"),
        ("raw_tracepoint", "4.17", "c4f6699dfcb8"), ("raw_tracepoint_writable", "5.2", "9df1c28bb752"),
        ("sched_act", "4.1", "94caee8c312d"), ("sched_cls", "4.1", "96be4325f443"),
        ("sk_lookup", "5.9", "e9ddbb7707ff"), ("sk_msg", "4.17", "4f738adba30a"),
        ("sk_reuseport", "4.19", "2dbb9b9e6df6"), ("sk_skb", "4.14", "b005fd189cec"),
        ("sock_ops", "4.13", "40304b2a1567"), ("socket_filter", "3.19", "ddd872bc3098"),
        ("struct_ops", "5.6", "27ae7997a661"), ("syscall", "5.15", "79a7f8bdb159"),
        ("tracepoint", "4.7", "98b5c2c65c29"), ("tracing", "5.5", "f1b9509c2fb0"),
        ("xdp", "4.8", "6a773a15a1e8"),
        # Not in bcc's table.
        ("netfilter", "6.4", "bpf: minimal support for programs hooked into netfilter framework"),
))  # fmt: skip

_MAP_TYPES: dict[str, Since] = _rows((
        ("array", "3.19", "28fbcfa08d8e"), ("array_of_maps", "4.12", "56f668dfe00d"),
        ("cgroup_array", "4.8", "4ed8ec521ed5"), ("cgroup_storage", "4.19", "de9cbbaadba5"),
        ("cpumap", "4.15", "6710e1126934"), ("devmap", "4.14", "546ac1ffb70d"),
        ("devmap_hash", "5.4", "6f9d451ab1a3"), ("hash", "3.19", "0f8e4bd8a1fc"),
        ("hash_of_maps", "4.12", "bcc6b1b7ebf8"), ("lpm_trie", "4.11", "b95a5c4db09b"),
        ("lru_hash", "4.10", "29ba732acbee"), ("lru_percpu_hash", "4.10", "8f8449384ec3"),
        ("percpu_array", "4.6", "a10423b87a7e"), ("percpu_cgroup_storage", "4.20", "b741f1630346"),
        ("percpu_hash", "4.6", "824bd0ce6c7c"), ("perf_event_array", "4.3", "ea317b267e9d"),
        ("prog_array", "4.2", "04fd61ab36ec"), ("queue", "4.20", "f1a2e44a3aec"),
        ("reuseport_sockarray", "4.19", "5dc4c4b7d4e8"), ("sk_storage", "5.2", "6ac99e8f23d4"),
        ("sockhash", "4.18", "81110384441a"), ("sockmap", "4.14", "174a79ff9515"),
        ("stack", "4.20", "f1a2e44a3aec"), ("stack_trace", "4.6", "d5a3b1f69186"),
        ("struct_ops", "5.6", "85d33df357b6"), ("xskmap", "4.18", "fbfc504a24f5"),
))  # fmt: skip
MAP_TYPES: dict[str, Since] = {
    **_MAP_TYPES,
    **{f.name: Since(f.since, f.source) for f in FEATURES.values() if f.kind == "map_type"},
}

HELPER_SINCE: dict[str, str] = {n: s.version for n, s in HELPERS.items()}
PROG_TYPE_SINCE: dict[str, str] = {n: s.version for n, s in PROG_TYPES.items()}
MAP_TYPE_SINCE: dict[str, str] = {n: s.version for n, s in MAP_TYPES.items()}


def helper_key(name: str) -> str:
    """A helper's name as the table keys it: "bpf_loop", "BPF_FUNC_loop" and "loop" are "loop"."""
    for prefix in ("BPF_FUNC_", "bpf_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def helper_since(name: str) -> str | None:
    """The first upstream release with a helper, by name ("bpf_loop" or "loop"): "5.17"; None for
    a name the table does not know. Helper ids are named by the probe's helper_names."""
    return HELPER_SINCE.get(helper_key(name))


def prog_type_since(name: str) -> str | None:
    """The first upstream release with a program type, by libbpf's name ("syscall": "5.15")."""
    return PROG_TYPE_SINCE.get(name)


def map_type_since(name: str) -> str | None:
    """The first upstream release with a map type, by libbpf's name ("ringbuf": "5.8")."""
    return MAP_TYPE_SINCE.get(name)


def requirement(kind: Kind, name: str) -> Feature | None:
    """A helper, program type or map type as a Feature ("needs Linux 5.17 (bpf_loop)"), for views
    that name what an older kernel lacks; a map type of FEATURES keeps its words there. None for a
    name the tables do not know."""
    if kind == "helper":
        key = helper_key(name)
        s = HELPERS.get(key)
        return Feature(f"bpf_{key}", kind, f"bpf_{key}", s.version, source=s.source) if s else None
    if kind == "prog_type":
        s = PROG_TYPES.get(name)
        return Feature(name, kind, f"{name} programs", s.version, source=s.source, plural=True) if s else None
    if kind == "map_type":
        known = FEATURES.get(name)
        if known is not None and known.kind == "map_type":
            return known
        s = MAP_TYPES.get(name)
        return Feature(name, kind, f"{name} maps", s.version, source=s.source, plural=True) if s else None
    return FEATURES.get(name)


# BPF_PROG_LOAD's program flags, as include/uapi/linux/bpf.h defines them (checked against
# linux-source-6.12's): a kernel that does not know one refuses the load with EINVAL.
PROG_FLAGS: dict[str, int] = {
    "BPF_F_STRICT_ALIGNMENT": 1 << 0,
    "BPF_F_ANY_ALIGNMENT": 1 << 1,
    "BPF_F_TEST_RND_HI32": 1 << 2,
    "BPF_F_TEST_STATE_FREQ": 1 << 3,
    "BPF_F_SLEEPABLE": 1 << 4,
    "BPF_F_XDP_HAS_FRAGS": 1 << 5,
    "BPF_F_XDP_DEV_BOUND_ONLY": 1 << 6,  # Linux 6.3
    "BPF_F_TEST_REG_INVARIANTS": 1 << 7,  # Linux 6.8
}
