"""The guest side of `compat probe`: what this kernel offers BPF programs.

Program and map types come from libbpf's probes. Helpers are probed per program type with a
tiny program that calls the helper and then fails on purpose (it reads a register never set),
so no probe is ever JIT-compiled: the verifier's verdict on the call is all that counts
("unknown func"/"invalid func" means absent). Tracing and LSM programs, which libbpf's helper
probe refuses, are probed as fentry/LSM programs on a function every kernel has.

kfuncs: on kernels whose BTF carries "bpf_kfunc" declaration tags (pahole >= 1.27, Linux
6.10 or so on), kfuncs_btf lists every tagged function of vmlinux and the loaded modules.
Older kernels record kfunc sets only in the kernel image (.BTF_ids), which the guest cannot
read: there kfuncs_btf lists only those requested names that exist as BTF functions (a
probe load decides whether they really are kfuncs). kfuncs_source says which it was.
kfunc_allowed is a probe load per program type for each requested kfunc. struct_ops programs
are loaded only against a struct_ops type and one of its members: the probe uses TCP congestion
control's (tcp_congestion_ops.cong_avoid, in every kernel with struct_ops) and calls the result
"struct_ops:tcp_congestion_ops", since newer kernels filter some kfuncs by struct_ops type
(sched_ext's); the other types it cannot load generically (ext, unspec) are left out: "not probed".

struct_ops maps are probed by hand (see struct_ops_map): libbpf 1.5's probe passes a field that
kernels before 6.9 refuse, and calls the map type unsupported there. "features" holds what the
classifier needs beyond types, helpers and kfuncs (struct_ops_link: BPF_F_LINK struct_ops maps).
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
import time
from dataclasses import dataclass

from compat_agent.bpf import kernelbtf
from compat_agent.bpf import libbpf as lb

BTF_DIR = "/sys/kernel/btf"
KFUNC_TAG = b"bpf_kfunc"
# fentry/LSM targets present in every kernel with BPF (net/bpf/test_run.c, the BPF LSM).
TRACING_TARGETS = ("bpf_fentry_test1", "bpf_modify_return_test", "vfs_read")
LSM_TARGETS = ("bpf_lsm_file_open", "bpf_lsm_bpf")
# Program types whose probe needs a target the probe cannot make.
UNPROBED = {"struct_ops", "ext", "unspec"}
# The struct_ops type and member the kfunc probe loads struct_ops programs against.
STRUCT_OPS_PROBE = ("tcp_congestion_ops", "cong_avoid")
BTF_KIND_STRUCT = 4
BPF_F_LINK = 1 << 13  # a struct_ops map attached as a bpf_link: SEC(".struct_ops.link")
ENOTSUPP = 524  # the kernel-internal errno bpf() returns for an unknown struct_ops value type

# After the call: r0 = r9, a read of a register never written (the verifier always rejects it;
# uninitialised stack would not do: root may read it on newer kernels), then exit.
_FAIL_AFTER = lb.insn(0xBF, dst=0, src=9) + lb.insn(0x95)
# How kernels say a helper is absent for a program type (the wording changed in 6.x).
_ABSENT_RE = re.compile(rb"invalid func |unknown func |program of this type cannot use helper ")
_KFUNC_REFUSED_RE = re.compile(
    rb"is not allowed|not supported|unknown opcode|invalid kernel function|is not a function|"
    rb"JIT does not support|reserved fields|invalid func |unknown func |cannot use helper "
)


def call(helper: int) -> bytes:
    """A BPF_CALL of a helper."""
    return lb.insn(0x85, imm=helper)


def kfunc_call(btf_id: int, fd_index: int = 0) -> bytes:
    """A BPF_CALL of a kfunc (src_reg BPF_PSEUDO_KFUNC_CALL; off indexes fd_array for module BTF)."""
    return lb.insn(0x85, src=2, off=fd_index, imm=btf_id)


def struct_ops_map(map_type: int, flags: int = 0) -> bool:
    """Whether the kernel creates struct_ops maps (with these map flags).

    A real one needs the BTF id of a struct_ops value type; id 1 never is one, so a kernel that
    takes the map type and the flags gets as far as looking it up and says ENOTSUPP, while one
    that refuses either says EINVAL (as libbpf's and bpftool's probes reason).
    """
    opts = lb.MapCreateOpts(sz=ctypes.sizeof(lb.MapCreateOpts), btf_vmlinux_value_type_id=1, map_flags=flags)
    with lb.capture():
        fd = lb.lib().bpf_map_create(map_type, None, 4, 4, 1, ctypes.addressof(opts))
    if fd >= 0:
        os.close(fd)
    return fd == -ENOTSUPP


@dataclass
class LoadSpec:
    """How to load a probe program of one program type."""

    name: str
    prog_type: int
    expected_attach_type: int = 0
    attach_btf_id: int = 0
    prog_flags: int = 0

    def load(self, loader: lb.ProbeLoader, insns: bytes, fd_array: ctypes.Array | None = None) -> bytes:
        """The verifier log of a probe program; never leaves a program loaded."""
        fd, log = loader.load(
            self.prog_type, insns, self.expected_attach_type, self.attach_btf_id, self.prog_flags, fd_array
        )
        if fd >= 0:
            os.close(fd)
        return log


def load_specs(btf: lb.Btf, supported: dict[str, bool], loader: lb.ProbeLoader) -> dict[str, LoadSpec]:
    """A working LoadSpec for every supported program type the probe can load."""
    extra: dict[str, dict] = {
        "cgroup_sock_addr": {"expected_attach_type": lb.ATTACH_TYPE["cgroup_inet4_connect"]},
        "cgroup_sockopt": {"expected_attach_type": lb.ATTACH_TYPE["cgroup_getsockopt"]},
        "sk_lookup": {"expected_attach_type": lb.ATTACH_TYPE["sk_lookup"]},
        "lirc_mode2": {"expected_attach_type": lb.ATTACH_TYPE["lirc_mode2"]},
        "netfilter": {"expected_attach_type": lb.ATTACH_TYPE["netfilter"]},
        "syscall": {"prog_flags": lb.BPF_F_SLEEPABLE},
    }
    for name, targets, attach in (
        ("tracing", TRACING_TARGETS, "trace_fentry"),
        ("lsm", LSM_TARGETS, "lsm_mac"),
    ):
        target = next((t for t in (btf.find(n, lb.BTF_KIND_FUNC) for n in targets) if t), None)
        if target:
            extra[name] = {"expected_attach_type": lb.ATTACH_TYPE[attach], "attach_btf_id": target}
        else:
            extra[name] = {"unusable": True}
    specs = {}
    for prog_type in range(1, 256):
        name = lb.prog_type_str(prog_type)
        if name is None:
            break
        if not supported.get(name) or name in UNPROBED or extra.get(name, {}).get("unusable"):
            continue
        spec = LoadSpec(name, prog_type, **extra.get(name, {}))
        # Control: an absent helper must be reported as such, else this spec cannot tell.
        if _ABSENT_RE.search(spec.load(loader, call(0) + _FAIL_AFTER)):
            specs[name] = spec
    return specs


def struct_ops_spec(btf: lb.Btf, supported: dict[str, bool], loader: lb.ProbeLoader) -> dict[str, LoadSpec]:
    """{"struct_ops:tcp_congestion_ops": LoadSpec} when the kernel loads struct_ops programs for
    TCP congestion control (its probe passes the same control as load_specs'), else {}."""
    type_name, member = STRUCT_OPS_PROBE
    prog_type = next((i for i in range(1, 256) if lb.prog_type_str(i) == "struct_ops"), None)
    type_id = btf.find(type_name, BTF_KIND_STRUCT)
    if not supported.get("struct_ops") or prog_type is None or type_id is None:
        return {}
    _, _, vlen, _ = btf.type_header(type_id)
    members = struct.iter_unpack("<III", btf.type_bytes(type_id, 12 * vlen)[12:])
    index = next((i for i, (name_off, _, _) in enumerate(members) if btf.string(name_off) == member), None)
    if index is None:
        return {}
    spec = LoadSpec(f"struct_ops:{type_name}", prog_type, expected_attach_type=index, attach_btf_id=type_id)
    return {spec.name: spec} if _ABSENT_RE.search(spec.load(loader, call(0) + _FAIL_AFTER)) else {}


def helper_ids(btf: lb.Btf) -> dict[int, str]:
    """{id: "bpf_map_lookup_elem", ...} from the kernel's enum bpf_func_id."""
    out = {}
    for name, value in btf.enum_values("bpf_func_id").items():
        if name.startswith("BPF_FUNC_") and value > 0:
            out[value] = "bpf_" + name.removeprefix("BPF_FUNC_")
    return out


def decl_tagged(raw: bytes, base_strings: int = 0, base_tag_off: int | None = None) -> list[int]:
    """Type ids a "bpf_kfunc" declaration tag points to, found by scanning the raw BTF.

    Walking a 5 MB vmlinux BTF type by type in Python is too slow under emulation; a decl tag
    is a fixed 16-byte record (name_off, info=DECL_TAG<<24, type, component_idx=-1), so a byte
    search for its first 8 bytes, checked for alignment and the -1, finds them all at C speed.
    """
    if len(raw) < 24:
        return []
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", raw, 4)
    types = raw[hdr_len + type_off : hdr_len + type_off + type_len]
    strs = raw[hdr_len + str_off : hdr_len + str_off + str_len]
    offsets = []
    own = strs.find(b"\0" + KFUNC_TAG + b"\0")
    if own >= 0:
        offsets.append(base_strings + own + 1)
    if base_tag_off is not None:
        offsets.append(base_tag_off)
    found = []
    for name_off in offsets:
        pattern = struct.pack("<II", name_off, lb.BTF_KIND_DECL_TAG << 24)
        pos = types.find(pattern)
        while pos >= 0:
            if pos % 4 == 0 and types[pos + 12 : pos + 16] == b"\xff\xff\xff\xff":
                found.append(struct.unpack_from("<I", types, pos + 8)[0])
            pos = types.find(pattern, pos + 4)
    return found


def _tag_offset(btf: lb.Btf) -> tuple[int, int | None]:
    """(length of the string section, offset of "bpf_kfunc" in it or None) of a base BTF."""
    raw = btf.raw()
    hdr_len, _type_off, _type_len, str_off, str_len = struct.unpack_from("<IIIII", raw, 4)
    strs = raw[hdr_len + str_off : hdr_len + str_off + str_len]
    own = strs.find(b"\0" + KFUNC_TAG + b"\0")
    return str_len, (own + 1 if own >= 0 else None)


def module_btfs(base: lb.Btf) -> list[lb.Btf]:
    """Split BTF of every loaded module that has one (5.10 has none)."""
    out = []
    try:
        names = sorted(os.listdir(BTF_DIR))
    except OSError:
        return out
    for name in names:
        if name == "vmlinux":
            continue
        try:
            out.append(lb.Btf.split(f"{BTF_DIR}/{name}", base))
        except lb.LibbpfError:
            continue
    return out


def kfunc_inventory(vmlinux: lb.Btf, modules: list[lb.Btf]) -> dict[str, str]:
    """{kfunc name: BTF it lives in ("vmlinux" or a module)} from bpf_kfunc declaration tags."""
    out: dict[str, str] = {}
    base_strings, base_tag = _tag_offset(vmlinux)
    for btf in (vmlinux, *modules):
        ids = decl_tagged(btf.raw()) if btf is vmlinux else decl_tagged(btf.raw(), base_strings, base_tag)
        for type_id in ids:
            try:
                name_off, kind, _, _ = btf.type_header(type_id)
            except lb.LibbpfError:
                continue
            if kind == lb.BTF_KIND_FUNC:
                out.setdefault(btf.string(name_off), btf.name)
    return out


def locate_kfunc(name: str, vmlinux: lb.Btf, modules: list[lb.Btf]) -> tuple[str, int] | None:
    """(BTF name, type id) of a function, searching vmlinux then the modules."""
    type_id = vmlinux.find(name, lb.BTF_KIND_FUNC)
    if type_id:
        return "vmlinux", type_id
    for mod in modules:
        type_id = mod.find(name, lb.BTF_KIND_FUNC)
        if type_id and type_id >= mod.start_id:
            return mod.name, type_id
    return None


def probe(message: dict) -> dict:
    """Answer a probe request: the kernel's program/map types, helpers and kfuncs.

    Optional request field "parts": ["kfuncs"] skips the helper sweep ("helpers" is then {}).
    """
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def lap(key: str, since: float) -> float:
        now = time.monotonic()
        timings[key] = round((now - since) * 1000, 1)
        return now

    prog_types: dict[str, bool] = {}
    for i in range(1, 256):
        name = lb.prog_type_str(i)
        if name is None:
            break
        prog_types[name] = lb.probe_prog_type(i)
    map_types: dict[str, bool] = {}
    features: dict[str, bool] = {}
    for i in range(1, 256):
        name = lb.map_type_str(i)
        if name is None:
            break
        if name == "struct_ops":
            map_types[name] = struct_ops_map(i)
            features["struct_ops_link"] = struct_ops_map(i, BPF_F_LINK)
        else:
            map_types[name] = lb.probe_map_type(i)
    t = lap("types_ms", t0)

    vmlinux = kernelbtf.vmlinux()
    modules = module_btfs(vmlinux)
    try:
        names = helper_ids(vmlinux)
        loader = lb.ProbeLoader()
        specs = load_specs(vmlinux, prog_types, loader)
        t = lap("btf_ms", t)
        helpers: dict[str, list[int]] = {}
        probes = 0
        absent = _ABSENT_RE.search
        # A probe that only wants kfunc verdicts (the host asks again once it knows which kfuncs
        # its objects use) can skip the helper sweep, the bulk of the probe's time.
        sweep = "helpers" in (message.get("parts") or ["helpers", "kfuncs"])
        for type_name, spec in specs.items() if sweep else ():
            available = []
            for helper in names:
                probes += 1
                if not absent(spec.load(loader, call(helper) + _FAIL_AFTER)):
                    available.append(helper)
            helpers[type_name] = available
        t = lap("helpers_ms", t)

        tagged = kfunc_inventory(vmlinux, modules)
        requested = list(dict.fromkeys(str(k) for k in message.get("kfuncs") or []))
        located = {k: locate_kfunc(k, vmlinux, modules) for k in requested}
        if tagged:
            source = "decl_tag"
            kfuncs_btf = sorted(tagged)
        else:
            source = "requested"
            kfuncs_btf = sorted(k for k, where in located.items() if where)
        kfunc_specs = {**specs, **struct_ops_spec(vmlinux, prog_types, loader)} if requested else specs
        kfunc_allowed = probe_kfuncs(located, kfunc_specs, loader)
        lap("kfuncs_ms", t)
    finally:
        for btf in modules:
            btf.free()
        vmlinux.free()
    return {
        "type": "probe_result",
        "id": message.get("id"),
        "duration_ms": round((time.monotonic() - t0) * 1000, 3),
        "prog_types": prog_types,
        "map_types": map_types,
        "features": features,
        "helpers": helpers,
        "helper_names": {str(k): v for k, v in sorted(names.items())},
        "kfuncs_btf": kfuncs_btf,
        "kfuncs_source": source,
        "kfunc_allowed": kfunc_allowed,
        "timings": {**timings, "helper_probes": probes},
    }


def probe_kfuncs(
    located: dict[str, tuple[str, int] | None], specs: dict[str, LoadSpec], loader: lb.ProbeLoader
) -> dict[str, dict[str, bool]]:
    """{kfunc: {program type: allowed}}: a probe load of a call to it per program type."""
    out: dict[str, dict[str, bool]] = {}
    fds: dict[str, int] | None = None
    try:
        for name, where in located.items():
            if where is None:
                out[name] = dict.fromkeys(specs, False)
                continue
            btf_name, type_id = where
            fd_array = None
            fd_index = 0
            if btf_name != "vmlinux":
                if fds is None:
                    fds = lb.kernel_btf_fds()
                if btf_name not in fds:
                    out[name] = dict.fromkeys(specs, False)
                    continue
                fd_array, fd_index = (ctypes.c_int * 2)(0, fds[btf_name]), 1  # index 0 stands for vmlinux
            insns = kfunc_call(type_id, fd_index) + _FAIL_AFTER
            refused = _KFUNC_REFUSED_RE.search
            out[name] = {t: not refused(spec.load(loader, insns, fd_array)) for t, spec in specs.items()}
    finally:
        for fd in (fds or {}).values():
            os.close(fd)
    return out
