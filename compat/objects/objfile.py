"""Host-side inspection of a user's BPF object: bounded, defensive, never loads anything.

The object is untrusted input. The host only reads it with pyelftools to reject what is not a
BPF object (with one clear line), to name its programs, and to hash it; loading happens in
the guests. Every parser exception becomes a BadObject, never a traceback. A binary that
embeds BPF objects (a libbpf skeleton, Go's bpf2go; see embedded.py) stands for those objects.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from compat_agent.elf.ptregs import PtRegs, pt_regs_arch
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from compat.errors import UserError
from compat.text import visible

from .embedded import carve, source_stem

if TYPE_CHECKING:
    from .expectations import ObjectSpecs

EM_BPF = 247
MAX_OBJECT_BYTES = 64 << 20  # far above real objects (tens of MB at most); bounds guest memory too
MAX_BINARY_BYTES = 1 << 30  # a binary searched for embedded objects (Go binaries: 100+ MB)
MAX_PROGRAMS = 4096  # programs per object, inclusive

# The section names libbpf gives a program type (its section_defs table, libbpf 1.0 to 1.7: each
# version only adds names). "NAME+" matches NAME and NAME/ANYTHING, "NAME/" any NAME/ANYTHING,
# anything else itself only, as libbpf's sec_def_matches() does. --program-type is checked
# against it before anything boots; the guest's own libbpf still has the last word.
_SECTION_DEFS = (
    "socket sk_reuseport/migrate sk_reuseport kprobe+ uprobe+ uprobe.s+ kretprobe+ uretprobe+ uretprobe.s+ "
    "kprobe.multi+ kretprobe.multi+ kprobe.session+ uprobe.multi+ uretprobe.multi+ uprobe.session+ "
    "uprobe.multi.s+ uretprobe.multi.s+ uprobe.session.s+ ksyscall+ kretsyscall+ usdt+ usdt.s+ tc/ingress "
    "tc/egress tcx/ingress tcx/egress tc classifier action netkit/primary netkit/peer tracepoint+ tp+ "
    "tracepoint.s+ tp.s+ raw_tracepoint+ raw_tp+ raw_tracepoint.s+ raw_tp.s+ raw_tracepoint.w+ raw_tp.w+ "
    "tp_btf+ tp_btf.s+ fentry+ fmod_ret+ fexit+ fentry.s+ fmod_ret.s+ fexit.s+ fsession+ fsession.s+ "
    "fsession.multi+ fsession.multi.s+ fentry.multi+ fexit.multi+ fentry.multi.s+ fexit.multi.s+ freplace+ "
    "lsm+ lsm.s+ lsm_cgroup+ iter+ iter.s+ syscall xdp.frags/devmap xdp/devmap xdp.frags/cpumap xdp/cpumap "
    "xdp.frags xdp perf_event lwt_in lwt_out lwt_xmit lwt_seg6local sockops sk_skb/stream_parser "
    "sk_skb/stream_verdict sk_skb/verdict sk_skb sk_msg lirc_mode2 flow_dissector cgroup_skb/ingress "
    "cgroup_skb/egress cgroup/skb cgroup/sock_create cgroup/sock_release cgroup/sock cgroup/post_bind4 "
    "cgroup/post_bind6 cgroup/bind4 cgroup/bind6 cgroup/connect4 cgroup/connect6 cgroup/connect_unix "
    "cgroup/sendmsg4 cgroup/sendmsg6 cgroup/sendmsg_unix cgroup/recvmsg4 cgroup/recvmsg6 cgroup/recvmsg_unix "
    "cgroup/getpeername4 cgroup/getpeername6 cgroup/getpeername_unix cgroup/getsockname4 cgroup/getsockname6 "
    "cgroup/getsockname_unix cgroup/sysctl cgroup/getsockopt cgroup/setsockopt cgroup/dev struct_ops+ "
    "struct_ops.s+ sk_lookup netfilter"
)
LIBBPF_SECTIONS = tuple(_SECTION_DEFS.split())


def libbpf_knows(section: str) -> bool:
    """Whether libbpf (1.0 to 1.7) gives the section name a program type (libbpf_prog_type_by_name)."""
    for known in LIBBPF_SECTIONS:
        if known.endswith("+"):
            stem = known[:-1]
            if section == stem or section.startswith(stem + "/"):
                return True
        elif known.endswith("/"):
            if section.startswith(known):
                return True
        elif section == known:
            return True
    return False


class BadObject(UserError):
    """The file is not a usable BPF object; the message names the file and the problem, in one line
    (texts taken from the file, such as section names, are escaped and bounded)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(one_line(message, 0), hint)


class NoPrograms(BadObject):
    """A valid BPF object without programs (BTF or maps only, a library to link): skipped when
    a directory brought it in, an error when named."""


