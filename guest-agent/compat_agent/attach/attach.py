"""Attach checks: attach each accepted program where it would run, then detach it at once.

A program is attached and detached before the next one is attached: two XDP programs cannot
share an interface, and an attached program (an LSM hook that denies, a cgroup filter that
drops) must not disturb the agent longer than the check needs. Kprobes and tracepoints are the
exception: they only observe, and under emulation arming and disarming a function costs tens of
ms each time (text patching), so an object's kprobes and tracepoints stay attached until its
last program has been tried (150 kprobes on one function: 2.1 s instead of 2.9 s on 6.1).
Where libbpf can attach from the section name alone (kprobes, tracepoints, fentry, LSM...)
bpf_program__attach does it; other types get a target made for them in the guest: a child
cgroup of the cgroup2 root, a dummy interface (made with pyroute2 once per guest), the agent's
network namespace, a sockmap, a software sampling event. Types that
need something the guest cannot offer are recorded as not attempted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket

from compat_agent.bpf import libbpf as lb
from compat_agent.bpf import modules
from compat_agent.elf.sections import ATTACH_TIME_TYPES, OPTION

from . import archhints, perfevent

CGROUP_ROOT = "/sys/fs/cgroup"
IFNAME = "compat0"
ENOENT, EOPNOTSUPP, EINVAL, ENOTSUPP, EEXIST = 2, 95, 22, 524, 17
SO_ATTACH_BPF, SO_DETACH_BPF = 50, 27
NFPROTO_IPV4, NF_INET_LOCAL_IN = 2, 1
SK_SKB_STREAM_VERDICT = 5

UPROBE_SECTIONS = ("uprobe", "uretprobe", "uprobe.s", "uretprobe.s", "usdt", "uprobe.multi", "uretprobe.multi")
# Program types that only observe, whose links an object's attach checks keep until the end.
HELD_TYPES = {"kprobe", "tracepoint", "raw_tracepoint"}
# Program types libbpf attaches from the section name alone.
AUTO_ATTACH = {"kprobe", "tracepoint", "raw_tracepoint", "raw_tracepoint_writable", "tracing", "lsm"}
CGROUP_TYPES = {
    "cgroup_skb",
    "cgroup_sock",
    "cgroup_sock_addr",
    "cgroup_sockopt",
    "cgroup_sysctl",
    "cgroup_device",
    "sock_ops",
}
# Program types the agent does not attach, and why.
NOT_ATTACHED = {
    "sched_act": "tc action programs run from a tc filter's action; not attached",
    "lwt_in": "lightweight tunnel programs attach to a route; not attached",
    "lwt_out": "lightweight tunnel programs attach to a route; not attached",
    "lwt_xmit": "lightweight tunnel programs attach to a route; not attached",
    "lwt_seg6local": "seg6local programs attach to a route; not attached",
    "lirc_mode2": "lirc programs attach to an infrared device the guest does not have",
    "sk_reuseport": "sk_reuseport programs attach to a SO_REUSEPORT socket group; not attached",
    "syscall": "syscall programs are run with BPF_PROG_RUN, not attached",
    "ext": "freplace programs need the target program they replace",
    "struct_ops": "struct_ops programs are attached through their struct_ops map",
}


def ok(reason: str) -> dict:
    """An attach record for a program attached (and detached again)."""
    return {"status": "ok", "errno": None, "reason": reason}


def failed(errno: int, reason: str) -> dict:
    """An attach record for a program the kernel or libbpf would not attach."""
    return {"status": "failed", "errno": errno, "reason": reason}


def not_attempted(reason: str) -> dict:
    """An attach record for a program the agent did not try to attach."""
    return {"status": "not_attempted", "errno": None, "reason": reason}


class Unavailable(Exception):
    """The guest cannot offer what an attach needs (not the program's fault)."""


# The dummy interface XDP and tc programs are attached to: made on first use in this guest and
# kept for the next objects (~20 ms of netlink under emulation each time; every check leaves it as
# it found it: links destroyed, tc filters and clsact qdisc removed). (ifindex, name)
_interface: tuple[int, str] | None = None


class Targets:
    """Attach targets made on first use in the guest (the cgroup removed by close(); the dummy
    interface kept for the next objects)."""

    def __init__(self) -> None:
        self._ifindex: int | None = None
        self.ifname = ""
        self._cgroup_fd: int | None = None
        self._cgroup_path = ""
        self._netns_fd: int | None = None
        self._held: list[lb.Link] = []

    def hold(self, link: lb.Link) -> None:
        """Keep a link until close() (an observing program: see the module's docstring)."""
        self._held.append(link)

    def interface(self) -> int:
        """ifindex of a dummy interface (the loopback one if the kernel cannot make dummies)."""
        global _interface
        if self._ifindex is not None:
            return self._ifindex
        if _interface is not None:
            with contextlib.suppress(OSError):
                if socket.if_nametoindex(_interface[1]) == _interface[0]:
                    self._ifindex, self.ifname = _interface
                    return self._ifindex
        try:
            self._ifindex = make_dummy(IFNAME)
            self.ifname = IFNAME
        except Exception as e:  # pyroute2 raises NetlinkError (an OSError) and its own errors
            # EEXIST: made by an earlier check; else no dummy driver (a module the guest lacks).
            exists = EEXIST in (getattr(e, "code", None), getattr(e, "errno", None))
            self.ifname = IFNAME if exists else "lo"
            try:
                self._ifindex = socket.if_nametoindex(self.ifname)
                set_up(self._ifindex)
            except Exception as err:
                why = getattr(err, "strerror", None) or err
                raise Unavailable(f"no usable network interface {self.ifname} in the guest: {why}") from None
        _interface = (self._ifindex, self.ifname)
        return self._ifindex

    def describe(self) -> str:
        """The interface in words, saying so when it is the loopback fallback."""
        if self.ifname == "lo":
            return "lo (the guest kernel cannot make a dummy interface: dummy module not loaded)"
        return f"dummy interface {self.ifname}"

    def cgroup(self) -> int:
        """fd of a child cgroup of the cgroup2 root."""
        if self._cgroup_fd is None:
            path = f"{CGROUP_ROOT}/compat-check-{os.getpid()}"
            try:
                os.makedirs(path, exist_ok=True)
                self._cgroup_path = path
                self._cgroup_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as e:
                raise Unavailable(f"no cgroup2 hierarchy at {CGROUP_ROOT}: {e.strerror}") from None
        return self._cgroup_fd

    def netns(self) -> int:
        """fd of the agent's network namespace."""
        if self._netns_fd is None:
            self._netns_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        return self._netns_fd

    def close(self) -> None:
        """Detach the links held, remove the cgroup made, close the fds."""
        for link in self._held:
            with contextlib.suppress(Exception):
                link.destroy()
        self._held.clear()
        for fd in (self._cgroup_fd, self._netns_fd):
            if fd is not None:
                os.close(fd)
        if self._cgroup_path:
            with contextlib.suppress(OSError):
                os.rmdir(self._cgroup_path)


def _iproute():
    # Imported on first use: pyroute2 takes ~1 s to import under emulation, and only XDP and tc
    # attach checks need netlink.
    from pyroute2 import IPRoute

    return IPRoute()


def make_dummy(name: str) -> int:
    """ip link add NAME type dummy && ip link set NAME up; returns its ifindex."""
    modules.load("dummy")
    with _iproute() as ipr:
        ipr.link("add", ifname=name, kind="dummy")
        index = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=index, state="up")
    return index


