"""What a BPF object file says about itself, independent of any kernel: its externs (kfuncs,
ksyms, kconfig), the helpers and kfuncs each program reaches (through subprograms and
callbacks: libbpf exposes a program's own instructions before load, not the subprograms it
will append), the programs each struct_ops map uses, each program's context type, and where
each global variable lives (for --set-global).

Read by hand from the ELF file and its .BTF: the host runs it once per object (natively) and
sends the result with the check request; the agent runs it only when the host did not.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .reader import cstr, is_elf64le, section_body, section_headers, section_names

SHT_SYMTAB, SHT_REL = 2, 9
SHF_EXECINSTR = 0x4
STT_OBJECT, STT_FUNC = 1, 2
# The sections of an object's global variables: libbpf makes an array map of each, whose initial
# value its loader may change before load (a skeleton's rodata/data/bss).
DATA_SECTIONS = (".rodata", ".data", ".bss")
STB_WEAK = 2
BPF_CALL = 0x85
BPF_LD_IMM64 = 0x18
BTF_KIND_FUNC, BTF_KIND_VAR, BTF_KIND_DATASEC = 12, 14, 15
BTF_KIND_STRUCT, BTF_KIND_PTR, BTF_KIND_TYPEDEF, BTF_KIND_FUNC_PROTO = 4, 2, 8, 13
_BTF_QUALIFIERS = {9, 10, 11, 18}  # volatile, const, restrict, type tag
_BTF_MODIFIERS = {8, 9, 10, 11, 18}  # typedef, volatile, const, restrict, type tag
STT_SECTION = 3
# The sections libbpf makes struct_ops maps of ("?": not created unless the loader asks).
STRUCT_OPS_SECTIONS = (".struct_ops", ".struct_ops.link", "?.struct_ops", "?.struct_ops.link")
BTF_LINKAGE_EXTERN = 2
# Bytes that follow a BTF type's 12-byte header, by kind, as a function of vlen.
_BTF_EXTRA: dict[int, Callable[[int], int]] = {
    1: lambda v: 4,  # INT
    3: lambda v: 12,  # ARRAY
    4: lambda v: 12 * v,  # STRUCT
    5: lambda v: 12 * v,  # UNION
    6: lambda v: 8 * v,  # ENUM
    13: lambda v: 8 * v,  # FUNC_PROTO
    14: lambda v: 4,  # VAR
    15: lambda v: 12 * v,  # DATASEC
    17: lambda v: 4,  # DECL_TAG
    19: lambda v: 12 * v,  # ENUM64
}


@dataclass
class Sym:
    """One ELF symbol."""

    name: str
    value: int
    size: int
    kind: int
    bind: int
    shndx: int


@dataclass
class ElfInfo:
    """What the object file says about itself, independent of any kernel."""

    externs: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[tuple[str, str], tuple[list[int], list[str]]] = field(default_factory=dict)
    # struct_ops map -> {"type": kernel struct, "link": BPF_F_LINK (.struct_ops.link), "programs": [...]}
    struct_ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    # program -> the names of the type its one argument points to (a typedef's, then its struct's)
    contexts: dict[str, list[str]] = field(default_factory=dict)
    # global variable -> (section, offset, size) (host only: not sent to the guest)
    variables: dict[str, tuple[str, int, int]] = field(default_factory=dict)


def _btf_types(btf: bytes) -> tuple[bytes, bytes, list[tuple[int, int, int, int, int]]]:
    """The type and string sections of an object's .BTF and, per type id from 1, (kind, name_off,
    vlen, size or type, offset of the bytes after its 12-byte header in the type section)."""
    _magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", btf, 0)
    types = btf[hdr_len + type_off : hdr_len + type_off + type_len]
    strs = btf[hdr_len + str_off : hdr_len + str_off + str_len]
    table = []
    pos = 0
    while pos + 12 <= len(types):
        name_off, info, size = struct.unpack_from("<III", types, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        table.append((kind, name_off, vlen, size, pos + 12))
        pos += 12 + (_BTF_EXTRA[kind](vlen) if kind in _BTF_EXTRA else 0)
    return types, strs, table


def _through(table: list[tuple[int, int, int, int, int]], type_id: int, kinds: set[int]) -> int:
    """The type a type id comes to past the kinds given (typedefs, qualifiers), at most 16 deep."""
    for _ in range(16):
        if not 0 < type_id <= len(table) or table[type_id - 1][0] not in kinds:
            break
        type_id = table[type_id - 1][3]
    return type_id


def btf_externs(btf: bytes) -> dict[str, str]:
    """{name: "kfunc"|"ksym"|"kconfig"} for the extern declarations in an object's .BTF."""
    types, strs, table = _btf_types(btf)
    funcs: dict[int, str] = {}
    variables: dict[int, str] = {}
    section_of: dict[int, str] = {}
    for type_id, (kind, name_off, vlen, _, extra) in enumerate(table, 1):
        if kind == BTF_KIND_FUNC and vlen == BTF_LINKAGE_EXTERN:
            funcs[type_id] = cstr(strs, name_off)
        elif kind == BTF_KIND_VAR and struct.unpack_from("<I", types, extra)[0] == BTF_LINKAGE_EXTERN:
            variables[type_id] = cstr(strs, name_off)
        elif kind == BTF_KIND_DATASEC:
            sec = cstr(strs, name_off)
            for i in range(vlen):
                (member,) = struct.unpack_from("<I", types, extra + 12 * i)
                section_of[member] = sec
    out = dict.fromkeys(funcs.values(), "kfunc")
    for tid, name in variables.items():
        out[name] = "kconfig" if section_of.get(tid) == ".kconfig" else "ksym"
    return out


