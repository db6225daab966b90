"""Objects whose maps are defined the pre-BTF way, which libbpf 1.0 and later refuse to open.

Before BTF-defined maps, loaders (libbpf 0.x, iproute2, gobpf, Suricata's and opensnitch's) read
maps from `struct bpf_map_def` records in a "maps" or "maps/NAME" section, created them, patched
each program's map references with the maps' fds and loaded each program section. Distributions
still ship such objects. This module does what those loaders do, with the same syscalls through
libbpf's low-level API (bpf_map_create, bpf_prog_load), so their programs get the kernel's own
verdict instead of "libbpf cannot parse this object":

- each map from the first five fields of its definition (type, key and value size, max_entries,
  flags; what follows differs between loaders and does not reach the kernel), a perf event
  array of max_entries 0 sized to the CPUs, as libbpf 0.x did;
- each program (a function of an executable section other than .text) with the subprograms it
  calls in .text appended, as libbpf links them, and its map references (BPF_LD_IMM64) patched;
- the program type from the section name (libbpf's table), or --program-type.

What such loaders did not do is not done: an object that also relies on BTF (CO-RE, global
data, map-in-map, BTF-defined maps next to legacy ones) stays an object error, saying why.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import re
import struct
import time
from dataclasses import dataclass, field

from compat_agent.bpf import libbpf as lb
from compat_agent.bpf.logbuf import log_buffer
from compat_agent.bpf.timelimit import program_time_limit
from compat_agent.elf.analysis import (
    BPF_CALL,
    BPF_LD_IMM64,
    SHF_EXECINSTR,
    STB_WEAK,
    STT_FUNC,
    STT_SECTION,
    helpers_from_insns,
    symbols_and_relocations,
)
from compat_agent.elf.reader import cstr, is_elf64le, section_body, section_headers, section_names
from compat_agent.elf.sections import ATTACH_TIME_TYPES, attach_target, choose, first_match
from compat_agent.wire.stats import parse_stats
from compat_agent.wire.verifierlog import error_line

from .resources import exhausted, map_bytes
from .state import ProgState, not_attempted

# What libbpf 1.x says when it meets legacy map definitions.
LEGACY_OPEN = re.compile(r"legacy map definitions in '[^']*' section|bad map relo against '[^']*' in section 'maps")
BPF_PSEUDO_MAP_FD, BPF_PSEUDO_CALL = 1, 1
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
STB_GLOBAL = 1
NOTE = (
    "the object defines its maps in legacy 'maps' sections (struct bpf_map_def), which libbpf 1.0 and later "
    "refuse: compat created its maps and loaded each program itself, as libbpf 0.x, iproute2 or gobpf do"
)


class Unsupported(Exception):
    """The object needs what a legacy loader cannot give: a kind (the legacy_unsupported fact's,
    wire/facts.py) and its parameters; the host words it (compat/results/classify.py)."""

    def __init__(self, kind: str, **params: str | int):
        super().__init__(kind, params)
        self.kind, self.params = kind, params


@dataclass
class LegacyMap:
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    fd: int = -1
    errno: int | None = None
    error: str | None = None


@dataclass
class LegacyProgram:
    name: str
    section: str
    insns: bytearray
    refs: list[tuple[int, str]] = field(default_factory=list)  # (byte offset of a BPF_LD_IMM64, map)

    @property
    def maps(self) -> list[str]:
        return [name for _, name in self.refs]

    def patched(self, fds: dict[str, int]) -> bytes:
        """The instructions with each map reference pointing at its map's fd."""
        insns = bytearray(self.insns)
        for at, name in self.refs:
            op, regs, off, _imm = struct.unpack_from("<BBhi", insns, at)
            struct.pack_into("<BBhi", insns, at, op, (regs & 0x0F) | (BPF_PSEUDO_MAP_FD << 4), off, fds[name])
        return bytes(insns)


def is_legacy(open_log: str) -> bool:
    """Whether libbpf refused to open an object for its legacy map definitions."""
    return bool(LEGACY_OPEN.search(open_log))


def parse(data: bytes) -> tuple[list[LegacyMap], list[LegacyProgram], str, int]:
    """The maps, the programs (linked and relocated, map fds still to be patched in), the
    license and the kernel version an object declares; Unsupported when it needs more, or when
    its ELF is malformed (it is untrusted input)."""
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError, OverflowError) as e:
        raise Unsupported("malformed_elf", error=e.__class__.__name__) from None