def set_up(index: int) -> None:
    """ip link set dev INDEX up."""
    with _iproute() as ipr:
        ipr.link("set", index=index, state="up")


def _link_then_detach(call: str, *args) -> None:
    lb.attach_call(call, *args).destroy()


def _attach_tc(prog: lb.Program, state, targets: Targets) -> dict:
    ifindex = targets.interface()
    egress = "egress" in state.section
    where = f"{'egress' if egress else 'ingress'} of {targets.describe()}"
    tcx_first = state.eat in (lb.ATTACH_TYPE["tcx_ingress"], lb.ATTACH_TYPE["tcx_egress"])
    if tcx_first:
        try:
            _link_then_detach("bpf_program__attach_tcx", prog.ptr, ifindex, None)
            return ok(f"attached with tcx at {where}")
        except lb.LibbpfError:
            pass  # kernels before 6.6 have no tcx: try a cls_bpf filter
    modules.load("sch_ingress", "cls_bpf")  # clsact and cls_bpf: tc before tcx (Linux < 6.6)
    hook = lb.tc_hook(ifindex, lb.BPF_TC_EGRESS if egress else lb.BPF_TC_INGRESS)
    try:
        opts = lb.tc_attach(hook, prog.fd)
    except lb.LibbpfError as e:
        if e.errno not in (ENOENT, EOPNOTSUPP):
            return failed(e.errno, f"cls_bpf attach at {where}: {e.message}")
        if not tcx_first:
            # A legacy "tc" program: libbpf's attach_tcx would use its expected_attach_type (none), so
            # make the tcx link directly (Linux >= 6.6).
            attach_type = lb.ATTACH_TYPE["tcx_egress" if egress else "tcx_ingress"]
            fd = lb.lib().bpf_link_create(prog.fd, ifindex, attach_type, None)
            if fd >= 0:
                os.close(fd)
                return ok(f"attached with tcx at {where} (no clsact/cls_bpf in the guest)")
        return not_attempted(
            "neither tcx nor a clsact qdisc with cls_bpf is available in the guest "
            f"(modules sch_ingress, cls_bpf not loaded): {e.message}"
        )
    lb.tc_detach(hook, opts)
    return ok(f"attached as a cls_bpf filter at {where}")


