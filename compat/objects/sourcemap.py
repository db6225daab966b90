"""From a rejected program to the line of BPF C source that made it fail.

Sources of the location, best first:
1. for a missing helper or kfunc (the ids and names the classification blamed, as data): the
   call instruction of that helper/kfunc in the program
   (the kernel often fails such programs before it verifies a single instruction, e.g. 5.10 on
   bpf_loop), found in the object's own code;
2. the verifier log's own source annotations: the "; <source line> @ file.bpf.c:12" line nearest
   before the error (newer kernels; older ones print the source text without "@ file:line");
3. the failing instruction of the log ("12: (85) call …", the last one before the error) mapped
   to a line through the object's .BTF.ext line_info (parsed here: pyelftools does not parse BTF)
   or, without BTF, through DWARF .debug_line (pyelftools);
4. the program's first line (for rejections without a failing instruction: complexity limit…).

Instruction numbers in a verifier log count the program as libbpf loads it: the program's own
instructions, then the .text subprograms it calls appended depth-first in the order libbpf
appends them. `LineTable.layout` rebuilds that layout from the object.

The object is untrusted input: every parse error just means "no location". The paths it records
are its own word too: the line's text comes from the object's BTF when it carries it, and a file
is read from this host only when `source_file` lets it through (a regular file with a source
suffix under a source root, never under /proc, /sys or /dev), so an object cannot make compat
print a line of /proc/self/environ, ~/.ssh/… or any other host file.
"""

from __future__ import annotations

import functools
import io
import os
import posixpath
import re
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from compat_agent.elf.reader import cstr
from compat_agent.wire.verifierlog import STATS_LINE
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

BPF_CALL = 0x85
BPF_LD_IMM64 = 0x18
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2
BTF_MAGIC = 0xEB9F
MAX_LINE_TEXT = 300
# The files a source line may be read from: C and its headers, C++, Rust and Go (the languages
# BPF programs are written in). Anything else an object names is shown by path, never opened.
SOURCE_SUFFIXES = (".c", ".h", ".bpf.c", ".bpf.h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".rs", ".go")
# Never read under these, whatever the source roots say: pseudo-files whose contents are the
# process's secrets (/proc/self/environ), kernel state, or devices that block or never end.
FORBIDDEN_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
MAX_SOURCE_BYTES = 16 << 20  # a source line further into a file than this is not looked for
MAX_SOURCE_LINE_BYTES = 64 << 10  # one physical line read at most this far

# "; value = bpf_map_lookup_elem(&sums, &key); @ counter.bpf.c:21" (6.x) or "; value = …;" (5.10)
_ANNOTATION = re.compile(r"^; ?(?P<text>.*?)(?: @ (?P<file>[^\s:]+):(?P<line>\d+))?\s*$")
# "12: (85) call bpf_loop#181" or "11: <invalid CO-RE relocation>" — an instruction of the trace;
# its number is the loaded program's index.
_INSN = re.compile(r"^(\d+): (?:\([0-9a-f]{2}\)|<)")


@dataclass
class SourceLocation:
    """Where in the BPF C source a program fails."""

    file: str  # as the object records it (compile path), or the log's file name
    line: int
    column: int | None = None
    text: str | None = None  # the source line: the object's BTF copy, else a source file's, else the log's
    insn: int | None = None  # instruction index in the loaded program, when known
    how: str = "btf"  # call | log | btf | dwarf | program: which evidence gave the line
    path: str | None = None  # the source file found on this host under a source root, when found

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict | None) -> SourceLocation | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("line"), int) or not doc.get("file"):
            return None
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in doc.items() if k in names})

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class _Func:
    section: str
    name: str
    start: int  # byte offset in its section
    end: int


@dataclass(frozen=True)
class _Line:
    offset: int  # byte offset in the section
    file: str
    line: int
    column: int
    text: str


