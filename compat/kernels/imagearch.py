"""The architecture of a kernel image, read from the image itself (never guessed from a name).

- an x86 bzImage (Debian's amd64 vmlinuz): the setup header's "HdrS" magic at 0x202;
- an arm64 ``Image``: the magic "ARM\\x64" at 0x38 of its 64-byte header;
- a gzip-compressed arm64 Image (Debian's arm64 vmlinuz is ``Image.gz``): the same header once
  the first bytes are decompressed (only the head is read: no need to inflate 30 MB);
- an ELF vmlinux: its e_machine (EM_X86_64 62, EM_AARCH64 183).
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

from compat.arch import by_machine

ARM64_MAGIC = b"ARM\x64"
ARM64_MAGIC_OFFSET = 0x38
HEAD = 0x4000  # bytes read of an image: every header above lies within them
MAX_IMAGE = 512 << 20  # an uncompressed arm64 Image is ~30-70 MB
_LINUX_VERSION = re.compile(rb"Linux version (\S+) \(")


def head_arch(head: bytes) -> str | None:
    """The architecture of an uncompressed kernel image from its first bytes, or None."""
    if len(head) >= 0x206 and head[0x1FE:0x200] == b"\x55\xaa" and head[0x202:0x206] == b"HdrS":
        return "amd64"
    if len(head) >= 0x40 and head[ARM64_MAGIC_OFFSET : ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC:
        return "arm64"
    if len(head) >= 20 and head[:4] == b"\x7fELF":
        endian = "<" if head[5] == 1 else ">"
        (machine,) = struct.unpack_from(f"{endian}H", head, 18)
        found = by_machine(machine)
        return found.name if found else None
    return None


def _gunzip_head(data: bytes, size: int = HEAD) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, size)
    except zlib.error:
        return b""


def image_arch(path: Path) -> str | None:
    """The architecture (amd64, arm64) of a kernel image file, or None if it is none compat
    boots (or cannot be read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD)
    except OSError:
        return None
    if head[:2] == b"\x1f\x8b":
        head = _gunzip_head(head)
    return head_arch(head)


def gunzip_image(data: bytes) -> bytes | None:
    """A gzip-compressed kernel image (arm64's vmlinuz) decompressed, bounded; None when the data
    is not gzip or not a whole stream."""
    if data[:2] != b"\x1f\x8b":
        return None
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_IMAGE)
    except zlib.error:
        return None
    return out if d.eof else None


def arm64_release(image: bytes) -> str | None:
    """The release (uname -r) in an uncompressed arm64 Image: its "Linux version X (" banner
    (an arm64 Image has no header field for it, unlike the bzImage)."""
    m = _LINUX_VERSION.search(image)
    return m.group(1).decode("ascii", "replace") if m else None
