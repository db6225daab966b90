"""The kernel's BTF, parsed once per guest instead of once per bpf_object__load.

libbpf parses /sys/kernel/btf/vmlinux (4-6 MB, 80-120 k types: 50-100 ms under emulation) in
every load that needs it (CO-RE relocations, kfuncs, typed ksyms, fentry/lsm/struct_ops targets)
and frees it when the load ends, and a check may load an object several times. The kernel's BTF
cannot change while the guest runs, so the agent parses it once (before the host snapshots the
guest) and lends libbpf that copy: libbpf calls btf__load_vmlinux_btf and btf__free through its
GOT, whose two entries are pointed at callbacks that hand out the one copy and keep it when
libbpf frees it. libbpf only reads the kernel's BTF (a module's split BTF is parsed on top of it
and freed as usual), so every other step of a load stays libbpf's own. A libbpf whose GOT has no
such entries (built another way) keeps parsing the BTF itself: slower, not different.
"""

from __future__ import annotations

import ctypes
import os
import struct

from compat_agent.elf.reader import cstr, is_elf64le, section_body, section_headers

from . import libbpf as lb

SHT_RELA, SHT_DYNSYM = 4, 11
# The relocations through which a library calls its own exported functions (GLOB_DAT, JUMP_SLOT),
# by its ELF machine: x86-64's are 6 and 7, arm64's 1025 and 1026 (with x86-64's numbers an arm64
# libbpf has no such entries, and every load re-parsed the kernel's BTF: CO-RE objects checked
# 3-6x slower on arm64 guests than on amd64 ones).
EM_X86_64, EM_AARCH64 = 62, 183
GOT_RELOCATIONS = {EM_X86_64: (6, 7), EM_AARCH64: (1025, 1026)}
PROT = {"r": 1, "w": 2, "x": 4}
RTLD_DI_LINKMAP = 2
LOAD, FREE = "btf__load_vmlinux_btf", "btf__free"

_LOAD_FN = ctypes.CFUNCTYPE(ctypes.c_void_p)
_FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Shared:
    btf = 0  # the parsed kernel BTF libbpf is lent, 0 before install()
    status = "not installed"
    hooks: tuple = ()  # the callbacks: referenced here so that they outlive the GOT entries


def got_slots(path: str, names: set[str]) -> dict[str, list[int]]:
    """{name: [GOT entry offsets from the load base]} through which the library at path calls
    the named functions of its own (JUMP_SLOT and GLOB_DAT relocations against .dynsym)."""
    with open(path, "rb") as f:
        data = f.read()
    if not is_elf64le(data):
        return {}
    (machine,) = struct.unpack_from("<H", data, 18)
    got_types = GOT_RELOCATIONS.get(machine, ())
    secs = section_headers(data)
    out: dict[str, list[int]] = {}
    for sec in secs:
        link = sec[6]
        if sec[1] != SHT_RELA or not link < len(secs) or secs[link][1] != SHT_DYNSYM:
            continue
        symtab = secs[link]
        strs = section_body(data, secs[symtab[6]])
        rela = section_body(data, sec)
        for pos in range(0, len(rela) - 23, 24):
            r_offset, r_info, _addend = struct.unpack_from("<QQq", rela, pos)
            if r_info & 0xFFFFFFFF not in got_types:
                continue
            (st_name,) = struct.unpack_from("<I", data, symtab[4] + (r_info >> 32) * 24)
            name = cstr(strs, st_name)
            if name in names:
                out.setdefault(name, []).append(r_offset)
    return out


def _link_map(handle: int) -> tuple[int, str]:
    """(load base, path) of a dlopen()ed library (struct link_map's l_addr and l_name)."""
    libc = lb.lib().libc
    lm = ctypes.c_void_p()
    if libc.dlinfo(ctypes.c_void_p(handle), RTLD_DI_LINKMAP, ctypes.byref(lm)) != 0 or not lm.value:
        raise OSError("dlinfo failed")
    base = ctypes.c_size_t.from_address(lm.value).value
    name = ctypes.c_char_p.from_address(lm.value + ctypes.sizeof(ctypes.c_void_p)).value or b""
    return base, name.decode()


def _protection(addr: int) -> int:
    """The current protection of the mapping that holds addr (from /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if start <= addr < end:
                return sum(PROT.get(c, 0) for c in perms[:3])
    raise OSError(f"address {addr:#x} is not mapped")


def _write_pointer(addr: int, value: int) -> None:
    """Store a pointer in a (RELRO, read-only) GOT entry, restoring the page's protection."""
    libc = lb.lib().libc
    page = os.sysconf("SC_PAGE_SIZE")
    start = addr & ~(page - 1)
    length = addr + ctypes.sizeof(ctypes.c_void_p) - start
    prot = _protection(addr)
    mprotect = libc.mprotect
    mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if mprotect(start, length, prot | PROT["w"]) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")
    ctypes.c_void_p.from_address(addr).value = value
    mprotect(start, length, prot)


def install() -> str:
    """Parse the kernel's BTF now and lend it to every later libbpf load; says what happened.

    Idempotent; never raises: on any failure libbpf keeps parsing the BTF itself."""
    if _Shared.btf:
        return _Shared.status
    lib = lb.lib()
    try:
        base, path = _link_map(lib.so._handle)
        slots = got_slots(path, {LOAD, FREE})
        if not slots.get(LOAD) or not slots.get(FREE):
            _Shared.status = f"not installed: {os.path.basename(path)} does not call {LOAD} through its GOT"
            return _Shared.status
        with lb.capture():
            btf = lib.btf__load_vmlinux_btf()
        if not btf:
            _Shared.status = "not installed: the kernel has no BTF"
            return _Shared.status
        real_free = lib.btf__free  # dlsym's address: the library's own function, not its GOT entry

        def load_hook() -> int:
            return btf

        def free_hook(ptr: int | None) -> None:
            if ptr and ptr != btf:
                real_free(ptr)

        hooks = (_FREE_FN(free_hook), _LOAD_FN(load_hook))
        _Shared.hooks = hooks
        # btf__free first: a failure before the last btf__load_vmlinux_btf entry then leaves
        # libbpf parsing (some of) its own copies, never freeing the shared one.
        for name, hook in zip((FREE, LOAD), hooks, strict=True):
            for offset in slots[name]:
                _write_pointer(base + offset, ctypes.cast(hook, ctypes.c_void_p).value or 0)
        _Shared.btf, _Shared.status = btf, "installed"
    except (OSError, ValueError, struct.error, IndexError, AttributeError) as e:
        _Shared.status = f"not installed: {e}"
    return _Shared.status


def vmlinux() -> lb.Btf:
    """The kernel's BTF: the shared copy (its free() keeps it), or a copy of its own when libbpf
    cannot be lent one."""
    if install() == "installed":
        return lb.Btf(_Shared.btf, borrowed=True)
    return lb.Btf.vmlinux()
