"""A writer for the newc cpio format the kernel unpacks as an initramfs.

Written by hand because it is ~50 lines and needs full control: entries are emitted in a
fixed order with zero timestamps and root ownership so identical inputs give identical bytes,
and parent directories come before their children (the kernel creates no missing parents).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_TRAILER = "TRAILER!!!"


class CpioWriter:
    """Append files, directories and symlinks to a newc archive."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.ino = 1
        self.dirs: set[str] = set()

    def _header(self, name: str, mode: int, size: int, nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(encoded), 0]
        self.ino += 1
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self._pad()

    def _pad(self) -> None:
        pos = self.out.tell()
        if pos % 4:
            self.out.write(b"\0" * (4 - pos % 4))

    def mkdir(self, name: str, mode: int = 0o755) -> None:
        """Add a directory (and its missing parents)."""
        name = name.strip("/")
        if not name or name in self.dirs:
            return
        parent = os.path.dirname(name)
        if parent:
            self.mkdir(parent)
        self._header(name, stat.S_IFDIR | mode, 0, nlink=2)
        self.dirs.add(name)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        self.mkdir(os.path.dirname(name))
        self._header(name, stat.S_IFREG | mode, len(data))
        self.out.write(data)
        self._pad()

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        self.mkdir(os.path.dirname(name))
        data = target.encode()
        self._header(name, stat.S_IFLNK | 0o777, len(data))
        self.out.write(data)
        self._pad()

    def tree(self, root: Path, prefix: str = "") -> None:
        """Add everything below root (sorted), under prefix."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            base = prefix.strip("/") if rel_dir == "." else os.path.join(prefix.strip("/"), rel_dir)
            self.mkdir(base)
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if os.path.islink(full):
                    self.symlink(os.path.join(base, d), os.readlink(full))
            for f in sorted(filenames):
                full = os.path.join(dirpath, f)
                name = os.path.join(base, f)
                if os.path.islink(full):
                    self.symlink(name, os.readlink(full))
                else:
                    st = os.stat(full)
                    self.file(name, Path(full).read_bytes(), stat.S_IMODE(st.st_mode))

    def close(self) -> None:
        """Write the trailer; the archive is then complete."""
        self._header(_TRAILER, 0, 0, nlink=1)
