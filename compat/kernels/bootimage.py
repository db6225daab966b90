"""Boot kernels uncompressed: extract vmlinux from a bzImage and boot it through its PVH entry.

Under software emulation the kernel's own decompressor is slow: Debian's xz-compressed 5.10
and 6.1 images spend ~3 s decompressing before the kernel's clock even starts (measured:
4.9 s to a ready agent from the bzImage, 1.8 s from the extracted vmlinux). QEMU boots an ELF
vmlinux directly when it carries a PVH entry note (CONFIG_PVH, set in every Debian kernel),
so compat decompresses once on the host, caches the result, and falls back to the bzImage
for kernels without PVH or with a payload it cannot read.
"""

from __future__ import annotations

import io
import lzma
import struct
import zlib
from pathlib import Path

import zstandard
from elftools.elf.elffile import ELFFile

XEN_ELFNOTE_PHYS32_ENTRY = 18
MAX_VMLINUX = 512 << 20


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside an x86 bzImage, or None if the payload is not a format we read."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    start = (setup_sects + 1) * 512
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    payload = bzimage[start + offset : start + offset + length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            out = lzma.LZMADecompressor().decompress(payload, max_length=MAX_VMLINUX)
        elif payload.startswith(b"\x28\xb5\x2f\xfd"):
            out = zstandard.ZstdDecompressor().decompressobj().decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload, MAX_VMLINUX)
        elif payload.startswith(b"\x7fELF"):
            out = payload
        else:
            return None  # lz4, lzo, bzip2: boot the bzImage instead
    except (lzma.LZMAError, zstandard.ZstdError, zlib.error):
        return None
    return out if out.startswith(b"\x7fELF") else None


def has_pvh_entry(vmlinux: bytes) -> bool:
    """Whether an ELF vmlinux has the PVH entry note QEMU needs to boot it directly."""
    try:
        elf = ELFFile(io.BytesIO(vmlinux))
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_NOTE":
                continue
            for note in seg.iter_notes():
                if note["n_name"] == "Xen" and note["n_type"] in (XEN_ELFNOTE_PHYS32_ENTRY, "XEN_ELFNOTE_PHYS32_ENTRY"):
                    return True
    except Exception:  # a malformed ELF is simply not bootable this way
        return False
    return False


def build_boot_image(vmlinuz: Path, dest: Path) -> dict:
    """Write dest/vmlinux when the kernel can boot uncompressed; return what was decided."""
    vmlinux = extract_vmlinux(vmlinuz.read_bytes())
    if vmlinux is None:
        return {"pvh": False, "why": "payload not readable"}
    if not has_pvh_entry(vmlinux):
        return {"pvh": False, "why": "no PVH entry (CONFIG_PVH)"}
    (dest / "vmlinux").write_bytes(vmlinux)
    return {"pvh": True}


def build_arm64_image(vmlinuz: Path, dest: Path) -> dict:
    """Write dest/Image, the uncompressed arm64 kernel, when vmlinuz is a gzip-compressed Image
    (Debian's 5.10 and 6.1 arm64 packages); return what was decided ("image": dest/Image was
    written). qemu-system-aarch64 would inflate a gzip'd -kernel itself on every boot; done once
    here, every boot reads the Image as it is. An Image that is already uncompressed (6.12 and
    later ship one) is booted as it is: no copy."""
    from .imagearch import gunzip_image, head_arch

    data = vmlinuz.read_bytes()
    if head_arch(data[:0x40]) == "arm64":
        return {"image": False, "arch": "arm64", "why": "already an uncompressed Image"}
    image = gunzip_image(data)
    if image is None or head_arch(image[:0x40]) != "arm64":
        return {"image": False, "arch": "arm64", "why": "not a gzip'd arm64 Image"}
    (dest / "Image").write_bytes(image)
    return {"image": True, "arch": "arm64"}
