"""The kernel's BPF programs and maps, walked by id (BPF_PROG_GET_NEXT_ID, BPF_MAP_GET_NEXT_ID,
then an fd by id and BPF_OBJ_GET_INFO_BY_FD), with raw bpf(2) calls: what any loader left in the
kernel, whichever library it used.

The info structs are read at the offsets of the uapi (linux/bpf.h); a kernel older than a field
writes a shorter info_len back, and the field is then unknown (verified_insns: 5.16).
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

SYS_BPF = {"x86_64": 321, "aarch64": 280}
BPF_PROG_GET_NEXT_ID, BPF_MAP_GET_NEXT_ID = 11, 12
BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID = 13, 14
BPF_OBJ_GET_INFO_BY_FD = 15
PROG_INFO_SIZE = 232  # sizeof(struct bpf_prog_info) in the uapi this was written against
MAP_INFO_SIZE = 88
VERIFIED_INSNS_OFFSET = 216  # struct bpf_prog_info.verified_insns (Linux 5.16)
IDS_MAX = 65536  # a loader that creates more is bounded here: the reply's lists are too
ATTR_SIZE = 64  # the bytes of union bpf_attr passed: these commands use the first 16, the rest zero


@dataclass
class Seen:
    """A program or map: its id, kernel name, type (libbpf's name, or the number) and details."""

    id: int
    kind: str  # "prog" or "map"
    name: str
    type: str
    verified_insns: int | None = None
    key_size: int | None = None
    value_size: int | None = None
    max_entries: int | None = None


class BpfIds:
    """The bpf(2) calls of the walk (one libc handle, one attr buffer)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.nr = SYS_BPF.get(os.uname().machine, 321)
        self.attr = ctypes.create_string_buffer(ATTR_SIZE)

    def _bpf(self, cmd: int, attr: bytes) -> int:
        ctypes.memmove(self.attr, attr + bytes(ATTR_SIZE - len(attr)), ATTR_SIZE)
        return int(self.libc.syscall(self.nr, cmd, self.attr, ctypes.c_uint(ATTR_SIZE)))

    def ids(self, kind: str) -> list[int]:
        """Every id of a kind the kernel holds now, ascending (bounded by IDS_MAX)."""
        cmd = BPF_PROG_GET_NEXT_ID if kind == "prog" else BPF_MAP_GET_NEXT_ID
        out: list[int] = []
        current = 0
        while len(out) < IDS_MAX:
            if self._bpf(cmd, struct.pack("<II", current, 0)) < 0:
                break  # ENOENT: no more
            current = struct.unpack_from("<I", self.attr.raw, 4)[0]
            out.append(current)
        return out

    def info(self, kind: str, ident: int) -> Seen | None:
        """What the kernel says about one program or map (None: it went away meanwhile)."""
        cmd = BPF_PROG_GET_FD_BY_ID if kind == "prog" else BPF_MAP_GET_FD_BY_ID
        fd = self._bpf(cmd, struct.pack("<III", ident, 0, 0))
        if fd < 0:
            return None
        try:
            size = PROG_INFO_SIZE if kind == "prog" else MAP_INFO_SIZE
            buf = ctypes.create_string_buffer(size)
            if self._bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, size, ctypes.addressof(buf))) < 0:
                return None
            written = struct.unpack_from("<I", self.attr.raw, 4)[0]  # info_len: what this kernel knows
            raw = buf.raw
        finally:
            os.close(fd)
        if kind == "prog":
            ptype, pid = struct.unpack_from("<II", raw, 0)
            name = raw[64:80].split(b"\0", 1)[0].decode("utf-8", "replace")
            known = written >= VERIFIED_INSNS_OFFSET + 4
            verified = struct.unpack_from("<I", raw, VERIFIED_INSNS_OFFSET)[0] if known else None
            return Seen(pid, "prog", name, _type_name("prog", ptype), verified_insns=verified)
        mtype, mid, key, value, entries = struct.unpack_from("<IIIII", raw, 0)
        name = raw[24:40].split(b"\0", 1)[0].decode("utf-8", "replace")
        return Seen(mid, "map", name, _type_name("map", mtype), key_size=key, value_size=value, max_entries=entries)


def _type_name(kind: str, number: int) -> str:
    """libbpf's name of a program or map type ("xdp", "hash"), else the number as text."""
    try:
        from compat_agent.bpf import libbpf as lb

        name = lb.prog_type_str(number) if kind == "prog" else lb.map_type_str(number)
    except (OSError, AttributeError):
        name = None
    return name or str(number)


class Walker:
    """Every program and map that appeared after the walker was made: call walk() while the
    command runs and once at its end; seen[kind][id] keeps each, present[kind] the ids of the
    last walk."""

    def __init__(self) -> None:
        self.calls = BpfIds()
        self.before = {kind: set(self.calls.ids(kind)) for kind in ("prog", "map")}
        self.seen: dict[str, dict[int, Seen]] = {"prog": {}, "map": {}}
        self.present: dict[str, set[int]] = {"prog": set(), "map": set()}

    def walk(self) -> None:
        """One walk over the kernel's ids (info fetched once per new id)."""
        for kind in ("prog", "map"):
            now = set(self.calls.ids(kind)) - self.before[kind]
            for ident in sorted(now - set(self.seen[kind])):
                if len(self.seen[kind]) >= IDS_MAX:
                    break
                found = self.calls.info(kind, ident)
                if found is not None:
                    self.seen[kind][ident] = found
            self.present[kind] = now
