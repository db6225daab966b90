"""A newc cpio reader for tests (the product only writes cpio)."""

from __future__ import annotations


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) for every entry of every concatenated archive in data."""
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while pos + 110 <= len(data):
        if data[pos : pos + 6] != b"070701":
            pos += 4  # padding between concatenated archives
            continue
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body_start = (name_start + namesize + 3) & ~3
        body = data[body_start : body_start + size]
        pos = (body_start + size + 3) & ~3
        if name != "TRAILER!!!":
            out[name] = (mode, body)
    return out