def _attach_sockmap(prog: lb.Program, state) -> dict:
    attach_type = state.eat or SK_SKB_STREAM_VERDICT
    map_fd = lb.map_create(lb.BPF_MAP_TYPE_SOCKMAP, 4, 4, 1)
    try:
        ret = lb.lib().bpf_prog_attach(prog.fd, map_fd, attach_type, 0)
        if ret < 0:
            return failed(-ret, f"attach to a sockmap: {lb.errno_text(-ret)}")
        lb.lib().bpf_prog_detach2(prog.fd, map_fd, attach_type)
        return ok("attached to a sockmap")
    finally:
        os.close(map_fd)


def _attach_socket(prog: lb.Program) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, prog.fd)
        except OSError as e:
            return failed(e.errno or 0, f"SO_ATTACH_BPF on a UDP socket: {e.strerror}")
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
    return ok("attached to a UDP socket with SO_ATTACH_BPF")


def _auto(prog: lb.Program, state, targets: Targets) -> dict:
    target, prefix = state.attach_target, state.section.split("/")[0]
    hold = state.type_name in HELD_TYPES and ".multi" not in prefix
    if prefix in UPROBE_SECTIONS:
        path = (target or "").split(":")[0]
        if not path or not os.path.exists(path):
            return not_attempted("uprobe/usdt target binary is not in the guest" if path else "no uprobe target")
    try:
        if state.target_from == OPTION and state.type_name in ATTACH_TIME_TYPES:
            link = _attach_to(prog, state)  # --attach-target: the section's target is a placeholder
        else:
            link = lb.attach_call("bpf_program__attach", prog.ptr)
        if hold:
            targets.hold(link)
        else:
            link.destroy()
    except lb.LibbpfError as e:
        if e.errno == EOPNOTSUPP and not any("failed" in m for m in e.messages):
            return not_attempted(f"section '{state.section}' does not say where to attach")
        why = archhints.hint(state.type_name, state.section, target, e.errno)
        return failed(e.errno, f"{e.message}: {why}" if why else e.message)
    return ok(f"attached to {target}" if target else "attached")


def _attach_to(prog: lb.Program, state) -> lb.Link:
    """Attach a kprobe, uprobe (BINARY:FUNCTION), USDT probe (BINARY:PROVIDER:NAME) or tracepoint
    to the target --attach-target names (libbpf's own attach reads the target from the section)."""
    target, prefix = state.attach_target, state.section.split("/")[0]
    if prefix == "usdt":  # BINARY:PROVIDER:NAME
        binary, provider, name = [*target.rsplit(":", 2), "", ""][:3]
        args = (-1, binary.encode(), provider.encode(), name.encode(), None)
        return lb.attach_call("bpf_program__attach_usdt", prog.ptr, *args)
    if prefix in UPROBE_SECTIONS:  # BINARY:FUNCTION (its existence in the guest checked by the caller)
        path, _, function = target.rpartition(":")
        binary = path.encode()
        if ".multi" in prefix:
            return lb.attach_call("bpf_program__attach_uprobe_multi", prog.ptr, -1, binary, function.encode(), None)
        name = ctypes.c_char_p(function.encode())
        opts = lb.UprobeOpts(sz=ctypes.sizeof(lb.UprobeOpts), retprobe=prefix.startswith("uretprobe"), func_name=name)
        return lb.attach_call("bpf_program__attach_uprobe_opts", prog.ptr, -1, binary, 0, ctypes.byref(opts))
    if state.type_name == "tracepoint":
        category, _, name = target.partition("/")
        return lb.attach_call("bpf_program__attach_tracepoint", prog.ptr, category.encode(), name.encode())
    if state.type_name != "kprobe":
        return lb.attach_call("bpf_program__attach_raw_tracepoint", prog.ptr, target.encode())
    if ".multi" in prefix:
        return lb.attach_call("bpf_program__attach_kprobe_multi_opts", prog.ptr, target.encode(), None)
    retprobe = prefix.startswith(("kretprobe", "kretsyscall"))
    return lb.attach_call("bpf_program__attach_kprobe", prog.ptr, retprobe, target.encode())


