"""BPF objects embedded in ordinary binaries, found by their ELF header.

Many tools ship their BPF objects inside their own executable: a libbpf skeleton (bpftool gen
skeleton) keeps the whole object as a byte array, Go's bpf2go embeds the object file as it is.
Such an object is an ELF file of its own at some offset of the binary. An ELF file has no size
field, so each candidate is measured from its header (it ends with its section header table or
its last section, whichever is further) and kept only when pyelftools reads every section
header of the cut-out bytes. Only 64-bit little-endian BPF objects are looked for: bpf2go's
big-endian twins are for other machines.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator

from elftools.elf.elffile import ELFFile

EM_BPF = 247
ELF_MAGIC = b"\x7fELF"
ELF64_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, little-endian
SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
SHT_NOBITS = 8
# A C file name among the object's BTF/DWARF strings tells which source it was built from.
SOURCE_NAME = re.compile(rb"([A-Za-z0-9_][A-Za-z0-9_.-]*)\.c\x00")


def is_bpf_elf(data: bytes, off: int = 0) -> bool:
    """Whether a 64-bit little-endian BPF ELF header starts at off."""
    hdr = _header(data, off)
    return hdr is not None and hdr[2] == EM_BPF


def carve(data: bytes, max_size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of every BPF ELF object of at most max_size bytes embedded in data (a
    binary whose own header, at offset 0, is not looked at)."""
    start = 1
    while (off := data.find(ELF_MAGIC, start)) >= 0:
        start = off + 1
        size = _object_size(data, off, max_size)
        if size is None:
            continue
        blob = data[off : off + size]
        try:
            for section in ELFFile(io.BytesIO(blob)).iter_sections():  # forces every header to parse
                section.name  # noqa: B018
        except Exception:
            continue  # pyelftools raises many kinds: a stray magic number, not an object
        yield off, blob
        start = off + size


def source_stem(blob: bytes) -> str | None:
    """The name of the one C source the object was built from (xdp_basic for xdp_basic.bpf.c),
    from its BTF/DWARF strings; None when it names none or several."""
    stems = {m.group(1).decode().removesuffix(".bpf") for m in SOURCE_NAME.finditer(blob)}
    return stems.pop() if len(stems) == 1 else None


def _header(data: bytes, off: int) -> tuple | None:
    if off + ELF64_HEADER.size > len(data):
        return None
    hdr = ELF64_HEADER.unpack_from(data, off)
    ident = hdr[0]
    if ident[:4] != ELF_MAGIC or ident[4] != 2 or ident[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        return None
    return hdr


def _object_size(data: bytes, off: int, max_size: int) -> int | None:
    hdr = _header(data, off)
    if hdr is None or hdr[2] != EM_BPF:
        return None
    shoff, shentsize, shnum = hdr[6], hdr[11], hdr[12]
    if shentsize != SECTION_HEADER.size or not 0 < shnum < 1 << 16:
        return None
    limit = min(len(data) - off, max_size)
    end = shoff + shnum * shentsize
    if end > limit:
        return None
    for i in range(shnum):
        sh = SECTION_HEADER.unpack_from(data, off + shoff + i * shentsize)
        if sh[1] != SHT_NOBITS:  # SHT_NOBITS occupies no bytes in the file
            end = max(end, sh[4] + sh[5])
    return end if end <= limit else None
