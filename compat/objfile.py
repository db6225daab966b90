"""Host-side inspection of a user's BPF object: bounded, defensive, never loads anything.

The object is untrusted input. The host only reads it with pyelftools to reject what is not a
BPF object (with one clear line), to name its programs, and to hash it; loading happens in
the guests. Every parser exception becomes a BadObject, never a traceback.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from .errors import UserError

EM_BPF = 247
MAX_OBJECT_BYTES = 64 << 20  # far above real objects (tens of MB at most); bounds guest memory too
MAX_PROGRAMS = 4096


class BadObject(UserError):
    """The file is not a usable BPF object; the message names the file and the problem, in one line
    (texts taken from the file, such as section names, are escaped and bounded)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(one_line(message, 0), hint)


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str, limit: int = 80) -> str:
    """text with control characters escaped; past limit characters it is cut (limit 0: never)."""
    text = _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ObjectProgram:
    """A program as the ELF file declares it (libbpf's view: a global function outside .text)."""

    name: str
    section: str


@dataclass(frozen=True)
class BpfObject:
    """A validated BPF object file."""

    path: Path
    name: str
    data: bytes = field(repr=False)
    sha256: str
    programs: tuple[ObjectProgram, ...]

    @property
    def size(self) -> int:
        return len(self.data)


def read_object(path: Path, max_bytes: int = MAX_OBJECT_BYTES) -> BpfObject:
    """Read and validate a BPF object file; raise BadObject with a one-line reason otherwise."""
    path = Path(path)
    label = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadObject(f"{label}: no such file") from None
    except OSError as e:
        raise BadObject(f"{label}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadObject(f"{label}: is a directory, not a BPF object")
    if not stat.S_ISREG(st.st_mode):
        raise BadObject(f"{label}: not a regular file")
    if st.st_size == 0:
        raise BadObject(f"{label}: empty file")
    if st.st_size > max_bytes:
        raise BadObject(f"{label}: {st.st_size} bytes is more than the {max_bytes >> 20} MiB limit for one object")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadObject(f"{label}: cannot read ({e.strerror})") from None
    programs = inspect_bytes(data, label)
    return BpfObject(path, path.name, data, hashlib.sha256(data).hexdigest(), programs)


def inspect_bytes(data: bytes, label: str) -> tuple[ObjectProgram, ...]:
    """The programs of an ELF BPF object in data; BadObject if it is anything else."""
    if not data.startswith(b"\x7fELF"):
        raise BadObject(f"{label}: not an ELF file")
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] not in ("EM_BPF", EM_BPF):
            machine = elf["e_machine"]
            raise BadObject(f"{label}: an ELF file for {machine}, not a BPF object (build with clang -target bpf)")
        if elf["e_type"] != "ET_REL":
            raise BadObject(f"{label}: a BPF ELF of type {elf['e_type']}, not a relocatable object")
        programs = _programs(elf, data, label)
    except BadObject:
        raise
    except Exception as e:
        # pyelftools (and construct below it) raise many kinds of exceptions on malformed input.
        raise BadObject(f"{label}: malformed or truncated ELF ({e.__class__.__name__}: {one_line(str(e))})") from None
    if not programs:
        raise BadObject(f"{label}: no BPF programs in this object")
    return programs


def _programs(elf: ELFFile, data: bytes, label: str) -> tuple[ObjectProgram, ...]:
    sections = []
    for index in range(elf.num_sections()):
        sec = elf.get_section(index)
        end = sec["sh_offset"] + sec["sh_size"]
        if sec["sh_type"] != "SHT_NOBITS" and end > len(data):
            name = one_line(sec.name, 40) if sec.name else index
            raise BadObject(f"{label}: truncated ELF (section {name} ends past the end of the file)")
        sections.append(sec)
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        raise BadObject(f"{label}: no symbol table (was the object stripped?)")
    out: list[ObjectProgram] = []
    for sym in symtab.iter_symbols():
        if len(out) >= MAX_PROGRAMS:
            raise BadObject(f"{label}: more than {MAX_PROGRAMS} programs")
        if sym["st_info"]["type"] != "STT_FUNC" or sym["st_info"]["bind"] not in ("STB_GLOBAL", "STB_WEAK"):
            continue
        shndx = sym["st_shndx"]
        if not isinstance(shndx, int) or shndx >= len(sections):
            continue
        sec = sections[shndx]
        # libbpf: functions in .text are subprograms, not programs.
        if sec.name == ".text" or not sec["sh_flags"] & SH_FLAGS.SHF_EXECINSTR:
            continue
        out.append(ObjectProgram(sym.name, sec.name))
    return tuple(out)
