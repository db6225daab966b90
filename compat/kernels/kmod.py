"""Kernel modules the guest needs, with their dependencies, read from a modules tree.

Debian's packages ship no modules.dep, so dependencies come from each module's own
.modinfo "depends=" field (read with pyelftools). Compressed modules are decompressed on
the host because the guest's busybox insmod loads plain ELF only.
"""

from __future__ import annotations

import gzip
import io
import lzma
from collections.abc import Callable
from pathlib import Path

import zstandard

from compat.errors import InfraError

_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _module_name(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return _norm(name[: -len(suffix)])
    return _norm(name)


def module_files(moddir: Path) -> dict[str, Path]:
    """Every loadable module below moddir by normalized name (dashes as underscores)."""
    out: dict[str, Path] = {}
    for path in sorted(moddir.rglob("*.ko*")):
        if path.name.endswith(_SUFFIXES):
            out.setdefault(_module_name(path), path)
    return out


def builtin_modules(moddir: Path) -> set[str]:
    """Names of modules compiled into the kernel (modules.builtin)."""
    try:
        lines = (moddir / "modules.builtin").read_text().split()
    except OSError:
        return set()
    return {_module_name(Path(line)) for line in lines}


def read_module(path: Path) -> bytes:
    """A module's ELF bytes, decompressed."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def modinfo(elf: bytes) -> dict[str, str]:
    """The key=value pairs of a module's .modinfo section (last value wins)."""
    from elftools.common.exceptions import ELFError  # ~30 ms to import: only module archives need it
    from elftools.elf.elffile import ELFFile

    try:
        section = ELFFile(io.BytesIO(elf)).get_section_by_name(".modinfo")
    except ELFError as e:
        raise InfraError(f"kernel module is not a valid ELF file: {e}") from None
    if section is None:
        return {}
    out = {}
    for item in section.data().split(b"\0"):
        if b"=" in item:
            key, value = item.split(b"=", 1)
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def resolve_modules(
    moddir: Path | None,
    wanted: list[str],
    optional: bool = False,
    alias: Callable[[str], str | None] | None = None,
) -> list[tuple[str, bytes]]:
    """The modules to insmod, dependencies first, as (name, ELF bytes); built-ins are skipped.

    A wanted module that is neither built in nor present is an error only when the kernel has a
    modules tree and the module is not optional: a local kernel without a modules tree is
    assumed to have what it needs built in. With alias (a module alias -> module name lookup),
    "softdep=pre:" modules are loaded first too, when they can be found (libcrc32c needs the
    crc32c crypto module, which it asks for by alias at init: the guest has no modprobe).
    """
    if moddir is None:
        return []
    files = module_files(moddir)
    builtin = builtin_modules(moddir)
    order: list[tuple[str, bytes]] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        name = _norm(name)
        if name in done or name in builtin:
            return
        if name in visiting:
            raise InfraError(f"module dependency cycle through {name} in {moddir}")
        path = files.get(name)
        if path is None:
            raise InfraError(f"kernel module {name} is neither built in nor present in {moddir}")
        visiting.add(name)
        elf = read_module(path)
        info = modinfo(elf)
        if alias is not None:
            pre = info.get("softdep", "").split("post:")[0].replace("pre:", " ").split()
            for soft in pre:
                found = _norm(soft) if _norm(soft) in files or _norm(soft) in builtin else alias(soft)
                if found:
                    visit(found)
        for dep in filter(None, info.get("depends", "").split(",")):
            visit(dep)
        visiting.discard(name)
        done.add(name)
        order.append((name, elf))

    for name in wanted:
        if optional and _norm(name) not in files:
            continue
        visit(name)
    return order