class LineTable:
    """An object's code, symbols and line info, enough to place an instruction in the source."""

    def __init__(self, data: bytes):
        self.code: dict[str, bytes] = {}
        self.exec_sections: list[str] = []
        self.funcs: dict[str, list[_Func]] = {}
        self.relocs: dict[str, dict[int, tuple[str, str, int]]] = {}  # sec -> off -> (sym, sym sec, value)
        self.lines: dict[str, list[_Line]] = {}
        self.source = "none"
        elf = ELFFile(io.BytesIO(data))
        names = [elf.get_section(i).name for i in range(elf.num_sections())]
        for i, name in enumerate(names):
            sec = elf.get_section(i)
            if sec["sh_type"] == "SHT_PROGBITS" and sec["sh_flags"] & 0x4:
                self.code[name] = sec.data()
                self.exec_sections.append(name)
        symtab = elf.get_section_by_name(".symtab")
        syms = list(symtab.iter_symbols()) if symtab is not None else []
        for s in syms:
            shndx = s["st_shndx"]
            if s["st_info"]["type"] == "STT_FUNC" and isinstance(shndx, int) and names[shndx] in self.code:
                f = _Func(names[shndx], s.name, s["st_value"], s["st_value"] + (s["st_size"] or 8))
                self.funcs.setdefault(f.section, []).append(f)
        for sec in elf.iter_sections():
            if not isinstance(sec, RelocationSection) or sec["sh_info"] >= len(names):
                continue
            target = names[sec["sh_info"]]
            if target not in self.code:
                continue
            table = self.relocs.setdefault(target, {})
            for rel in sec.iter_relocations():
                idx = rel["r_info_sym"]
                if idx >= len(syms):
                    continue
                s = syms[idx]
                shndx = s["st_shndx"]
                sname = names[shndx] if isinstance(shndx, int) and 0 < shndx < len(names) else ""
                name = s.name or sname
                table[rel["r_offset"]] = (name, sname, s["st_value"])
        btf, ext = elf.get_section_by_name(".BTF"), elf.get_section_by_name(".BTF.ext")
        if btf is not None and ext is not None:
            try:
                self.lines = _btf_line_info(btf.data(), ext.data())
                self.source = "btf"
            except (struct.error, ValueError, IndexError):
                self.lines = {}
        if not self.lines and elf.has_dwarf_info():
            try:
                self.lines = _dwarf_lines(elf, self)
                self.source = "dwarf" if self.lines else "none"
            except Exception:  # pyelftools raises many kinds on odd DWARF
                self.lines = {}
        for rows in self.lines.values():
            rows.sort(key=lambda r: r.offset)

    @classmethod
    def from_bytes(cls, data: bytes) -> LineTable | None:
        """The object's table, or None when the object does not parse. Tables are read-only once
        built and kept for the last few objects: every rejected cell of an object (each program on
        each kernel) is located in the same table, which costs 5-40 ms to build."""
        return _table(data)

    # -- the loaded program's layout ------------------------------------------------------------
    def function(self, name: str, section: str | None = None) -> _Func | None:
        for sec, funcs in self.funcs.items():
            if section is not None and sec != section:
                continue
            for f in funcs:
                if f.name == name:
                    return f
        return None

    def _func_at(self, section: str, off: int) -> _Func | None:
        for f in self.funcs.get(section, []):
            if f.start <= off < f.end:
                return f
        return None

    def layout(self, program: str, section: str | None = None) -> list[tuple[str, int]]:
        """(section, byte offset) of each instruction slot of the program as libbpf loads it."""
        main = self.function(program, section) or (
            _Func(section, program, 0, len(self.code[section])) if section in self.code else None
        )
        if main is None:
            return []
        out: list[tuple[str, int]] = []
        appended: set[tuple[str, int]] = set()

        def append(f: _Func) -> None:
            out.extend((f.section, off) for off in range(f.start, min(f.end, len(self.code[f.section])), 8))
            appended.add((f.section, f.start))
            reloc_code(f)

        def reloc_code(f: _Func) -> None:  # libbpf's bpf_object__reloc_code: depth-first
            code, rel = self.code[f.section], self.relocs.get(f.section, {})
            pos = f.start
            while pos + 8 <= min(f.end, len(code)):
                op, regs, _off, imm = struct.unpack_from("<BBhi", code, pos)
                target = None
                sym = rel.get(pos)
                if op == BPF_CALL and regs >> 4 == BPF_PSEUDO_CALL:
                    if sym and sym[1] in self.code:
                        target = (sym[1], sym[2] + (imm + 1) * 8)
                    elif not sym:
                        target = (f.section, pos + (imm + 1) * 8)
                elif op == BPF_LD_IMM64 and sym and sym[1] in self.code:
                    target = (sym[1], sym[2] + imm)
                if target:
                    sub = self._func_at(*target)
                    if sub and (sub.section, sub.start) not in appended:
                        append(sub)
                pos += 16 if op == BPF_LD_IMM64 else 8

        append(main)
        return out

    def line_at(self, section: str, offset: int) -> _Line | None:
        """The line-info row covering a byte offset of a section (the last one at or before it)."""
        best = None
        for row in self.lines.get(section, []):
            if row.offset > offset:
                break
            if row.line:
                best = row
        return best

    def insn_line(self, program: str, section: str | None, insn: int) -> _Line | None:
        layout = self.layout(program, section)
        if not 0 <= insn < len(layout):
            return None
        return self.line_at(*layout[insn])

    def find_call(
        self, program: str, section: str | None, helpers: set[int] = frozenset(), kfuncs: set[str] = frozenset()
    ) -> int | None:
        """The first instruction of the loaded program that calls one of these helpers or kfuncs."""
        for index, (sec, off) in enumerate(self.layout(program, section)):
            code = self.code[sec]
            if off + 8 > len(code):
                continue
            op, regs, _o, imm = struct.unpack_from("<BBhi", code, off)
            if op != BPF_CALL:
                continue
            sym = self.relocs.get(sec, {}).get(off)
            if regs >> 4 == 0 and not sym and imm in helpers:
                return index
            if sym and not sym[1] and sym[0] in kfuncs:
                return index
        return None