SECURITYFS = "/sys/kernel/security"


def active_lsms() -> list[str]:
    """The kernel's active LSMs (securityfs is mounted on first use: the guest's init does not)."""
    path = f"{SECURITYFS}/lsm"
    if not os.path.exists(path):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
        libc.mount(b"securityfs", SECURITYFS.encode(), b"securityfs", 0, None)
    try:
        with open(path) as f:
            return f.read().strip().split(",")
    except OSError:
        return ["bpf"]  # cannot tell: say nothing


def attach_one(prog: lb.Program, state, targets: Targets) -> dict:
    """Attach one loaded program and detach it again; the attach record."""
    kind = state.type_name
    if kind in NOT_ATTACHED:
        return not_attempted(NOT_ATTACHED[kind])
    try:
        if kind == "lsm" and state.eat == lb.ATTACH_TYPE["lsm_cgroup"]:
            _link_then_detach("bpf_program__attach_cgroup", prog.ptr, targets.cgroup())
            return ok("attached to a child cgroup")
        if kind in AUTO_ATTACH:
            record = _auto(prog, state, targets)
            if kind == "lsm" and record["status"] == "ok" and "bpf" not in active_lsms():
                record["reason"] += "; but the BPF LSM is not active on this kernel (lsm= list): its hooks never run"
            return record
        if kind in CGROUP_TYPES:
            _link_then_detach("bpf_program__attach_cgroup", prog.ptr, targets.cgroup())
            return ok("attached to a child cgroup")
        if kind == "xdp":
            if state.eat in (lb.ATTACH_TYPE["xdp_devmap"], lb.ATTACH_TYPE["xdp_cpumap"]):
                return not_attempted("devmap/cpumap XDP programs run from a map entry; not attached")
            ifindex = targets.interface()
            _link_then_detach("bpf_program__attach_xdp", prog.ptr, ifindex)
            return ok(f"attached to {targets.describe()} (generic XDP)")
        if kind == "sched_cls":
            return _attach_tc(prog, state, targets)
        if kind in ("flow_dissector", "sk_lookup"):
            _link_then_detach("bpf_program__attach_netns", prog.ptr, targets.netns())
            return ok("attached to the network namespace")
        if kind == "netfilter":
            opts = lb.NetfilterOpts(
                sz=ctypes.sizeof(lb.NetfilterOpts), pf=NFPROTO_IPV4, hooknum=NF_INET_LOCAL_IN, priority=100
            )
            _link_then_detach("bpf_program__attach_netfilter", prog.ptr, ctypes.byref(opts))
            return ok("attached to netfilter ipv4 LOCAL_IN")
        if kind in ("sk_skb", "sk_msg"):
            return _attach_sockmap(prog, state)
        if kind == "socket_filter":
            return _attach_socket(prog)
        if kind == "perf_event":
            return _attach_sampling(prog)
    except Unavailable as e:
        return not_attempted(str(e))
    except lb.LibbpfError as e:
        return failed(e.errno, e.message)
    return not_attempted(f"the agent does not attach {kind} programs")


SAMPLING = "attached to a software cpu-clock sampling event"


def _sampling_event() -> int:
    try:
        return perfevent.sampling_event()
    except OSError as e:
        raise Unavailable(f"no software perf event in the guest (perf_event_open: {e.strerror})") from None


def _attach_sampling(prog: lb.Program) -> dict:
    """A perf_event program on a software sampling event, as a profiler attaches it."""
    event = _sampling_event()
    try:
        link = lb.attach_call("bpf_program__attach_perf_event", prog.ptr, event)
    except lb.LibbpfError:
        os.close(event)  # else the link owns it: destroying the link closes it
        raise
    link.destroy()
    return ok(SAMPLING)


def attach_all(obj: lb.Object, states: list) -> None:
    """Attach-check every accepted program of a loaded object; sets each state's attach record."""
    progs = {p.name: p for p in obj.programs()}
    targets = Targets()
    try:
        for state in states:
            prog = progs.get(state.name)
            if prog is None or prog.fd < 0:
                state.attach = not_attempted("the program is not loaded")
                continue
            try:
                state.attach = attach_one(prog, state, targets)
            except Exception as e:  # an attach check must never cost the verdicts
                state.attach = failed(0, f"agent error while attaching: {type(e).__name__}: {e}")
        struct_ops = [s for s in states if s.type_name == "struct_ops"]
        if struct_ops:
            record = attach_struct_ops(obj)
            for state in struct_ops:
                state.attach = record
    finally:
        targets.close()