def one_line(text: str, limit: int = 80) -> str:
    """text with control characters escaped (compat.text.visible); past limit characters it is
    cut (limit 0: never)."""
    text = visible(text)
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

    @functools.cached_property
    def pt_regs(self) -> PtRegs | None:
        """The architecture whose struct pt_regs the object reads (from its BTF and CO-RE
        relocations, once per object), or None when it reads none or cannot tell."""
        return pt_regs_arch(self.data)

    @functools.cached_property
    def test_specs(self) -> ObjectSpecs:
        """The kernel selftest annotations of its programs (read once per object: the check
        request and the judge of every kernel's results both need them)."""
        from .expectations import read_specs

        return read_specs(self.data)


def read_objects(path: Path, max_bytes: int = MAX_OBJECT_BYTES) -> list[BpfObject]:
    """The BPF object a file is, or the BPF objects embedded in it (named `file:source.o`, after
    the C source each was built from); raise BadObject with a one-line reason when there is none."""
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
    try:
        with path.open("rb") as f:
            head = f.read(64)
            # Another machine's ELF file (a binary, a library): the objects it embeds are checked.
            binary = head[:4] == b"\x7fELF" and len(head) >= 20 and _machine(head) != EM_BPF
            limit, what = (MAX_BINARY_BYTES, "a binary") if binary else (max_bytes, "one object")
            if st.st_size > limit:
                raise BadObject(f"{label}: {st.st_size} bytes is more than the {limit >> 20} MiB limit for {what}")
            data = head + f.read()
    except OSError as e:
        raise BadObject(f"{label}: cannot read ({e.strerror})") from None
    if binary:
        return _embedded(path, data, max_bytes)
    programs = inspect_bytes(data, label)
    return [BpfObject(path, path.name, data, hashlib.sha256(data).hexdigest(), programs)]


MAX_DIRECTORY_FILES = 100_000  # files looked at under one directory argument


def objects_in(directory: Path) -> list[Path]:
    """The BPF object files under a directory (recursively, sorted; symbolic links not followed):
    the files whose ELF header says EM_BPF. Other files are skipped, binaries too (name a binary
    itself to have its embedded objects checked)."""
    found: list[Path] = []
    looked = 0
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            looked += 1
            if looked > MAX_DIRECTORY_FILES:
                raise BadObject(f"{directory}: more than {MAX_DIRECTORY_FILES} files under it; name a smaller one")
            path = Path(root, name)
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                with path.open("rb") as f:
                    head = f.read(20)
            except OSError:
                continue
            if head[:4] == b"\x7fELF" and len(head) == 20 and _machine(head) == EM_BPF:
                found.append(path)
    return found


def _machine(head: bytes) -> int:
    """e_machine of an ELF header, in the file's byte order."""
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def _embedded(path: Path, data: bytes, max_bytes: int) -> list[BpfObject]:
    found: dict[str, BpfObject] = {}
    refused: list[str] = []
    for offset, blob in carve(data, max_bytes):
        digest = hashlib.sha256(blob).hexdigest()
        if digest in found:
            continue  # the same object linked in twice
        stem = source_stem(blob) or f"{offset:#x}"
        name, n = f"{path.name}:{stem}.o", 1
        while any(o.name == name for o in found.values()):
            n += 1
            name = f"{path.name}:{stem}-{n}.o"
        try:
            programs = inspect_bytes(blob, name)
        except BadObject as e:
            refused.append(str(e))
            continue
        found[digest] = BpfObject(path, name, blob, digest, programs)
    if found:
        return list(found.values())
    if refused:
        raise BadObject(f"{path}: embeds no BPF object compat can check ({refused[0]})")
    try:
        machine = ELFFile(io.BytesIO(data))["e_machine"]
    except Exception:
        machine = "another machine"
    raise BadObject(
        f"{path}: an ELF file for {machine}, not a BPF object, and no BPF object is embedded in it "
        "(build with clang -target bpf)"
    )


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
        if not elf.little_endian or elf.elfclass != 64:
            # The guests (x86-64, arm64) are little-endian: libbpf loads only objects of its own byte order.
            order = "big-endian (clang -target bpfeb)" if not elf.little_endian else f"{elf.elfclass}-bit"
            raise BadObject(f"{label}: a {order} BPF object; the kernels are little-endian 64-bit: build with "
                            "clang -target bpf")
        programs = _programs(elf, data, label)
    except BadObject:
        raise
    except Exception as e:
        # pyelftools (and construct below it) raise many kinds of exceptions on malformed input.
        raise BadObject(f"{label}: malformed or truncated ELF ({e.__class__.__name__}: {one_line(str(e))})") from None
    if not programs:
        raise NoPrograms(f"{label}: no BPF programs in this object")
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
        if len(out) > MAX_PROGRAMS:  # the limit is inclusive: an object of exactly 4096 programs is checked
            raise BadObject(f"{label}: more than {MAX_PROGRAMS} programs")
    return tuple(out)
