"""Which kernel modules an object needs: the functions it names that live in modules.

A Debian kernel builds much as modules (ext4, xfs, nf_conntrack, nf_flow_table, tcp_bbr...). On
a real machine they are loaded when used; in a compat guest they are not, so an fentry program
on ext4_file_read_iter or a call to nf_flow_table's bpf_xdp_flow_lookup kfunc would look
impossible there. The host indexes every function each module of a kernel package defines
(their ELF symbol tables: static functions are fentry/kprobe targets too), once per kernel,
into an SQLite file in the cache; for each object it looks up the functions the object names
(kfunc and ksym externs, kprobe/fentry/fexit targets, tracepoints) and has the guest load the
modules that define them, dependencies first, before the object is checked.
"""

from __future__ import annotations

import re
import sqlite3
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from compat_agent.check import attach_target

from .cache import Cache
from .errors import InfraError
from .kernels import Kernel
from .kmod import module_files, read_module, resolve_modules

INDEX = "functions.sqlite"
INDEX_VERSION = 2  # in the cache key: a new layout is a new entry
SHT_SYMTAB, STT_FUNC = 2, 2
# Sections whose target is a kernel function, and those whose target is a tracepoint.
_FUNCTION_SECTIONS = re.compile(r"^(?:kprobe|kretprobe|fentry|fexit|fmod_ret)(?:\.s)?/")
_TRACEPOINT_SECTIONS = re.compile(r"^(?:tp_btf|raw_tp|raw_tracepoint)(?:\.w)?/|^(?:tp|tracepoint)/[^/]+/")


def functions(elf: bytes) -> set[str]:
    """The names of the functions an ELF file defines (its .symtab), empty for what is not ELF."""
    try:
        (shoff,) = struct.unpack_from("<Q", elf, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
        secs = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
        out = set()
        for sec in secs:
            if sec[1] != SHT_SYMTAB:
                continue
            strtab = secs[sec[6]]
            strs = elf[strtab[4] : strtab[4] + strtab[5]]
            for off in range(sec[4], sec[4] + sec[5] - 23, 24):
                st_name, st_info, _other, st_shndx = struct.unpack_from("<IBBH", elf, off)
                if st_info & 0xF == STT_FUNC and st_shndx != 0:
                    out.add(strs[st_name : strs.find(b"\0", st_name)].decode("utf-8", "replace"))
        return out
    except (struct.error, IndexError):
        return set()


def wanted_functions(sections: list[str], externs: list[dict]) -> set[str]:
    """The kernel functions an object names: kfunc and ksym externs, the functions its kprobe and
    fentry-like programs attach to (wildcards aside) and its tracepoints' __bpf_trace_* stubs."""
    out = {str(e.get("name")) for e in externs if e.get("kind") in ("kfunc", "ksym") and e.get("name")}
    for section in sections:
        target = attach_target(section)
        if not target:
            continue
        if _FUNCTION_SECTIONS.match(section):
            name = target.split("+", 1)[0]
        elif _TRACEPOINT_SECTIONS.match(section):
            name = "__bpf_trace_" + target.rsplit("/", 1)[-1]
        else:
            continue
        if name and not any(c in name for c in "*?"):
            out.add(name)
    return out


class ModuleIndex:
    """The functions of one kernel's modules, built on first use and cached per kernel."""

    def __init__(self, cache: Cache, kernel: Kernel):
        self.cache = cache
        self.kernel = kernel
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            assert self.kernel.modules is not None
            entry = self.cache.ensure("modsyms", f"{self.kernel.key}-v{INDEX_VERSION}", self._build)
            self._db = sqlite3.connect(f"file:{entry.path / INDEX}?mode=ro", uri=True, check_same_thread=False)
        return self._db

    def _build(self, dest: Path) -> dict:
        assert self.kernel.modules is not None
        files = module_files(self.kernel.modules)

        names = sorted(files)

        def one(i: int) -> list[tuple[str, int]]:
            return [(f, i) for f in functions(read_module(files[names[i]]))]

        db = sqlite3.connect(dest / INDEX)
        try:
            db.execute("CREATE TABLE modules (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            db.execute("CREATE TABLE functions (name TEXT NOT NULL, module INTEGER NOT NULL)")
            db.executemany("INSERT INTO modules VALUES (?, ?)", enumerate(names))
            with ThreadPoolExecutor(4) as pool:  # xz and zstd decompression release the GIL
                for rows in pool.map(one, range(len(names))):
                    db.executemany("INSERT INTO functions VALUES (?, ?)", rows)
            db.execute("CREATE INDEX by_name ON functions (name)")
            db.commit()
        finally:
            db.close()
        return {"kernel": self.kernel.release, "modules": len(files)}

    def owners(self, names: set[str]) -> dict[str, str]:
        """{function: module} for the named functions exactly one module defines (a static name
        in several modules says nothing about which one is meant)."""
        if not names or self.kernel.modules is None:
            return {}
        db = self._connect()
        out: dict[str, str] = {}
        for name in sorted(names):
            query = "SELECT m.name FROM functions f JOIN modules m ON m.id = f.module WHERE f.name = ?"
            rows = {m for (m,) in db.execute(query, (name,))}
            if len(rows) == 1:
                out[name] = rows.pop()
        return out

    def modules_for(self, names: set[str]) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
        """({function: module}, the modules to load, dependencies first, as (name, ELF bytes))."""
        owners = self.owners(names)
        if not owners:
            return {}, []
        try:
            return owners, resolve_modules(self.kernel.modules, sorted(set(owners.values())))
        except InfraError:
            return {}, []  # a module that cannot be resolved: checked without it, as before