def btf_struct_ops(btf: bytes) -> dict[str, list[tuple[str, str, int, int]]]:
    """{struct_ops section: [(map name, kernel type name, offset, size)]} from an object's .BTF:
    libbpf makes a map of each variable of those sections, of the kernel struct its type names
    (a "___flavor" suffix left out, as libbpf does)."""
    types, strs, table = _btf_types(btf)
    out: dict[str, list[tuple[str, str, int, int]]] = {}
    for kind, name_off, vlen, _, extra in table:
        sec = cstr(strs, name_off)
        if kind != BTF_KIND_DATASEC or sec not in STRUCT_OPS_SECTIONS:
            continue
        for i in range(vlen):
            var, offset, size = struct.unpack_from("<III", types, extra + 12 * i)
            if not 0 < var <= len(table) or table[var - 1][0] != BTF_KIND_VAR:
                continue
            type_id = _through(table, table[var - 1][3], _BTF_MODIFIERS)  # typedefs, qualifiers: the struct
            if 0 < type_id <= len(table) and table[type_id - 1][0] == BTF_KIND_STRUCT:
                tname = cstr(strs, table[type_id - 1][1]).split("___")[0]
                out.setdefault(sec, []).append((cstr(strs, table[var - 1][1]), tname, offset, size))
    return out


def btf_contexts(btf: bytes) -> dict[str, list[str]]:
    """{function: names of the type its argument points to} for the functions of an object's
    .BTF that take one pointer, as a program takes its context: ["__sk_buff"] for
    f(struct __sk_buff *skb), ["bpf_user_pt_regs_t", "pt_regs"] through a typedef. A section
    that names no program type leaves only this to tell it (as veristat guesses it)."""
    types, strs, table = _btf_types(btf)

    out: dict[str, list[str]] = {}
    for kind, name_off, linkage, proto_id, _ in table:
        if kind != BTF_KIND_FUNC or linkage == BTF_LINKAGE_EXTERN or not 0 < proto_id <= len(table):
            continue
        proto_kind, _, nargs, _, extra = table[proto_id - 1]
        if proto_kind != BTF_KIND_FUNC_PROTO or nargs != 1:
            continue
        ptr = _through(table, struct.unpack_from("<II", types, extra)[1], _BTF_QUALIFIERS)
        if not 0 < ptr <= len(table) or table[ptr - 1][0] != BTF_KIND_PTR:
            continue
        names: list[str] = []
        target = _through(table, table[ptr - 1][3], _BTF_QUALIFIERS)
        while 0 < target <= len(table) and len(names) < 8:
            target_kind, target_name, _, next_id, _ = table[target - 1]
            if cstr(strs, target_name):
                names.append(cstr(strs, target_name))
            if target_kind != BTF_KIND_TYPEDEF:
                break
            target = _through(table, next_id, _BTF_QUALIFIERS)
        if names:
            out[cstr(strs, name_off)] = names
    return out


