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
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from compat_agent.elf.reader import cstr, section_body, section_headers, section_names
from compat_agent.elf.sections import attach_target, first_match

from compat.cache import Cache
from compat.errors import InfraError

from .kmod import module_files, read_module, resolve_modules
from .sources import Kernel

INDEX = "functions.sqlite"
INDEX_VERSION = 3  # in the cache key: a new layout is a new entry
SHT_SYMTAB, STT_FUNC = 2, 2
# Sections whose target is a kernel function, and those whose target is a tracepoint.
_FUNCTION_SECTIONS = re.compile(r"^(?:kprobe|kretprobe|fentry|fexit|fmod_ret)(?:\.s)?/")
_TRACEPOINT_SECTIONS = re.compile(r"^(?:tp_btf|raw_tp|raw_tracepoint)(?:\.w)?/|^(?:tp|tracepoint)/[^/]+/")


def scan(elf: bytes) -> tuple[set[str], set[str]]:
    """(the functions a module defines (its .symtab), its plain aliases (.modinfo "alias=", device
    patterns aside)); empty for what is not ELF. Read by hand: pyelftools takes ~100x longer."""
    try:
        secs = section_headers(elf)
        funcs, aliases = set(), set()
        for sec, name in zip(secs, section_names(elf, secs), strict=True):
            body = section_body(elf, sec)
            if name == ".modinfo":
                for item in body.split(b"\0"):
                    if item.startswith(b"alias=") and not re.search(rb"[*?:\[]", item):
                        aliases.add(item[6:].decode("utf-8", "replace"))
            if sec[1] != SHT_SYMTAB:
                continue
            strs = section_body(elf, secs[sec[6]])
            for off in range(0, len(body) - 23, 24):
                st_name, st_info, _other, st_shndx = struct.unpack_from("<IBBH", body, off)
                if st_info & 0xF == STT_FUNC and st_shndx != 0:
                    funcs.add(cstr(strs, st_name))
        return funcs, aliases
    except (struct.error, IndexError):
        return set(), set()


def retargeted_section(program: str, section: str, rules: tuple[tuple[str, str], ...]) -> str:
    """The section a program would have with the attach target --attach-target gives it (the
    first rule whose glob matches its name or section), for finding the module that defines it."""
    target = first_match(program, section, list(rules))
    return f"{section.split('/', 1)[0]}/{target}" if target else section


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
        self._memo: dict[frozenset[str], tuple[dict[str, str], list[tuple[str, bytes]]]] = {}
        self._lock = threading.Lock()

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

        def one(i: int) -> tuple[int, set[str], set[str]]:
            return (i, *scan(read_module(files[names[i]])))

        db = sqlite3.connect(dest / INDEX)
        try:
            db.execute("CREATE TABLE modules (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            db.execute("CREATE TABLE functions (name TEXT NOT NULL, module INTEGER NOT NULL)")
            db.execute("CREATE TABLE aliases (name TEXT NOT NULL, module INTEGER NOT NULL)")
            db.executemany("INSERT INTO modules VALUES (?, ?)", enumerate(names))
            with ThreadPoolExecutor(4) as pool:  # xz and zstd decompression release the GIL
                for i, funcs, aliases in pool.map(one, range(len(names))):
                    db.executemany("INSERT INTO functions VALUES (?, ?)", ((f, i) for f in funcs))
                    db.executemany("INSERT INTO aliases VALUES (?, ?)", ((a, i) for a in aliases))
            db.execute("CREATE INDEX by_name ON functions (name)")
            db.execute("CREATE INDEX alias_by_name ON aliases (name)")
            db.commit()
        finally:
            db.close()
        return {"kernel": self.kernel.release, "modules": len(files)}

    def owners(self, names: set[str]) -> dict[str, str]:
        """{function: module} for the named functions exactly one module defines (a static name
        in several modules says nothing about which one is meant)."""
        if not names or self.kernel.modules is None:
            return {}
        out: dict[str, str] = {}
        for name in sorted(names):
            rows = self._owners("functions", name)
            if len(rows) == 1:
                out[name] = rows.pop()
        return out

    def _owners(self, table: str, name: str) -> set[str]:
        query = f"SELECT m.name FROM {table} t JOIN modules m ON m.id = t.module WHERE t.name = ?"
        return {m for (m,) in self._connect().execute(query, (name,))}

    def alias(self, name: str) -> str | None:
        """The module a module alias names, None if none: of several (crc32c: crc32c_generic and
        crc32c_intel), the generic one, which works on any CPU, else the first by name."""
        rows = sorted(self._owners("aliases", name), key=lambda m: (not m.endswith("_generic"), m))
        return rows[0] if rows else None

    def modules_for(self, names: set[str]) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
        """({function: module}, the modules to load, dependencies first, as (name, ELF bytes));
        kept per set of names, as every object of a tool names the same few (ext4.ko is 2.5 MB)."""
        key = frozenset(names)
        with self._lock:  # one kernel's guests (a helper's too) share the index and its connection
            if key not in self._memo:
                try:
                    owners = self.owners(names)
                    modules = resolve_modules(self.kernel.modules, sorted(set(owners.values())), alias=self.alias)
                except (InfraError, sqlite3.Error):
                    # A module that cannot be resolved, an index damaged in place: checked without it, as before.
                    owners, modules = {}, []
                self._memo[key] = (owners, modules)
            return self._memo[key]