def _btf_line_info(btf: bytes, ext: bytes) -> dict[str, list[_Line]]:
    """.BTF.ext line_info: per section, (insn byte offset, file, line, column, source text)."""
    magic, _ver, _flags, hdr_len, _to, _tl, str_off, str_len = struct.unpack_from("<HBBIIIII", btf, 0)
    if magic != BTF_MAGIC:
        raise ValueError("bad BTF magic")
    strs = btf[hdr_len + str_off : hdr_len + str_off + str_len]
    magic, _ver, _flags, ext_hdr = struct.unpack_from("<HBBI", ext, 0)
    if magic != BTF_MAGIC:
        raise ValueError("bad BTF.ext magic")
    _fo, _fl, line_off, line_len = struct.unpack_from("<IIII", ext, 8)
    start = ext_hdr + line_off
    end = min(start + line_len, len(ext))
    (rec_size,) = struct.unpack_from("<I", ext, start)
    if rec_size < 16:
        raise ValueError("bad line_info record size")
    pos = start + 4
    out: dict[str, list[_Line]] = {}
    while pos + 8 <= end:
        sec_off, count = struct.unpack_from("<II", ext, pos)
        pos += 8
        rows = out.setdefault(cstr(strs, sec_off), [])
        for _ in range(count):
            if pos + rec_size > end:
                raise ValueError("truncated line_info")
            insn_off, file_off, text_off, line_col = struct.unpack_from("<IIII", ext, pos)
            text = cstr(strs, text_off)
            rows.append(_Line(insn_off, cstr(strs, file_off), line_col >> 10, line_col & 0x3FF, text))
            pos += rec_size
    return out


def _dwarf_lines(elf: ELFFile, table: LineTable) -> dict[str, list[_Line]]:
    """DWARF .debug_line rows per code section (used when the object has no .BTF.ext).

    In a relocatable object every sequence starts at address 0; the section of each sequence is
    the target of the relocation of its DW_LNE_set_address operand (8-byte relocations of
    .rel.debug_line, in file order, one per sequence).
    """
    rel = elf.get_section_by_name(".rel.debug_line")
    symtab = elf.get_section_by_name(".symtab")
    if rel is None or symtab is None:
        return {}
    targets = []
    for r in sorted(rel.iter_relocations(), key=lambda r: r["r_offset"]):
        s = symtab.get_symbol(r["r_info_sym"])
        shndx = s["st_shndx"]
        if isinstance(shndx, int) and 0 < shndx < elf.num_sections():
            name = elf.get_section(shndx).name
            if name in table.code:
                targets.append((name, s["st_value"]))
    dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
    sequences: list[list[tuple[int, str, int, int]]] = []
    for cu in dwarf.iter_CUs():
        lp = dwarf.line_program_for_CU(cu)
        if lp is None:
            continue
        top = cu.get_top_DIE()
        comp_dir = top.attributes.get("DW_AT_comp_dir")
        files = _dwarf_files(lp, _attr_text(comp_dir.value) if comp_dir else "")
        current: list[tuple[int, str, int, int]] = []
        for entry in lp.get_entries():
            st = entry.state
            if st is None:
                continue
            if st.end_sequence:
                sequences.append(current)
                current = []
                continue
            current.append((st.address, files.get(st.file, "?"), st.line, st.column))
    if len(sequences) != len(targets):
        return {}
    out: dict[str, list[_Line]] = {}
    for (sec, base), rows in zip(targets, sequences, strict=True):
        out.setdefault(sec, []).extend(_Line(base + a, f, ln, col, "") for a, f, ln, col in rows)
    return out