def symbols_and_relocations(data: bytes, secs: list[tuple[Any, ...]]) -> tuple[list[Sym], dict[int, dict[int, int]]]:
    """The symbol table, and per section the relocations against it ({offset: symbol index})."""
    syms: list[Sym] = []
    relocs: dict[int, dict[int, int]] = {}
    for s in secs:
        if s[1] == SHT_SYMTAB:
            strtab, raw = section_body(data, secs[s[6]]), section_body(data, s)
            for off in range(0, len(raw) - 23, 24):
                st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", raw, off)
                syms.append(Sym(cstr(strtab, st_name), st_value, st_size, st_info & 0xF, st_info >> 4, st_shndx))
        elif s[1] == SHT_REL:
            raw = section_body(data, s)
            target = relocs.setdefault(s[7], {})
            for off in range(0, len(raw) - 15, 16):
                r_offset, r_info = struct.unpack_from("<QQ", raw, off)
                target[r_offset] = r_info >> 32
    return syms, relocs


def analyze_elf(data: bytes) -> ElfInfo:
    """Externs and, per (section, program), the helper ids and kfuncs reachable from it."""
    if not is_elf64le(data):
        raise ValueError("not a 64-bit little-endian ELF file")
    secs = section_headers(data)
    names = section_names(data, secs)

    def body(i: int) -> bytes:
        return section_body(data, secs[i])

    syms, relocs = symbols_and_relocations(data, secs)

    btf_kinds: dict[str, str] = {}
    struct_ops_vars: dict[str, list[tuple[str, str, int, int]]] = {}
    contexts: dict[str, list[str]] = {}
    if ".BTF" in names:
        with contextlib.suppress(struct.error, ValueError):
            btf_kinds = btf_externs(body(names.index(".BTF")))
            struct_ops_vars = btf_struct_ops(body(names.index(".BTF")))
            contexts = btf_contexts(body(names.index(".BTF")))
    info = ElfInfo()
    seen = set()
    for sym in syms:
        if sym.shndx == 0 and sym.name and sym.name not in seen:
            seen.add(sym.name)
            kind = btf_kinds.get(sym.name) or ("kconfig" if sym.name.startswith(("CONFIG_", "LINUX_")) else "ksym")
            info.externs.append({"name": sym.name, "kind": kind, "weak": sym.bind == STB_WEAK})

    for sym in syms:
        sec = names[sym.shndx] if 0 < sym.shndx < len(secs) else ""
        if sym.kind == STT_OBJECT and sym.name and sym.size and sec.startswith(DATA_SECTIONS):
            info.variables.setdefault(sym.name, (sec, sym.value, sym.size))

    funcs: dict[int, list[Sym]] = {}
    for sym in syms:
        if sym.kind == STT_FUNC and 0 < sym.shndx < len(secs):
            funcs.setdefault(sym.shndx, []).append(sym)

    def func_at(sec: int, off: int) -> tuple[int, int] | None:
        for f in funcs.get(sec, []):
            if f.value <= off < f.value + max(f.size, 8):
                return f.value, f.value + f.size
        if 0 <= off < secs[sec][5]:  # no symbol: walk to the next function or the section end
            later = [f.value for f in funcs.get(sec, []) if f.value > off]
            return off, min(later) if later else secs[sec][5]
        return None

    def walk(sec: int, start: int, end: int) -> tuple[list[int], list[str]]:
        helpers: set[int] = set()
        kfuncs: set[str] = set()
        todo, done = [(sec, start, end)], set()
        while todo:
            sec, start, end = todo.pop()
            if (sec, start) in done:
                continue
            done.add((sec, start))
            code, rel = body(sec), relocs.get(sec, {})
            pos = start
            while pos + 8 <= min(end, len(code)):
                op, regs, _off, imm = struct.unpack_from("<BBhi", code, pos)
                sym = syms[rel[pos]] if pos in rel and rel[pos] < len(syms) else None
                target: tuple[int, int] | None = None
                if op == BPF_CALL:
                    if sym is not None and sym.shndx == 0:
                        kfuncs.add(sym.name)  # a call to an extern: a kfunc
                    elif sym is not None and 0 < sym.shndx < len(secs):
                        target = (sym.shndx, sym.value + (imm + 1) * 8)  # a subprogram in another section
                    elif regs >> 4 == 1:
                        target = (sec, pos + (imm + 1) * 8)  # a subprogram in this section
                    elif regs >> 4 == 0:
                        helpers.add(imm)
                elif op == BPF_LD_IMM64 and sym is not None and 0 < sym.shndx < len(secs):
                    target = (sym.shndx, sym.value + imm)  # a callback's address (bpf_loop & co), if code
                if target is not None and secs[target[0]][2] & SHF_EXECINSTR:
                    span = func_at(*target)
                    if span:
                        todo.append((target[0], *span))
                pos += 16 if op == BPF_LD_IMM64 else 8
        return sorted(helpers), sorted(kfuncs)

    for sym in syms:
        idx = sym.shndx
        if sym.kind != STT_FUNC or not (0 < idx < len(secs)) or names[idx] == ".text":
            continue
        if secs[idx][2] & SHF_EXECINSTR:
            info.calls[(names[idx], sym.name)] = walk(idx, sym.value, sym.value + (sym.size or secs[idx][5]))
            if sym.name in contexts:
                info.contexts[sym.name] = contexts[sym.name]

    # struct_ops maps: their function pointers are relocations against the programs they name.
    for sec_name, variables in struct_ops_vars.items():
        if sec_name not in names:
            continue
        idx = names.index(sec_name)
        slots = sorted(relocs.get(idx, {}).items())
        placed = {sym.name: (sym.value, sym.size) for sym in syms if sym.shndx == idx and sym.kind != STT_SECTION}
        for name, tname, offset, size in variables:
            offset, size = placed.get(name, (offset, size))  # clang leaves DATASEC offsets 0: libbpf reads them here
            progs = []
            for r_offset, sym_index in slots:
                slot: Sym | None = syms[sym_index] if sym_index < len(syms) else None
                if slot is None or not offset <= r_offset < offset + size:
                    continue
                if slot.kind == STT_SECTION and 0 < slot.shndx < len(secs):  # a static function: section + addend
                    (addend,) = struct.unpack_from("<q", body(idx), r_offset)
                    slot = next((f for f in funcs.get(slot.shndx, []) if f.value == addend), None)
                if slot is not None and slot.kind == STT_FUNC and slot.name not in progs:
                    progs.append(slot.name)
            info.struct_ops[name] = {"type": tname, "link": sec_name.endswith(".link"), "programs": progs}
    return info


