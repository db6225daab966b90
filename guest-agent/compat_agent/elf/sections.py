"""The program type to load a program as, when its section does not say it.

libbpf reads a program's type from its section name. A section it does not know (SEC("encap_gre"),
a project's own naming) leaves the type to the loader (bpf_program__set_type), and so does
freplace, whose type is that of the BPF program it replaces. Two ways to still get a verdict:

- the user names the type (--program-type GLOB=SECTION): a libbpf section name such as "tc",
  "xdp", "lwt_xmit" or "cgroup/connect4", for the programs whose name or section the glob
  matches; it applies to any program, so a project can also check a program as another type;
- else, for a program of no type or an freplace program, the type its context argument
  suggests, as veristat guesses it: struct __sk_buff is the most ambiguous (socket filter,
  tc, cgroup, lwt, sk_skb all take it) and is taken as tc, unless the program calls a helper
  only cgroup_skb, sk_skb or lwt programs may (the same guess on every kernel).

Either way the result says where the type came from, so a verdict under a guess is never
mistaken for one under the type the loader uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

SECTION, CONTEXT, OPTION = "section", "context", "option"

# Context type (UAPI or kernel-side name) -> the libbpf section of the type it suggests, after
# veristat's guess_prog_type_by_ctx_name (the attach type is the first of a few possible).
CONTEXT_SECTIONS = {
    "__sk_buff": "tc",
    "sk_buff": "tc",
    "xdp_md": "xdp",
    "xdp_buff": "xdp",
    "bpf_sock": "cgroup/post_bind4",
    "sock": "cgroup/post_bind4",
    "bpf_sock_addr": "cgroup/bind4",
    "bpf_sock_addr_kern": "cgroup/bind4",
    "bpf_sock_ops": "sockops",
    "bpf_sock_ops_kern": "sockops",
    "sk_msg_md": "sk_msg",
    "sk_msg": "sk_msg",
    "bpf_cgroup_dev_ctx": "cgroup/dev",
    "bpf_sysctl": "cgroup/sysctl",
    "bpf_sysctl_kern": "cgroup/sysctl",
    "bpf_sockopt": "cgroup/setsockopt",
    "bpf_sockopt_kern": "cgroup/setsockopt",
    "sk_reuseport_md": "sk_reuseport/migrate",
    "sk_reuseport_kern": "sk_reuseport/migrate",
    "bpf_sk_lookup": "sk_lookup",
    "bpf_sk_lookup_kern": "sk_lookup",
    "bpf_user_pt_regs_t": "kprobe",
    "pt_regs": "kprobe",
    "bpf_perf_event_data": "perf_event",
    "bpf_perf_event_data_kern": "perf_event",
    "bpf_raw_tracepoint_args": "raw_tp",
    "bpf_nf_ctx": "netfilter",
}

# Helpers that tell an __sk_buff program's type: only those types may call them.
SK_BUFF_HELPERS = {
    81: "cgroup_skb/ingress",  # bpf_get_local_storage
    128: "cgroup_skb/ingress",  # bpf_sk_cgroup_id
    129: "cgroup_skb/ingress",  # bpf_sk_ancestor_cgroup_id
    52: "sk_skb",  # bpf_sk_redirect_map
    72: "sk_skb",  # bpf_sk_redirect_hash
    73: "lwt_xmit",  # bpf_lwt_push_encap (lwt_in too)
    74: "lwt_seg6local",  # bpf_lwt_seg6_store_bytes
    75: "lwt_seg6local",  # bpf_lwt_seg6_adjust_srh
    76: "lwt_seg6local",  # bpf_lwt_seg6_action
}

# --attach-target: the program types whose attach target libbpf resolves in the kernel's BTF when
# it loads them (bpf_program__set_attach_target), and those that name it only when they attach.
BTF_TARGET_TYPES = ("tracing", "lsm")
ATTACH_TIME_TYPES = ("kprobe", "raw_tracepoint", "raw_tracepoint_writable", "tracepoint")

# The program types whose section cannot tell the type to load as.
UNTYPED = ("unspec", "ext")


@dataclass(frozen=True)
class TypeChoice:
    """The section to load a program as instead of its own, and why."""

    section: str  # a libbpf section name ("tc")
    source: str  # CONTEXT or OPTION
    context: str | None = None  # the context type behind a guess

    def note(self, program_section: str, type_name: str) -> str:
        """The line each result of the program carries about it."""
        if self.source == OPTION:
            return f"program loaded as {type_name} (section '{self.section}', --program-type)"
        return (
            f"section '{program_section}' does not give the program type its loader uses: loaded as {type_name}, "
            f"guessed from its context argument (struct {self.context} *) and the helpers it calls; "
            "--program-type sets the type"
        )


def parse_rules(value: object) -> list[tuple[str, str]]:
    """A request's rules ([[glob, value], ...]: program_types, attach_targets) as pairs; anything
    else: none."""
    if not isinstance(value, list):
        return []
    return [
        (str(r[0]), str(r[1]))
        for r in value
        if isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(x, str) and x for x in r)
    ]


def first_match(name: str, section: str, rules: list[tuple[str, str]]) -> str | None:
    """The value of the first rule whose glob matches a program's name or section, if any."""
    return next((value for glob, value in rules if fnmatchcase(name, glob) or fnmatchcase(section, glob)), None)


def choose(
    name: str,
    section: str,
    type_name: str,
    context: list[str] | None,
    rules: list[tuple[str, str]],
    helpers: list[int] | None = None,
) -> TypeChoice | None:
    """The type to load a program as (None: as its section says): the first rule whose glob
    matches its name or section, else a guess from its context (and, for __sk_buff, the helpers
    it calls) when its section gives none."""
    wanted = first_match(name, section, rules)
    if wanted:
        return TypeChoice(wanted, OPTION)
    if type_name in UNTYPED:
        for ctx in context or []:
            if ctx in CONTEXT_SECTIONS:
                told = [SK_BUFF_HELPERS[h] for h in helpers or [] if h in SK_BUFF_HELPERS]
                wanted = told[0] if told and CONTEXT_SECTIONS[ctx] == "tc" else CONTEXT_SECTIONS[ctx]
                return TypeChoice(wanted, CONTEXT, ctx)
    return None


# Section prefixes whose remainder names what the program attaches to.
_TARGET_PREFIXES = (
    "kprobe/", "kretprobe/", "kprobe.multi/", "kretprobe.multi/", "kprobe.session/", "ksyscall/", "kretsyscall/",
    "uprobe/", "uretprobe/", "uprobe.s/", "uretprobe.s/", "uprobe.multi/", "uretprobe.multi/", "usdt/",
    "tp/", "tracepoint/", "raw_tp/", "raw_tracepoint/", "raw_tp.w/", "raw_tracepoint.w/", "tp_btf/",
    "fentry/", "fexit/", "fmod_ret/", "fentry.s/", "fexit.s/", "fmod_ret.s/", "freplace/",
    "lsm/", "lsm.s/", "lsm_cgroup/", "iter/", "iter.s/", "struct_ops/", "struct_ops.s/",
)  # fmt: skip


_TARGET_RE = re.compile("(?:" + "|".join(map(re.escape, _TARGET_PREFIXES)) + ")(.+)", re.S)


def attach_target(section: str) -> str | None:
    """What a section name says the program attaches to (kprobe function, fentry target, ...)."""
    m = _TARGET_RE.match(section)
    return m.group(1) if m else None