def _attr_text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _dwarf_files(lp, comp_dir: str) -> dict[int, str]:
    """File index -> path of a line program (DWARF 5: index 0 is the unit's file, directory 0
    the compilation directory; DWARF 2-4: indexes from 1, directory 0 is the compilation directory)."""
    header = lp.header

    def text(v) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    dirs = [text(d) for d in header.get("include_directory", [])]
    version = header["version"]
    out = {}
    for i, fe in enumerate(header.get("file_entry", [])):
        d = fe.dir_index
        if version >= 5:
            directory = dirs[d] if 0 <= d < len(dirs) else ""
        else:
            directory = comp_dir if d == 0 else (dirs[d - 1] if 0 < d <= len(dirs) else "")
        name = posixpath.join(directory, text(fe.name))
        if not name.startswith("/") and comp_dir:
            name = posixpath.join(comp_dir, name)
        out[i if version >= 5 else i + 1] = name
    return out


# -- locating a rejection -------------------------------------------------------------------------
def error_index(lines: list[str]) -> int | None:
    """Index of the verifier's error line: the last line that is not a statistic."""
    for i in range(len(lines) - 1, -1, -1):
        text = lines[i].strip()
        if text and not STATS_LINE.match(text):
            return i
    return None


def log_location(log: str) -> tuple[int | None, tuple[str, str | None, int | None] | None]:
    """(failing instruction, (annotation text, file, line)) from a verifier log, each when present."""
    lines = log.splitlines()
    err = error_index(lines)
    if err is None:
        return None, None
    insn = annotation = None
    for i in range(err, -1, -1):
        line = lines[i]
        if insn is None:
            m = _INSN.match(line)
            if m:
                insn = int(m.group(1))
        if annotation is None and line.startswith(";"):
            m = _ANNOTATION.match(line)
            if m and m.group("text"):
                annotation = (m.group("text"), m.group("file"), int(m.group("line")) if m.group("line") else None)
        if insn is not None and annotation is not None:
            break
    return insn, annotation


def locate(
    data: bytes,
    object_path: str | Path | None,
    program: str,
    section: str | None,
    log: str,
    roots: Sequence[Path] | None = None,
    helpers: Iterable[int] = (),
    kfuncs: Iterable[str] = (),
) -> SourceLocation | None:
    """The source line a rejected program fails on, or None when the object does not say.

    roots: the directories source files may be read from (`source_roots()`; default: the
    current directory alone). helpers, kfuncs: the helper ids and kfunc names the classification
    blamed (results.classify.Classified): the first call of one of them is the line."""
    table = LineTable.from_bytes(data)
    loc = _locate(table, program, section, frozenset(helpers), frozenset(kfuncs), log or "")
    # The log comes from the guest (untrusted): a file name that only the log gives, and the
    # object's own line info does not record, is shown but never opened on the host.
    if loc is not None and (loc.how != "log" or _full_name(table, loc.file) is not None):
        # The object's own copy of the line is preferred; the guest's copy (a log annotation) is
        # replaced by the object's or the source file's.
        want_text = loc.text is None
        if loc.how == "log":
            own = _recorded_text(table, loc.file, loc.line)
            want_text = own is None
            loc.text = own or loc.text
        _read_source(loc, object_path, source_roots() if roots is None else roots, want_text)
    return loc


def _locate(
    table: LineTable | None,
    program: str,
    section: str | None,
    helpers: frozenset[int],
    kfuncs: frozenset[str],
    log: str,
) -> SourceLocation | None:
    how = table.source if table else "btf"
    if table is not None and (helpers or kfuncs):
        insn = table.find_call(program, section, set(helpers), set(kfuncs))
        row = table.insn_line(program, section, insn) if insn is not None else None
        if row is not None:
            return SourceLocation(row.file, row.line, row.column or None, row.text.strip() or None, insn, "call")
    insn, annotation = log_location(log)
    if annotation and annotation[1] and annotation[2]:
        text, fname, line = annotation
        full = _full_name(table, fname) if table else None
        return SourceLocation(full or fname, line, None, text.strip() or None, insn, "log")
    if table is not None and insn is not None:
        row = table.insn_line(program, section, insn)
        if row is not None:
            return SourceLocation(row.file, row.line, row.column or None, row.text.strip() or None, insn, how)
    if table is not None:
        row = table.insn_line(program, section, 0)
        if row is not None:
            return SourceLocation(row.file, row.line, row.column or None, row.text.strip() or None, None, "program")
    return None


