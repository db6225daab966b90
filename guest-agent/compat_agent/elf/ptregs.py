"""Which architecture's ``struct pt_regs`` an object was built against, from its own BTF.

A kprobe program reads its arguments from ``struct pt_regs``, whose layout is the
architecture's: x86-64 has di, si, dx, cx, r8, ip, ax…, arm64 has regs[31], pc, pstate (and
user_regs). libbpf's bpf_tracing.h picks the fields by ``__TARGET_ARCH_x86`` /
``__TARGET_ARCH_arm64`` at compile time, so an object built for one architecture and run on the
other either reads other registers at fixed offsets (no CO-RE: it loads and reads garbage) or
asks CO-RE for fields the kernel's pt_regs does not have (libbpf poisons those reads). Nothing
in the kernel's verdict says so: this reads the object's .BTF (the struct's members) and
.BTF.ext (the CO-RE relocations that name them) and says which architecture it is.

Read by hand, like analysis.py: the host runs it on every object it checks on a kernel of
another architecture than the object's pt_regs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .analysis import BTF_KIND_STRUCT, _btf_types
from .reader import cstr, is_elf64le, section_body, section_headers, section_names

BTF_KIND_UNION = 5
BTF_EXT_MAGIC = 0xEB9F
# Registers one architecture's struct pt_regs names and the other's does not (sp is in both):
# x86's kernel names (vmlinux.h: di, si…) and its uapi names (<asm/ptrace.h>: rdi, rsi…).
X86_ONLY = frozenset({"di", "si", "dx", "cx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
                      "ax", "bx", "bp", "ip", "orig_ax", "flags", "cs", "ss",
                      "rdi", "rsi", "rdx", "rcx", "rax", "rbx", "rbp", "rip", "rsp", "eflags", "orig_rax"})  # fmt: skip
ARM64_ONLY = frozenset({"regs", "pc", "pstate", "orig_x0", "user_regs", "syscallno"})
# compat's architectures (Debian's names) by the pt_regs they have.
PT_REGS_ARCH = {"x86": "amd64", "arm64": "arm64"}
_FIELD_RELO_KINDS = range(6)  # BPF_CORE_FIELD_BYTE_OFFSET … BPF_CORE_FIELD_RSHIFT_U64
BtfTable = list[tuple[int, int, int, int, int]]  # analysis._btf_types: (kind, name_off, vlen, size/type, offset)


@dataclass
class PtRegs:
    """The pt_regs an object was built against: its architecture ("x86" or "arm64"), the
    architecture-only fields its BTF names, and those of them its CO-RE relocations read."""

    arch: str
    fields: list[str] = field(default_factory=list)
    core_fields: list[str] = field(default_factory=list)

    def debian_arch(self) -> str:
        """compat's name (amd64, arm64) of the architecture."""
        return PT_REGS_ARCH[self.arch]

    def words(self, kernel_arch: str) -> str | None:
        """What a cell on a kernel of kernel_arch says of it; None when the architectures agree."""
        if self.debian_arch() == kernel_arch:
            return None
        rebuild = f"rebuild with __TARGET_ARCH_{_target(kernel_arch)}"
        if self.core_fields:
            shown = ", ".join(self.core_fields[:4])
            return (f"built for {self.arch} pt_regs (CO-RE reads of {shown}): on {kernel_arch} those fields "
                    f"do not exist, so libbpf poisons the reads ({rebuild})")  # fmt: skip
        shown = ", ".join(self.fields[:4])
        return f"built for {self.arch} pt_regs ({shown}): on {kernel_arch} it would load and read garbage ({rebuild})"


def _target(arch: str) -> str:
    return "x86" if arch == "amd64" else arch


def _members(types: bytes, strs: bytes, table: BtfTable, type_id: int, depth: int = 0) -> list[tuple[str, int]]:
    """(name, member index) of a struct's members; an anonymous struct or union member's own
    members count as the struct's (arm64's pt_regs keeps regs/sp/pc/pstate in one)."""
    if depth > 4 or not 0 < type_id <= len(table):
        return []
    kind, _, vlen, _, extra = table[type_id - 1]
    if kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION):
        return []
    out = []
    for i in range(vlen):
        name_off, member_type, _ = struct.unpack_from("<III", types, extra + 12 * i)
        if name_off:
            out.append((cstr(strs, name_off), i))
        else:
            out += [(name, i) for name, _ in _members(types, strs, table, member_type, depth + 1)]
    return out