def _parse(data: bytes) -> tuple[list[LegacyMap], list[LegacyProgram], str, int]:
    if not is_elf64le(data):
        raise Unsupported("not_elf64le")
    secs = section_headers(data)
    names = section_names(data, secs)
    if ".BTF.ext" in names:
        ext = section_body(data, secs[names.index(".BTF.ext")])
        hdr_len = struct.unpack_from("<I", ext, 4)[0] if len(ext) >= 8 else 0
        if hdr_len >= 32 and len(ext) >= 32 and struct.unpack_from("<I", ext, 28)[0]:
            raise Unsupported("core_relocations")
    if ".maps" in names:
        raise Unsupported("mixed_maps")
    syms, relocs = symbols_and_relocations(data, secs)

    def code(shndx: int) -> bytes:
        return section_body(data, secs[shndx])

    maps: dict[tuple[int, int], LegacyMap] = {}  # (section, offset) -> map
    for shndx, name in enumerate(names):
        if name != "maps" and not name.startswith("maps/"):
            continue
        body = code(shndx)
        defs = sorted((s for s in syms if s.shndx == shndx and s.name and s.kind != STT_SECTION), key=lambda s: s.value)
        each = len(body) // len(defs) if defs else 0
        for sym in defs:
            size = sym.size or each
            if size < 16 or sym.value + size > len(body):
                raise Unsupported("map_definition_size", map=sym.name, size=size)
            fields = struct.unpack_from("<IIII", body, sym.value) + (
                struct.unpack_from("<I", body, sym.value + 16) if size >= 20 else (0,)
            )
            maps[(shndx, sym.value)] = LegacyMap(sym.name, *fields)
    text = names.index(".text") if ".text" in names else -1

    def patch(insns: bytearray, shndx: int, base: int, start: int, end: int, prog: LegacyProgram, calls: list) -> None:
        for offset, sym_index in relocs.get(shndx, {}).items():
            if not start <= offset < end or sym_index >= len(syms):
                continue
            sym, at = syms[sym_index], base + offset - start
            if insns[at] == BPF_LD_IMM64 and (sym.shndx, sym.value) in maps:
                prog.refs.append((at, maps[(sym.shndx, sym.value)].name))
            elif insns[at] == BPF_CALL and sym.shndx == text >= 0:
                calls.append((at, sym.value if sym.kind != STT_SECTION else 0))
            else:
                where = names[sym.shndx] if 0 < sym.shndx < len(names) else "an undefined symbol"
                raise Unsupported("foreign_reference", program=prog.name, target=sym.name or where, section=where)

    programs: list[LegacyProgram] = []
    for sym in syms:
        shndx = sym.shndx
        if sym.kind != STT_FUNC or sym.bind not in (STB_GLOBAL, STB_WEAK) or not 0 < shndx < len(secs):
            continue
        if shndx == text or not secs[shndx][2] & SHF_EXECINSTR:
            continue
        end = sym.value + (sym.size or len(code(shndx)) - sym.value)
        prog = LegacyProgram(sym.name, names[shndx], bytearray(code(shndx)[sym.value : end]))
        calls: list[tuple[int, int]] = []
        patch(prog.insns, shndx, 0, sym.value, end, prog, calls)
        if calls:  # the subprograms in .text, appended once, as libbpf links them
            base = len(prog.insns)
            prog.insns += code(text)
            patch(prog.insns, text, base, 0, len(code(text)), prog, [])
            for at, target in calls:
                op, regs, off, imm = struct.unpack_from("<BBhi", prog.insns, at)
                new = base // 8 + target // 8 + imm + 1 - (at // 8 + 1)
                struct.pack_into("<BBhi", prog.insns, at, op, (regs & 0x0F) | (BPF_PSEUDO_CALL << 4), off, new)
        programs.append(prog)
    license = cstr(code(names.index("license")), 0) if "license" in names else ""
    version = code(names.index("version")) if "version" in names else b""
    kern_version = struct.unpack_from("<I", version)[0] if len(version) >= 4 else 0
    return list(maps.values()), programs, license, kern_version


def create(m: LegacyMap) -> None:
    """Create one map (m.fd, or m.error)."""
    max_entries = m.max_entries
    if not max_entries and m.map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        max_entries = os.cpu_count() or 1
    opts = lb.MapCreateOpts(sz=ctypes.sizeof(lb.MapCreateOpts), map_flags=m.flags)
    name = re.sub(r"[^A-Za-z0-9_.]", "_", m.name)[:15].encode()
    with lb.capture():
        fd = lb.lib().bpf_map_create(m.map_type, name, m.key_size, m.value_size, max_entries, ctypes.byref(opts))
    if fd < 0:
        m.errno = -fd
        kind = lb.map_type_str(m.map_type) or str(m.map_type)
        m.error = f"map '{m.name}' ({kind}) could not be created: {lb.errno_text(-fd)}"
    else:
        m.fd = fd


def load(name: str, insns: bytes, prog_type: int, attach_type: int, license: str, kern_version: int,
         level: int, limit: float | None) -> tuple[int, str, bool]:  # fmt: skip
    """bpf_prog_load of one program: (fd or -errno, verifier log, stopped by the time limit)."""
    log = log_buffer(level)
    code = ctypes.create_string_buffer(insns, len(insns))
    opts = lb.ProgLoadOpts(
        sz=ctypes.sizeof(lb.ProgLoadOpts), expected_attach_type=attach_type, kern_version=kern_version,
        log_level=level, log_size=len(log), log_buf=ctypes.cast(log, ctypes.c_char_p),
    )  # fmt: skip
    with lb.capture(), program_time_limit(limit, lambda: 0) as watcher:
        fd = lb.lib().bpf_prog_load(
            prog_type, name[:15].encode(), license.encode(), ctypes.addressof(code), len(insns) // 8, ctypes.byref(opts)
        )
    return fd, log.value.decode("utf-8", "replace"), fd < 0 and watcher is not None and watcher.fired