def _full_name(table: LineTable | None, basename: str) -> str | None:
    """The object's recorded path of a file the log names by its base name."""
    if table is None:
        return None
    for rows in table.lines.values():
        for row in rows:
            if row.file == basename or row.file.endswith("/" + basename):
                return row.file
    return None


def _recorded_text(table: LineTable | None, file: str, line: int) -> str | None:
    """The object's own (BTF) copy of a line of a file it records, when it carries one."""
    for rows in table.lines.values() if table else ():
        for row in rows:
            if row.file == file and row.line == line and row.text.strip():
                return row.text.strip()
    return None


def source_roots(extra: Iterable[str | Path] = ()) -> tuple[Path, ...]:
    """The directories source files may be read from, resolved: the current directory, then each
    extra one (--source-root)."""
    out: list[Path] = []
    for root in (os.getcwd(), *extra):
        resolved = Path(os.path.realpath(root))
        if resolved not in out:
            out.append(resolved)
    return tuple(out)


def source_file(candidate: str | Path, roots: Sequence[Path]) -> Path | None:
    """The real path of candidate when compat may read it as a source file, else None.

    All must hold, on the path with every symlink resolved (a link may point anywhere): it
    exists, is a regular file, has a source suffix (SOURCE_SUFFIXES), lies under one of the
    (resolved) roots and under none of /proc, /sys, /dev. The object names the candidate, so
    it is untrusted: "..", links out of a root, FIFOs and devices are all refused here.
    """
    try:
        resolved = Path(candidate).resolve(strict=True)
        if not resolved.name.endswith(SOURCE_SUFFIXES):
            return None
        if any(resolved.is_relative_to(f) for f in FORBIDDEN_ROOTS):
            return None
        if not any(resolved.is_relative_to(r) for r in roots):
            return None
        if not stat.S_ISREG(resolved.stat().st_mode):
            return None
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL in the name
        return None
    return resolved


def read_line(path: Path, number: int) -> str | None:
    """Line `number` (from 1) of a file `source_file` let through, stripped and cut to
    MAX_LINE_TEXT; None when the file is shorter, is no longer a regular file, or the line lies
    past MAX_SOURCE_BYTES."""
    if number < 1:
        return None
    # O_NOFOLLOW: the path was resolved, so a symlink here was put there since; O_NONBLOCK: a
    # FIFO swapped in must not hang compat (fstat below refuses it anyway).
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        f = open(fd, "rb")  # noqa: SIM115 - closed by the with below; owns fd from here
    except OSError:
        os.close(fd)
        return None
    with f:
        consumed, current, raw = 0, 0, b""
        try:
            while current < number:
                chunk = f.readline(MAX_SOURCE_LINE_BYTES)
                if not chunk:
                    return None
                consumed += len(chunk)
                if consumed > MAX_SOURCE_BYTES:
                    return None
                if current + 1 == number and not raw:
                    raw = chunk  # the first MAX_SOURCE_LINE_BYTES of the wanted line
                if chunk.endswith(b"\n"):
                    current += 1
                elif len(chunk) < MAX_SOURCE_LINE_BYTES:
                    current += 1  # the last line, without a newline
        except OSError:
            return None
    return raw.decode("utf-8", "replace").strip()[:MAX_LINE_TEXT]


def _read_source(
    loc: SourceLocation, object_path: str | Path | None, roots: Sequence[Path], want_text: bool
) -> None:
    """Find the line's source file on this host, through `source_file`'s gate (loc.path), and
    take the line's text from it when want_text (the object does not carry it)."""
    recorded = Path(loc.file)
    candidates = [recorded]
    if object_path:
        obj_dir = Path(object_path).parent
        if not recorded.is_absolute():
            candidates.append(obj_dir / recorded)
        candidates.append(obj_dir / recorded.name)
    for path in candidates:
        found = source_file(path, roots)
        if found is None:
            continue
        if want_text:
            text = read_line(found, loc.line)
            if text is None:
                continue  # shorter than the line: not the file the object was built from
            loc.text = text or loc.text
        loc.path = str(found)
        return


@functools.lru_cache(maxsize=8)
def _table(data: bytes) -> LineTable | None:
    # Keyed by the bytes themselves (bytes cache their hash: the same object costs one hash).
    try:
        return LineTable(data)
    except Exception:  # untrusted input: no table, no location
        return None
