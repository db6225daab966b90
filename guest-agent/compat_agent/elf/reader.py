"""Reading 64-bit little-endian ELF files by hand: section headers and strings.

The guest image has no pyelftools, and the host runs these reads over thousands of files (a
kernel's modules), where pyelftools takes ~100x longer. Truncated or damaged input raises
struct.error or IndexError: callers decide what that means.
"""

from __future__ import annotations

import struct
from typing import Any

# Elf64_Shdr: name, type, flags, addr, offset, size, link, info, addralign, entsize
SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")


def is_elf64le(data: bytes) -> bool:
    """Whether data starts like a 64-bit little-endian ELF file."""
    return data[:4] == b"\x7fELF" and len(data) > 5 and data[4] == 2 and data[5] == 1


def cstr(blob: bytes, off: int) -> str:
    """The NUL-terminated string at off in a string table ("" when off is outside it)."""
    if not 0 <= off < len(blob):
        return ""
    end = blob.find(b"\0", off)
    return blob[off : end if end >= 0 else len(blob)].decode("utf-8", "replace")


def section_headers(data: bytes) -> list[tuple[Any, ...]]:
    """Every section header of the file, as SECTION_HEADER tuples."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    return [SECTION_HEADER.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]


def section_body(data: bytes, sec: tuple[Any, ...]) -> bytes:
    """A section's bytes in the file."""
    return data[sec[4] : sec[4] + sec[5]]


def section_names(data: bytes, secs: list[tuple[Any, ...]]) -> list[str]:
    """The name of each section (from the section header string table)."""
    (shstrndx,) = struct.unpack_from("<H", data, 0x3E)
    shstr = section_body(data, secs[shstrndx])
    return [cstr(shstr, s[0]) for s in secs]
