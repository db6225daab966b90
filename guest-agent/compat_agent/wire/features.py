"""Kernel features with the upstream release that brought them, as data (as cilium/ebpf keeps them).

Classification messages take "needs Linux X" from here, so a version is written once. Each
entry names the upstream commit (its subject) that brought the feature; the versions are those
compat has always printed, cross-checked against published feature tables (bcc's
docs/kernel-versions.md, which covers the older map types) and the kernel's release notes.
A distribution kernel may backport a feature to an older release or build without it: these
are the upstream minimums, for messages, never a verdict (the kernel's own probes decide).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["kernel", "insn_set", "map_type", "struct_ops", "attach"]


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