def _core_fields(ext: bytes, strs: bytes, types: bytes, table: BtfTable, roots: set[int]) -> list[str]:
    """The names of the top-level members of pt_regs (types in roots) that CO-RE field relocations
    of .BTF.ext access (their access strings' first member index)."""
    magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", ext, 0)
    if magic != BTF_EXT_MAGIC or hdr_len < 32:
        return []
    core_off, core_len = struct.unpack_from("<II", ext, 24)
    data = ext[hdr_len + core_off : hdr_len + core_off + core_len]
    if len(data) < 4:
        return []
    (rec_size,) = struct.unpack_from("<I", data, 0)
    pos, found = 4, []
    while rec_size >= 16 and pos + 8 <= len(data):
        _sec, count = struct.unpack_from("<II", data, pos)
        pos += 8
        for _ in range(count):
            if pos + 16 > len(data):
                break
            _insn, type_id, access_off, kind = struct.unpack_from("<IIII", data, pos)
            pos += rec_size
            if type_id not in roots or kind not in _FIELD_RELO_KINDS:
                continue
            path = cstr(strs, access_off).split(":")
            if len(path) < 2 or not path[1].isdigit():
                continue
            names = _direct_member_names(types, strs, table, type_id)
            index = int(path[1])
            if index < len(names) and names[index] and names[index] not in found:
                found.append(names[index])
    return found


def _direct_member_names(types: bytes, strs: bytes, table: BtfTable, type_id: int) -> list[str]:
    kind, _, vlen, _, extra = table[type_id - 1]
    if kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION):
        return []
    return [cstr(strs, struct.unpack_from("<I", types, extra + 12 * i)[0]) for i in range(vlen)]


def pt_regs_arch(data: bytes) -> PtRegs | None:
    """The architecture whose struct pt_regs the object's BTF describes (a ``pt_regs`` or
    ``user_pt_regs`` struct, or a CO-RE flavour such as ``pt_regs___x86``), or None: no such
    struct, a struct without architecture-only fields, or an unreadable file."""
    try:
        if not is_elf64le(data):
            return None
        secs = section_headers(data)
        names = section_names(data, secs)
        if ".BTF" not in names:
            return None
        types, strs, table = _btf_types(section_body(data, secs[names.index(".BTF")]))
        roots: set[int] = set()
        fields: set[str] = set()
        for type_id, (kind, name_off, _, _, _) in enumerate(table, 1):
            name = cstr(strs, name_off).split("___", 1)[0]
            if kind in (BTF_KIND_STRUCT, BTF_KIND_UNION) and name in ("pt_regs", "user_pt_regs"):
                roots.add(type_id)
                fields |= {n for n, _ in _members(types, strs, table, type_id)}
        core: list[str] = []
        if roots and ".BTF.ext" in names:
            core = _core_fields(section_body(data, secs[names.index(".BTF.ext")]), strs, types, table, roots)
    except (struct.error, IndexError, ValueError):
        return None  # a damaged object: the check itself says what is wrong with it
    x86, arm64 = sorted(fields & X86_ONLY), sorted(fields & ARM64_ONLY)
    core_x86, core_arm64 = [f for f in core if f in X86_ONLY], [f for f in core if f in ARM64_ONLY]
    # CO-RE reads decide when there are any (an object may carry both flavours of the struct, and
    # CO-RE reads of fields both architectures have, such as sp, are relocated right on either).
    if core_x86 or core_arm64:
        return PtRegs("x86", x86, core_x86) if len(core_x86) >= len(core_arm64) else PtRegs("arm64", arm64, core_arm64)
    if core:
        return None
    if x86 and not arm64:
        return PtRegs("x86", x86)
    if arm64 and not x86:
        return PtRegs("arm64", arm64)
    return None