def check(checker, open_log: list[str]) -> dict:
    """The check_result fields for a legacy object (checker: the check.Checker of the request,
    for its options and records); raises Unsupported when the object needs more."""
    from compat_agent.attach.attach import Targets, attach_fd, failed

    maps, programs, license, kern_version = parse(checker.data)
    records = []
    targets = Targets()
    try:
        for m in maps:
            create(m)
            found = exhausted(m.errno, "map", m.name, needs=map_bytes(m.max_entries, m.value_size))
            if found:  # the guest's limit, not the object's verdict (resources.py)
                raise found
        by_name = {m.name: m for m in maps}
        fds = {m.name: m.fd for m in maps}
        for prog in programs:
            helpers = helpers_from_insns(bytes(prog.insns))
            own = lb.prog_type_by_name(prog.section)
            own_name = (lb.prog_type_str(own[0]) or "") if own else "unspec"
            choice = choose(prog.name, prog.section, own_name, checker.contexts.get(prog.name), checker.type_rules,
                            helpers)  # fmt: skip
            section = choice.section if choice else prog.section
            typed = (lb.prog_type_by_name(section) if choice else own) or (0, 0)
            type_name = lb.prog_type_str(typed[0]) or str(typed[0])
            state = ProgState(
                name=prog.name, section=prog.section, prog_type=typed[0], type_name=type_name, eat=typed[1],
                attach_type=None, attach_target=None if choice else attach_target(prog.section),
                insn_cnt=len(prog.insns) // 8, helpers=helpers, kfuncs=[],
                initial_autoload=True,
            )  # fmt: skip
            if choice:
                state.type_from, state.type_note = choice.source, choice.note(prog.section, type_name)
            target = first_match(prog.name, prog.section, checker.target_rules)
            if target and type_name in ATTACH_TIME_TYPES:  # what its attach check attaches to
                state.retarget(target)
            state.libbpf_log = [f"[compat: {NOTE}]", *open_log]
            # Not named `failed`: that is attach.failed, called below when an attach check raises.
            uncreated = [by_name[n] for n in prog.maps if by_name[n].fd < 0]
            if not typed[0]:
                state.reject("prepare", errno_mod.EINVAL, f"missing BPF prog type, check ELF section name '{section}'",
                             state.libbpf_log)  # fmt: skip
            elif uncreated:
                state.reject("prepare", None, f"{uncreated[0].error}, so the program cannot load", state.libbpf_log)
            else:
                fd = _load_one(prog, state, typed, license, kern_version, checker, fds)
                if fd >= 0:
                    try:
                        state.attach = attach_fd(fd, state, targets) if checker.want_attach else None
                    except Exception as e:  # an attach check must never cost the verdicts
                        state.attach = failed(0, f"agent error while attaching: {type(e).__name__}: {e}")
                    finally:
                        os.close(fd)
            if state.verdict == "accepted" and state.attach is None:
                state.attach = not_attempted("attach not requested")
            records.append(state.record())
    finally:
        targets.close()
        for m in maps:
            if m.fd >= 0:
                os.close(m.fd)
    return {
        "maps": [
            {"name": m.name, "type": lb.map_type_str(m.map_type) or str(m.map_type), "ok": m.fd >= 0, "errno": m.errno}
            for m in maps
        ],
        "programs": records,
    }


def _load_one(prog: LegacyProgram, state, typed: tuple[int, int], license: str, kern_version: int, checker,
              fds: dict[str, int]) -> int:  # fmt: skip
    """Verify one program: stats only first, then the full log of a rejection (as check.py does);
    the fd of an accepted program (the caller attaches and closes it), else -1."""
    insns = prog.patched(fds)
    t0 = time.monotonic()
    fd, log, stopped = load(prog.name, insns, *typed, license, kern_version, 4, checker.program_timeout)
    elapsed = (time.monotonic() - t0) * 1000
    checker.timing["loads"].append({"ms": round(elapsed, 3), "programs": 1, "level": 4, "ok": fd >= 0})
    state.stats, state.log, state.load_ms = parse_stats(log), log, elapsed
    if fd >= 0:
        state.verdict = "accepted"
        return fd
    err = -fd
    if stopped and err == errno_mod.EAGAIN:  # no verdict: the verifier was stopped
        state.verdict, state.message, state.log, state.stats = "timeout", checker._over_limit(), "", {}
        return -1
    found = exhausted(err, "program", prog.name, log)
    if found:  # the guest's limit, not the object's verdict (resources.py)
        raise found
    state.reject("load", err, state.explain(error_line(log), []) or lb.errno_text(err), state.libbpf_log)
    if err != errno_mod.E2BIG:
        again, full, stopped = load(prog.name, insns, *typed, license, kern_version, 1, checker.program_timeout)
        if again >= 0:
            os.close(again)
        if full.strip() and not stopped:
            state.log, state.log_level = full, 1
            state.message = state.explain(error_line(full), []) or state.message
    return -1