class FdProgram:
    """A loaded program known only by its fd (compat's legacy-map loader): what the attach
    functions above read of an lb.Program when they need no libbpf bpf_program."""

    def __init__(self, fd: int):
        self.fd = fd


def attach_fd(fd: int, state, targets: Targets) -> dict:
    """Attach a program loaded without libbpf's bpf_program (by fd, as loaders of its era did:
    perf events for kprobes, tracepoints and samplers, bpf_prog_attach for cgroups, a link for
    XDP) and detach it again; the attach record."""
    kind, target = state.type_name, state.attach_target
    prog = FdProgram(fd)
    try:
        if state.section.split("/")[0] in UPROBE_SECTIONS:
            return not_attempted("a uprobe attaches to a function of a binary its loader names; not attached")
        if kind == "kprobe" and target:
            retprobe = state.section.startswith("kretprobe/")
            function = target.split("+")[0]
            where = f"{'kretprobe' if retprobe else 'kprobe'} '{function}'"
            try:
                perfevent.attach_and_detach(perfevent.kprobe_event(function, retprobe), fd)
            except OSError as e:
                return failed(e.errno or 0, f"failed to create {where} perf event: {e.strerror}")
            return ok(f"attached to {function}")
        if kind == "tracepoint" and target and "/" in target:
            category, name = target.split("/", 1)
            try:
                perfevent.attach_and_detach(perfevent.tracepoint_event(category, name), fd)
            except OSError as e:
                return failed(e.errno or 0, f"tracepoint {target}: {e.strerror}")
            return ok(f"attached to {target}")
        if kind in ("raw_tracepoint", "raw_tracepoint_writable") and target:
            link = lb.lib().bpf_raw_tracepoint_open(target.encode(), fd)
            if link < 0:
                return failed(-link, f"raw tracepoint {target}: {lb.errno_text(-link)}")
            os.close(link)
            return ok(f"attached to {target}")
        if kind in CGROUP_TYPES:
            cgroup = targets.cgroup()
            ret = lb.lib().bpf_prog_attach(fd, cgroup, state.eat, 0)
            if ret < 0:
                return failed(-ret, f"attach to a child cgroup: {lb.errno_text(-ret)}")
            lb.lib().bpf_prog_detach2(fd, cgroup, state.eat)
            return ok("attached to a child cgroup")
        if kind == "xdp":
            ifindex = targets.interface()
            link = lb.lib().bpf_link_create(fd, ifindex, lb.ATTACH_TYPE["xdp"], None)
            if link < 0:
                return failed(-link, f"XDP link on {targets.describe()}: {lb.errno_text(-link)}")
            os.close(link)
            return ok(f"attached to {targets.describe()} (generic XDP)")
        if kind == "sched_cls":
            return _attach_tc(prog, state, targets)
        if kind in ("sk_skb", "sk_msg"):
            return _attach_sockmap(prog, state)
        if kind == "socket_filter":
            return _attach_socket(prog)
        if kind == "perf_event":
            perfevent.attach_and_detach(_sampling_event(), fd)
            return ok(SAMPLING)
    except Unavailable as e:
        return not_attempted(str(e))
    except OSError as e:
        return failed(e.errno or 0, f"perf event: {e.strerror}")
    if kind in NOT_ATTACHED:
        return not_attempted(NOT_ATTACHED[kind])
    return not_attempted(f"the agent does not attach {kind} programs loaded without libbpf")


def attach_struct_ops(obj: lb.Object) -> dict:
    """Register every struct_ops map of the object (then unregister): one record for its programs."""
    names = []
    for m in obj.maps():
        # Not created (left out by the check, or SEC("?.struct_ops")): libbpf gave it a placeholder fd.
        if lb.map_type_str(m.map_type) != "struct_ops" or m.fd < 0 or not m.autocreate:
            continue
        try:
            _link_then_detach("bpf_map__attach_struct_ops", m.ptr)
        except lb.LibbpfError as e:
            return failed(e.errno, f"struct_ops map '{m.name}': {e.message}")
        names.append(m.name)
    if not names:
        return not_attempted("no struct_ops map was created")
    return ok("registered struct_ops map " + ", ".join(f"'{n}'" for n in names))
