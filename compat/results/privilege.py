"""Privilege modes (compat check --privilege root|caps|unprivileged) as columns of the kernel axis.

A program checked under a privilege other than root is its own column, like another kernel:
its results name the column ``6.1 (caps)`` as their kernel (and ``privilege`` says which mode),
and the run has a KernelInfo of that id for each kernel, so every report, the gate, compare and
--baseline tell a root verdict from an unprivileged one without knowing about privileges. Root
columns keep the kernel's own id: a run without --privilege reads exactly as before.

What the kernel asks of a caller per program and map type (kernel/bpf/syscall.c: bpf_prog_load's
is_net_admin_prog_type / is_perfmon_prog_type, map_create's checks; 6.6 and later; older kernels
check the same capabilities per type) words a ``not_permitted`` fact: the agent says that the
kernel refused with EPERM under a reduced privilege, the host says what the type needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .model import KernelInfo

ROOT, CAPS, UNPRIVILEGED = "root", "caps", "unprivileged"
PRIVILEGES = (ROOT, CAPS, UNPRIVILEGED)
# What each mode holds (the agent keeps uid 0 and only these capabilities for the check).
HOLDS = {
    ROOT: "all capabilities",
    CAPS: "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, without CAP_SYS_ADMIN",
    UNPRIVILEGED: "no capabilities, kernel.unprivileged_bpf_disabled=0",
}
# What the guests of a run with --privilege unprivileged add to their kernel command line (later
# parameters win): the CPU mitigations the kernel picks by default, whose absence makes recent
# verifiers skip the speculation checks of unprivileged programs.
UNPRIVILEGED_CMDLINE = "mitigations=auto"
# Program types only CAP_NET_ADMIN (or CAP_SYS_ADMIN) may load, besides CAP_BPF.
NET_ADMIN_PROG_TYPES = frozenset({
    "sched_cls", "sched_act", "xdp", "lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local", "sk_skb", "sk_msg",
    "flow_dissector", "cgroup_device", "cgroup_sock", "cgroup_sock_addr", "cgroup_sockopt", "cgroup_sysctl",
    "sock_ops", "ext", "netfilter",
})  # fmt: skip
# Program types that need CAP_PERFMON (or CAP_SYS_ADMIN), besides CAP_BPF.
PERFMON_PROG_TYPES = frozenset({
    "kprobe", "tracepoint", "perf_event", "raw_tracepoint", "raw_tracepoint_writable", "tracing", "lsm",
    "struct_ops", "ext",
})  # fmt: skip
# The only program types a caller without CAP_BPF may load.
UNPRIV_PROG_TYPES = frozenset({"socket_filter", "cgroup_skb"})
# Map types a caller without CAP_BPF may create; those that need CAP_NET_ADMIN.
UNPRIV_MAP_TYPES = frozenset({
    "array", "percpu_array", "prog_array", "perf_event_array", "cgroup_array", "array_of_maps", "hash",
    "percpu_hash", "hash_of_maps", "ringbuf", "user_ringbuf", "cgroup_storage", "percpu_cgroup_storage",
})  # fmt: skip
NET_ADMIN_MAP_TYPES = frozenset({"sockmap", "sockhash", "devmap", "devmap_hash", "xskmap"})


def column(kernel_id: str, privilege: str | None) -> str:
    """The id of a kernel's column under a privilege: the kernel's own id for root."""
    return kernel_id if not privilege or privilege == ROOT else f"{kernel_id} ({privilege})"


def columns(info: KernelInfo, privileges: Sequence[str]) -> list[KernelInfo]:
    """The kernel's columns, one per privilege in the given order (root: the kernel itself)."""
    out = []
    for p in privileges or (ROOT,):
        if p == ROOT:
            out.append(info)
        else:
            out.append(replace(info, id=column(info.id, p), label=f"{info.label} ({p})", privilege=p))
    return out


def prog_type_needs(prog_type: str | None) -> str:
    """The capabilities the kernel asks of a caller loading this program type."""
    if prog_type in UNPRIV_PROG_TYPES:
        return "CAP_BPF or kernel.unprivileged_bpf_disabled=0"
    caps = ["CAP_BPF"]
    if prog_type in NET_ADMIN_PROG_TYPES:
        caps.append("CAP_NET_ADMIN")
    if prog_type in PERFMON_PROG_TYPES:
        caps.append("CAP_PERFMON")
    return " and ".join(caps) + " (or CAP_SYS_ADMIN)"


def map_type_needs(map_type: str | None) -> str:
    """The capabilities the kernel asks of a caller creating this map type."""
    if map_type in UNPRIV_MAP_TYPES:
        return "CAP_BPF or kernel.unprivileged_bpf_disabled=0"
    if map_type in NET_ADMIN_MAP_TYPES:
        return "CAP_NET_ADMIN (or CAP_SYS_ADMIN)"
    return "CAP_BPF (or CAP_SYS_ADMIN)"


def not_permitted_words(found: Mapping[str, Any], prog_type: str | None) -> str:
    """A ``not_permitted`` fact in words: what the kernel refused to the privilege, and what it needs."""
    mode = str(found.get("privilege") or "?")
    holds = HOLDS.get(mode, mode)
    # Unprivileged, a type that needs CAP_BPF fails before any attach target matters: the type is said.
    if found.get("module") and (mode != UNPRIVILEGED or prog_type in UNPRIV_PROG_TYPES):
        return (f"attach target {found.get('target')} is in module {found['module']}, whose BTF libbpf cannot look "
                f"up with --privilege {mode} ({holds}): finding a module's BTF (BPF_BTF_GET_NEXT_ID) needs "
                "CAP_SYS_ADMIN")  # fmt: skip
    if found.get("map"):
        kind = found.get("map_type") or "?"
        return (f"map '{found['map']}' ({kind}) cannot be created with --privilege {mode} ({holds}): "
                f"it needs {map_type_needs(found.get('map_type'))}")  # fmt: skip
    return (f"program type {prog_type or '?'} cannot be loaded with --privilege {mode} ({holds}): "
            f"it needs {prog_type_needs(prog_type)}")  # fmt: skip


def axis_kernels(kernels: Sequence[KernelInfo]) -> list[KernelInfo]:
    """The columns the kernel axis runs along (floors, backport regressions): those of one
    privilege, root's when the run has them, else the first privilege's."""
    modes = [k.privilege or ROOT for k in kernels]
    mode = ROOT if ROOT in modes else (modes[0] if modes else ROOT)
    return [k for k, m in zip(kernels, modes, strict=True) if m == mode]


def kernel_count(kernels: Sequence[KernelInfo]) -> str:
    """The run's columns in words: '4 kernel(s)', or '1 kernel(s) × 2 mode(s)' when they are kernels
    under several privileges (a caps column is the same kernel again, not another one)."""
    modes = {k.privilege or ROOT for k in kernels}
    if len(modes) < 2:
        return f"{len(kernels)} kernel(s)"
    suffix = {k.id: f" ({k.privilege})" if k.privilege and k.privilege != ROOT else "" for k in kernels}
    ids = {k.id.removesuffix(suffix[k.id]) if suffix[k.id] else k.id for k in kernels}
    return f"{len(ids)} kernel(s) × {len(modes)} mode(s)"