def elf_to_json(info: ElfInfo) -> dict[str, Any]:
    """analyze_elf()'s result as JSON: the host analyses each object once (natively, not once per
    guest under emulation) and sends it with the check request."""
    return {
        "externs": info.externs,
        "calls": [[s, n, h, k] for (s, n), (h, k) in info.calls.items()],
        "struct_ops": info.struct_ops,
        "contexts": info.contexts,
    }


def elf_from_json(doc: dict[str, Any]) -> ElfInfo | None:
    """The host's analysis back, or None when it is not what elf_to_json() makes."""
    try:
        externs = [dict(e) for e in doc["externs"]]
        calls = {(str(s), str(n)): ([int(x) for x in h], [str(x) for x in k]) for s, n, h, k in doc["calls"]}
        struct_ops = {
            str(m): {"type": str(v["type"]), "link": bool(v["link"]), "programs": [str(p) for p in v["programs"]]}
            for m, v in (doc.get("struct_ops") or {}).items()
        }
        contexts = {str(p): [str(n) for n in names] for p, names in (doc.get("contexts") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return ElfInfo(externs=externs, calls=calls, struct_ops=struct_ops, contexts=contexts)


def helpers_from_insns(insns: bytes) -> list[int]:
    """Helper ids called by raw instructions (BPF_JMP|BPF_CALL with src_reg 0)."""
    out = set()
    for pos in range(0, len(insns) - 7, 8):
        op, regs, _off, imm = struct.unpack_from("<BBhi", insns, pos)
        if op == BPF_CALL and regs >> 4 == 0:
            out.add(imm)
    return sorted(out)
