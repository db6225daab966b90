"""ctypes bindings to libbpf: only what the agent needs, with typed signatures.

Errors become LibbpfError, carrying the errno and the messages libbpf printed meanwhile
(captured through libbpf_set_print, formatted with libc's vsnprintf). The library is loaded
on first use, never at import: the host imports this package too (the image build traces
the agent's imports) and must not touch its own libbpf or kernel.

Every call that could load something into a kernel is meant to run inside the guest VM only.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

LIBBPF_SONAME = "libbpf.so.1"

# enum libbpf_print_level
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

# BTF kinds (include/uapi/linux/btf.h)
BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_FUNC, BTF_KIND_DECL_TAG = 1, 6, 12, 17

# Program types the agent needs by number (enum bpf_prog_type is append-only).
PROG_TYPE = {
    "socket_filter": 1,
    "kprobe": 2,
    "sched_cls": 3,
    "xdp": 6,
    "cgroup_sock_addr": 18,
    "lirc_mode2": 20,
    "cgroup_sockopt": 25,
    "tracing": 26,
    "struct_ops": 27,
    "ext": 28,
    "lsm": 29,
    "sk_lookup": 30,
    "syscall": 31,
    "netfilter": 32,
}
# enum bpf_attach_type values the agent needs.
ATTACH_TYPE = {
    "cgroup_inet4_connect": 10,
    "sk_msg_verdict": 7,
    "lirc_mode2": 16,
    "cgroup_getsockopt": 21,
    "trace_fentry": 24,
    "lsm_mac": 27,
    "xdp_devmap": 33,
    "xdp_cpumap": 35,
    "sk_lookup": 36,
    "lsm_cgroup": 43,
    "netfilter": 45,
    "tcx_ingress": 46,
    "tcx_egress": 47,
    "xdp": 37,
}
BPF_F_SLEEPABLE = 1 << 4
BPF_TC_INGRESS, BPF_TC_EGRESS = 1, 2
BPF_MAP_TYPE_SOCKMAP = 15


class LibbpfError(Exception):
    """A libbpf call failed: errno, plus what libbpf printed while it ran."""

    def __init__(self, call: str, errno: int, messages: list[str] | None = None):
        self.call = call
        self.errno = abs(errno) if errno else 0
        self.messages = list(messages or [])
        super().__init__(f"{call}: {self.strerror}" + (f" ({self.messages[-1]})" if self.messages else ""))

    @property
    def strerror(self) -> str:
        """The errno in words (libbpf's own codes 4000+ included)."""
        return errno_text(self.errno)

    @property
    def message(self) -> str:
        """The most telling line: libbpf's last warning, else the errno in words."""
        return self.messages[-1] if self.messages else f"{self.call}: {self.strerror}"


# libbpf's private error codes (enum libbpf_errno), which strerror does not know.
_LIBBPF_ERRNO = {
    4000: "Something wrong in libelf",
    4001: "BPF object format invalid",
    4002: "'version' section incorrect or lost",
    4003: "Endian mismatch",
    4004: "Internal error in libbpf",
    4005: "Relocation failed",
    4006: "Kernel verifier blocks program loading",
    4007: "Program too big",
    4008: "Incorrect kernel version",
    4009: "Kernel doesn't support this program type",
    4010: "Wrong pid in netlink message",
    4011: "Invalid netlink sequence",
    4012: "Failed to parse netlink message",
}


def errno_text(errno: int) -> str:
    """strerror, extended with libbpf's own error codes."""
    errno = abs(errno)
    return _LIBBPF_ERRNO.get(errno) or os.strerror(errno)


# -- C structures ------------------------------------------------------------------------------
class ObjectOpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts, up to kconfig (libbpf accepts a shorter sz)."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
    )


class MapCreateOpts(ctypes.Structure):
    """struct bpf_map_create_opts, up to map_flags (libbpf accepts a shorter sz)."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
    )


class ProgLoadOpts(ctypes.Structure):
    """struct bpf_prog_load_opts, up to log_buf (stable since libbpf 1.0)."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_int),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.POINTER(ctypes.c_int)),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_char_p),
    )


class TcHook(ctypes.Structure):
    """struct bpf_tc_hook."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
    )


class TcOpts(ctypes.Structure):
    """struct bpf_tc_opts."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
    )


class NetfilterOpts(ctypes.Structure):
    """struct bpf_netfilter_opts (libbpf >= 1.3)."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("pf", ctypes.c_uint32),
        ("hooknum", ctypes.c_uint32),
        ("priority", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    )


class UprobeOpts(ctypes.Structure):
    """struct bpf_uprobe_opts (libbpf >= 1.0), up to attach_mode."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("ref_ctr_offset", ctypes.c_size_t),
        ("bpf_cookie", ctypes.c_uint64),
        ("retprobe", ctypes.c_bool),
        ("func_name", ctypes.c_char_p),
        ("attach_mode", ctypes.c_int),
    )


class BtfInfo(ctypes.Structure):
    """struct bpf_btf_info (uapi)."""

    _fields_ = (
        ("btf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("name", ctypes.c_uint64),
        ("name_len", ctypes.c_uint32),
        ("kernel_btf", ctypes.c_uint32),
    )


PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_P = ctypes.c_void_p
_S = ctypes.c_char_p
_I = ctypes.c_int
_U32 = ctypes.c_uint32
_SZ = ctypes.c_size_t
_B = ctypes.c_bool
# name: (restype, argtypes). Pointers to libbpf's opaque structs are plain void pointers.
_SIGNATURES: dict[str, tuple[object, tuple]] = {
    "libbpf_major_version": (_U32, ()),
    "libbpf_minor_version": (_U32, ()),
    "libbpf_set_print": (_P, (PRINT_FN,)),
    "libbpf_bpf_prog_type_str": (_S, (_I,)),
    "libbpf_bpf_map_type_str": (_S, (_I,)),
    "libbpf_bpf_attach_type_str": (_S, (_I,)),
    "libbpf_prog_type_by_name": (_I, (_S, ctypes.POINTER(_I), ctypes.POINTER(_I))),
    "libbpf_probe_bpf_prog_type": (_I, (_I, _P)),
    "libbpf_probe_bpf_map_type": (_I, (_I, _P)),
    "libbpf_probe_bpf_helper": (_I, (_I, _I, _P)),
    "bpf_object__open_mem": (_P, (_P, _SZ, ctypes.POINTER(ObjectOpenOpts))),
    "bpf_object__load": (_I, (_P,)),
    "bpf_object__close": (None, (_P,)),
    "bpf_object__next_program": (_P, (_P, _P)),
    "bpf_object__next_map": (_P, (_P, _P)),
    "bpf_program__name": (_S, (_P,)),
    "bpf_program__section_name": (_S, (_P,)),
    "bpf_program__type": (_I, (_P,)),
    "bpf_program__expected_attach_type": (_I, (_P,)),
    "bpf_program__autoload": (_B, (_P,)),
    "bpf_program__set_autoload": (_I, (_P, _B)),
    "bpf_program__flags": (_U32, (_P,)),
    "bpf_program__set_flags": (_I, (_P, _U32)),
    "bpf_program__set_type": (_I, (_P, _I)),
    "bpf_program__set_expected_attach_type": (_I, (_P, _I)),
    "bpf_program__set_attach_target": (_I, (_P, _I, _S)),
    "bpf_program__set_log_level": (_I, (_P, _U32)),
    "bpf_program__set_log_buf": (_I, (_P, _P, _SZ)),
    "bpf_program__insns": (_P, (_P,)),
    "bpf_program__insn_cnt": (_SZ, (_P,)),
    "bpf_program__fd": (_I, (_P,)),
    "bpf_program__attach": (_P, (_P,)),
    "bpf_program__attach_cgroup": (_P, (_P, _I)),
    "bpf_program__attach_kprobe": (_P, (_P, _B, _S)),
    "bpf_program__attach_perf_event": (_P, (_P, _I)),
    "bpf_program__attach_uprobe_opts": (_P, (_P, _I, _S, _SZ, _P)),
    "bpf_program__attach_uprobe_multi": (_P, (_P, _I, _S, _S, _P)),
    "bpf_program__attach_usdt": (_P, (_P, _I, _S, _S, _S, _P)),
    "bpf_program__attach_kprobe_multi_opts": (_P, (_P, _S, _P)),
    "bpf_program__attach_raw_tracepoint": (_P, (_P, _S)),
    "bpf_program__attach_tracepoint": (_P, (_P, _S, _S)),
    "bpf_program__attach_xdp": (_P, (_P, _I)),
    "bpf_program__attach_netns": (_P, (_P, _I)),
    "bpf_program__attach_tcx": (_P, (_P, _I, _P)),
    "bpf_program__attach_netfilter": (_P, (_P, ctypes.POINTER(NetfilterOpts))),
    "bpf_map__name": (_S, (_P,)),
    "bpf_map__type": (_I, (_P,)),
    "bpf_map__fd": (_I, (_P,)),
    "bpf_map__set_autocreate": (_I, (_P, _B)),
    "bpf_map__autocreate": (_B, (_P,)),
    "bpf_map__max_entries": (_U32, (_P,)),
    "bpf_map__inner_map": (_P, (_P,)),
    "bpf_map__set_max_entries": (_I, (_P, _U32)),
    "bpf_map__set_inner_map_fd": (_I, (_P, _I)),
    "bpf_map__value_size": (_U32, (_P,)),
    "bpf_map__set_value_size": (_I, (_P, _U32)),
    "bpf_map__pin_path": (_S, (_P,)),
    "bpf_map__initial_value": (_P, (_P, ctypes.POINTER(_SZ))),
    "bpf_object__find_map_by_name": (_P, (_P, _S)),
    "bpf_map__set_pin_path": (_I, (_P, _S)),
    "bpf_map__attach_struct_ops": (_P, (_P,)),
    "bpf_link__destroy": (_I, (_P,)),
    "bpf_tc_hook_create": (_I, (ctypes.POINTER(TcHook),)),
    "bpf_tc_hook_destroy": (_I, (ctypes.POINTER(TcHook),)),
    "bpf_tc_attach": (_I, (ctypes.POINTER(TcHook), ctypes.POINTER(TcOpts))),
    "bpf_tc_detach": (_I, (ctypes.POINTER(TcHook), ctypes.POINTER(TcOpts))),
    "bpf_prog_load": (_I, (_I, _S, _S, _P, _SZ, ctypes.POINTER(ProgLoadOpts))),
    "bpf_prog_attach": (_I, (_I, _I, _I, _U32)),
    "bpf_link_create": (_I, (_I, _I, _I, _P)),
    "bpf_prog_detach2": (_I, (_I, _I, _I)),
    "bpf_raw_tracepoint_open": (_I, (_S, _I)),
    "bpf_map_create": (_I, (_I, _S, _U32, _U32, _U32, _P)),
    "bpf_btf_get_next_id": (_I, (_U32, ctypes.POINTER(_U32))),
    "bpf_btf_get_fd_by_id": (_I, (_U32,)),
    "bpf_btf_get_info_by_fd": (_I, (_I, ctypes.POINTER(BtfInfo), ctypes.POINTER(_U32))),
    "btf__load_vmlinux_btf": (_P, ()),
    "btf__parse_split": (_P, (_S, _P)),
    "btf__free": (None, (_P,)),
    "btf__type_cnt": (_U32, (_P,)),
    "btf__type_by_id": (_P, (_P, _U32)),
    "btf__name_by_offset": (_S, (_P, _U32)),
    "btf__find_by_name_kind": (_I, (_P, _S, _U32)),
    "btf__raw_data": (_P, (_P, ctypes.POINTER(_U32))),
}


class _Lib:
    """The loaded library with every signature set; one per process."""

    def __init__(self) -> None:
        self.so = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.libc.vsnprintf.restype = _I
        self.libc.vsnprintf.argtypes = (ctypes.c_char_p, _SZ, ctypes.c_char_p, _P)
        self.missing: set[str] = set()
        for name, (restype, argtypes) in _SIGNATURES.items():
            try:
                fn = getattr(self.so, name)
            except AttributeError:
                self.missing.add(name)  # older libbpf: callers check has()
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        self.version = f"{self.so.libbpf_major_version()}.{self.so.libbpf_minor_version()}"
        self._fmt_buf = ctypes.create_string_buffer(_PRINT_BUF)
        self._printer = PRINT_FN(self._print)  # keep a reference: libbpf holds the pointer
        self.so.libbpf_set_print(self._printer)

    def has(self, name: str) -> bool:
        return name not in self.missing

    if TYPE_CHECKING:  # what type checkers see: the functions are set from _SIGNATURES at run time

        def __getattr__(self, name: str) -> Any: ...

    def _print(self, level: int, fmt: bytes, va_list: int) -> int:
        # On x86-64 a va_list argument is a pointer to the register save area; on arm64 va_list
        # is a 32-byte struct, which AAPCS64 passes as a pointer to a copy. Either way vsnprintf
        # takes the pointer as is (libbpf's warnings read right on arm64 guests). It can be
        # consumed once only, so one fixed buffer (longer texts are cut).
        if level > _capture_level or not _captures:
            return 0
        n = self.libc.vsnprintf(self._fmt_buf, _PRINT_BUF, fmt, va_list)
        if n > 0:
            text = self._fmt_buf.value.decode("utf-8", "replace")
            for sink in _captures:
                sink.append(text)
        return 0


# Long libbpf messages are verifier logs echoed by libbpf (the agent has them already).
_PRINT_BUF = 64 << 10
_captures: list[list[str]] = []
_capture_level = LIBBPF_INFO
_lib: _Lib | None = None


def lib() -> _Lib:
    """The libbpf library, loaded on first use."""
    global _lib
    if _lib is None:
        _lib = _Lib()
    return _lib


def version() -> str:
    """major.minor of the loaded libbpf."""
    return lib().version


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect libbpf's warnings and infos printed inside the block (as raw chunks)."""
    sink: list[str] = []
    _captures.append(sink)
    try:
        yield sink
    finally:
        _captures.remove(sink)


_LOG_BEGIN = "-- BEGIN PROG LOAD LOG --"
_LOG_END = "-- END PROG LOAD LOG --"


def lines(chunks: list[str]) -> list[str]:
    """Captured chunks as lines, without libbpf's "libbpf: " prefix and without the verifier
    logs libbpf echoes (the agent reads those from its own buffers)."""
    kept = []
    for chunk in chunks:
        begin = chunk.find(_LOG_BEGIN)
        if begin >= 0:
            end = chunk.find(_LOG_END, begin)
            tail = chunk[end + len(_LOG_END) :] if end >= 0 else "\n"
            chunk = chunk[: begin + len(_LOG_BEGIN)] + " (verifier log omitted) " + _LOG_END + tail
        kept.append(chunk)
    out = []
    for line in "".join(kept).splitlines():
        line = line.removeprefix("libbpf: ")
        if line.strip():
            out.append(line)
    return out


def _errno() -> int:
    return ctypes.get_errno() or 0


def _check_ptr(ptr: int | None, call: str, sink: list[str] | None = None) -> int:
    if not ptr:
        raise LibbpfError(call, _errno() or 22, lines(sink) if sink else [])
    return ptr


def _check_int(ret: int, call: str, sink: list[str] | None = None) -> int:
    if ret < 0:
        raise LibbpfError(call, -ret, lines(sink) if sink else [])
    return ret


def _str(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value is not None else None


# Memoized: a ctypes call per lookup is dear under emulation, and the names never change.
@functools.cache
def prog_type_str(prog_type: int) -> str | None:
    """libbpf's name of a program type ("kprobe", "xdp"...), None if libbpf does not know it."""
    return _str(lib().libbpf_bpf_prog_type_str(prog_type))


@functools.cache
def map_type_str(map_type: int) -> str | None:
    """libbpf's name of a map type, None if unknown."""
    return _str(lib().libbpf_bpf_map_type_str(map_type))


@functools.cache
def attach_type_str(attach_type: int) -> str | None:
    """libbpf's name of an attach type, None if unknown."""
    return _str(lib().libbpf_bpf_attach_type_str(attach_type))


@functools.cache
def prog_type_by_name(section: str) -> tuple[int, int] | None:
    """The program type and expected attach type libbpf gives a section name ("tc", "xdp",
    "cgroup/connect4"...), None if libbpf knows no such section."""
    prog_type, attach_type = ctypes.c_int(), ctypes.c_int()
    if lib().libbpf_prog_type_by_name(section.encode(), ctypes.byref(prog_type), ctypes.byref(attach_type)) != 0:
        return None
    return prog_type.value, attach_type.value


# -- objects, programs, maps ---------------------------------------------------------------------
class Program:
    """A bpf_program of an open Object (valid while the object is open)."""

    def __init__(self, obj: Object, ptr: int):
        self.obj = obj
        self.ptr = ptr
        lb = lib()
        self.name = _str(lb.bpf_program__name(ptr)) or "?"
        self.section = _str(lb.bpf_program__section_name(ptr)) or ""

    @property
    def prog_type(self) -> int:
        """enum bpf_prog_type (from the section name, or as set)."""
        return lib().bpf_program__type(self.ptr)

    @property
    def expected_attach_type(self) -> int:
        """enum bpf_attach_type the program is loaded with."""
        return lib().bpf_program__expected_attach_type(self.ptr)

    @property
    def autoload(self) -> bool:
        """Whether bpf_object__load loads this program."""
        return bool(lib().bpf_program__autoload(self.ptr))

    def set_autoload(self, on: bool) -> None:
        """Have bpf_object__load load this program or skip it."""
        _check_int(lib().bpf_program__set_autoload(self.ptr, on), "bpf_program__set_autoload")

    @property
    def flags(self) -> int:
        """The program's load flags (BPF_F_*: its section's, or as set)."""
        return lib().bpf_program__flags(self.ptr)

    def set_flags(self, flags: int) -> None:
        """Load the program with these BPF_PROG_LOAD flags (what a loader's bpf_program__set_flags does)."""
        _check_int(lib().bpf_program__set_flags(self.ptr, flags), "bpf_program__set_flags")

    def set_type(self, prog_type: int, attach_type: int) -> None:
        """Load the program as this type (libbpf then forgets what its section said)."""
        lb = lib()
        _check_int(lb.bpf_program__set_type(self.ptr, prog_type), "bpf_program__set_type")
        _check_int(
            lb.bpf_program__set_expected_attach_type(self.ptr, attach_type), "bpf_program__set_expected_attach_type"
        )

    def set_attach_target(self, function: str) -> int:
        """Attach to this kernel function (or tracepoint, LSM hook...) instead of the one the
        section names, as a loader's bpf_program__set_attach_target does; libbpf looks it up in
        the kernel's BTF at once: 0, or -errno when the kernel has no such target."""
        return lib().bpf_program__set_attach_target(self.ptr, 0, function.encode())

    def set_log(self, level: int, buf: ctypes.Array | None) -> None:
        """Verifier log level and buffer for this program's load (buffer kept alive by the caller)."""
        lb = lib()
        _check_int(lb.bpf_program__set_log_level(self.ptr, level), "bpf_program__set_log_level")
        if buf is not None:
            _check_int(
                lb.bpf_program__set_log_buf(self.ptr, ctypes.addressof(buf), len(buf)), "bpf_program__set_log_buf"
            )

    @property
    def insn_cnt(self) -> int:
        """Number of instructions (8 bytes each) libbpf holds for the program now."""
        return lib().bpf_program__insn_cnt(self.ptr)

    def insns(self) -> bytes:
        """The program's instructions as libbpf holds them now (8 bytes each)."""
        lb = lib()
        cnt = lb.bpf_program__insn_cnt(self.ptr)
        ptr = lb.bpf_program__insns(self.ptr)
        return ctypes.string_at(ptr, cnt * 8) if ptr and cnt else b""

    @property
    def fd(self) -> int:
        """The loaded program's fd, negative if not loaded."""
        return lib().bpf_program__fd(self.ptr)


class Map:
    """A bpf_map of an open Object."""

    def __init__(self, obj: Object, ptr: int):
        self.obj = obj
        self.ptr = ptr
        self.name = _str(lib().bpf_map__name(ptr)) or "?"

    @functools.cached_property
    def map_type(self) -> int:
        """enum bpf_map_type (compat never changes it)."""
        return lib().bpf_map__type(self.ptr)

    @property
    def fd(self) -> int:
        """The map's fd (libbpf gives a placeholder before load)."""
        return lib().bpf_map__fd(self.ptr)

    @property
    def autocreate(self) -> bool:
        """Whether bpf_object__load creates this map."""
        return bool(lib().bpf_map__autocreate(self.ptr))

    def set_autocreate(self, on: bool) -> None:
        """Have bpf_object__load create this map or leave it out."""
        _check_int(lib().bpf_map__set_autocreate(self.ptr, on), "bpf_map__set_autocreate")

    @property
    def has_inner_map(self) -> bool:
        """Whether a map of maps defines its inner map in the object (else its loader supplies one)."""
        return bool(lib().bpf_map__inner_map(self.ptr))

    @property
    def max_entries(self) -> int:
        """The map's max_entries as the object (or a set_max_entries) has it."""
        return lib().bpf_map__max_entries(self.ptr)

    def set_max_entries(self, n: int) -> None:
        """Size the map before load (what loaders do for maps sized at run time)."""
        _check_int(lib().bpf_map__set_max_entries(self.ptr, n), "bpf_map__set_max_entries")

    def set_inner_map_fd(self, fd: int) -> None:
        """Give a map of maps its inner map before load (what its loader does)."""
        _check_int(lib().bpf_map__set_inner_map_fd(self.ptr, fd), "bpf_map__set_inner_map_fd")

    @property
    def value_size(self) -> int:
        """The map's value_size as the object (or a set_value_size) has it."""
        return lib().bpf_map__value_size(self.ptr)

    def set_value_size(self, n: int) -> None:
        """Size the map's values before load (what loaders do for stack depths chosen at run time)."""
        _check_int(lib().bpf_map__set_value_size(self.ptr, n), "bpf_map__set_value_size")

    @property
    def pinned(self) -> bool:
        """Whether the load would pin the map in bpffs (or reuse a map pinned there)."""
        return bool(lib().bpf_map__pin_path(self.ptr))

    def unpin(self) -> None:
        """Have the load create the map afresh, neither pinned nor reusing a pinned one."""
        _check_int(lib().bpf_map__set_pin_path(self.ptr, None), "bpf_map__set_pin_path")

    def write_initial(self, offset: int, data: bytes) -> bool:
        """Overwrite bytes of an internal map's initial value (.rodata, .data, .bss) before load,
        as a skeleton's loader does; False when the map has none or the bytes fall outside it."""
        size = ctypes.c_size_t()
        ptr = lib().bpf_map__initial_value(self.ptr, ctypes.byref(size))
        if not ptr or offset < 0 or offset + len(data) > size.value:
            return False
        ctypes.memmove(ptr + offset, data, len(data))
        return True


class Object:
    """An open bpf_object; close() it (or use as a context manager)."""

    def __init__(self, data: bytes, name: str, kconfig: str | None = None):
        lb = lib()
        self._data = ctypes.create_string_buffer(data, len(data))  # libbpf keeps pointers into it
        self._name = name.encode()
        self._kconfig = kconfig.encode() if kconfig else None
        opts = ObjectOpenOpts(sz=ctypes.sizeof(ObjectOpenOpts), object_name=self._name, kconfig=self._kconfig)
        with capture() as sink:
            ctypes.set_errno(0)
            ptr = lb.bpf_object__open_mem(ctypes.addressof(self._data), len(data), ctypes.byref(opts))
            self.open_log = lines(sink)
        self.ptr = _check_ptr(ptr, "bpf_object__open_mem", sink)
        self._programs: list[Program] | None = None
        self._by_name: dict[str, Program] | None = None
        self._maps: list[Map] | None = None

    def programs(self) -> list[Program]:
        """The object's programs (not its subprograms), in libbpf's order."""
        if self._programs is None:  # fixed once the object is open: walked once (ctypes calls are dear)
            self._programs = self._walk(lib().bpf_object__next_program, Program)
        return self._programs

    def program(self, name: str) -> Program | None:
        """The program of that name."""
        if self._by_name is None:
            self._by_name = {p.name: p for p in self.programs()}
        return self._by_name.get(name)

    def maps(self) -> list[Map]:
        """The object's maps, internal ones (.rodata, .bss, .kconfig...) included."""
        if self._maps is None:
            self._maps = self._walk(lib().bpf_object__next_map, Map)
        return self._maps

    def map_named(self, name: str) -> Map | None:
        """The map of that name (an internal map also by its section name: ".rodata")."""
        ptr = lib().bpf_object__find_map_by_name(self.ptr, name.encode())
        return Map(self, ptr) if ptr else None

    def _walk(self, next_fn, cls):
        out, prev = [], None
        while True:
            prev = next_fn(self.ptr, prev)
            if not prev:
                return out
            out.append(cls(self, prev))

    def load(self) -> int:
        """bpf_object__load: 0, or a negative errno (the caller reads the captured messages)."""
        return lib().bpf_object__load(self.ptr)

    def close(self) -> None:
        """bpf_object__close (unloads everything); idempotent."""
        if self.ptr:
            lib().bpf_object__close(self.ptr)
            self.ptr = 0

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Link:
    """A bpf_link (or another attachment with its own detach); destroy() detaches."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def destroy(self) -> None:
        """Detach and free the link; idempotent."""
        if self.ptr:
            lib().bpf_link__destroy(self.ptr)
            self.ptr = 0


def attach_call(call: str, *args) -> Link:
    """Run one of libbpf's bpf_program__attach_* / bpf_map__attach_* calls; LibbpfError on failure."""
    lb = lib()
    if not lb.has(call):
        raise LibbpfError(call, 95, [f"libbpf {lb.version} has no {call}"])
    with capture() as sink:
        ctypes.set_errno(0)
        ptr = getattr(lb, call)(*args)
    return Link(_check_ptr(ptr, call, sink))


def tc_hook(ifindex: int, attach_point: int) -> TcHook:
    """A bpf_tc_hook for an interface's ingress or egress."""
    return TcHook(sz=ctypes.sizeof(TcHook), ifindex=ifindex, attach_point=attach_point)


def tc_attach(hook: TcHook, prog_fd: int) -> TcOpts:
    """Create the clsact qdisc if needed and attach a cls_bpf filter; returns the opts to detach."""
    lb = lib()
    with capture() as sink:
        ret = lb.bpf_tc_hook_create(ctypes.byref(hook))
        if ret < 0 and ret != -17:  # EEXIST: the qdisc is there already
            raise LibbpfError("bpf_tc_hook_create", -ret, lines(sink))
        opts = TcOpts(sz=ctypes.sizeof(TcOpts), prog_fd=prog_fd)
        _check_int(lb.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)), "bpf_tc_attach", sink)
    return opts


def tc_detach(hook: TcHook, opts: TcOpts) -> None:
    """Remove the filter tc_attach made, then the clsact qdisc."""
    lb = lib()
    with capture():
        detach = TcOpts(sz=ctypes.sizeof(TcOpts), handle=opts.handle, priority=opts.priority)
        lb.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(detach))
        hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS
        lb.bpf_tc_hook_destroy(ctypes.byref(hook))


# -- raw program loads (probes) ----------------------------------------------------------------
def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


class ProbeLoader:
    """Loads many tiny probe programs through one set of reused buffers.

    A probe sweep makes thousands of loads: under emulation, building fresh ctypes objects and
    decoding logs for each one would cost as much as the loads. Logs stay bytes.
    """

    MAX_INSNS = 16

    def __init__(self, log_size: int = 1024, log_level: int = 4):
        self.log = ctypes.create_string_buffer(log_size)
        self.code = ctypes.create_string_buffer(self.MAX_INSNS * 8)
        self.opts = ProgLoadOpts(
            sz=ctypes.sizeof(ProgLoadOpts),
            log_level=log_level,
            log_size=log_size,
            log_buf=ctypes.cast(self.log, ctypes.c_char_p),
        )
        self._fn = lib().bpf_prog_load
        self._opts_ref = ctypes.byref(self.opts)
        self._code_addr = ctypes.addressof(self.code)

    def load(
        self,
        prog_type: int,
        insns: bytes,
        expected_attach_type: int = 0,
        attach_btf_id: int = 0,
        prog_flags: int = 0,
        fd_array: ctypes.Array | None = None,
    ) -> tuple[int, bytes]:
        """(fd or negative errno, verifier log as bytes); the caller closes a returned fd."""
        o = self.opts
        o.expected_attach_type = expected_attach_type
        o.attach_btf_id = attach_btf_id
        o.prog_flags = prog_flags
        o.fd_array = ctypes.cast(fd_array, ctypes.POINTER(ctypes.c_int)) if fd_array is not None else None
        self.log[0] = b"\0"
        ctypes.memmove(self._code_addr, insns, len(insns))
        ret = self._fn(prog_type, None, b"GPL", self._code_addr, len(insns) // 8, self._opts_ref)
        return ret, self.log.value


def probe_prog_type(prog_type: int) -> bool:
    """libbpf_probe_bpf_prog_type: does the kernel know this program type?"""
    with capture():
        return lib().libbpf_probe_bpf_prog_type(prog_type, None) == 1


def probe_map_type(map_type: int) -> bool:
    """libbpf_probe_bpf_map_type: can the kernel create a map of this type?"""
    with capture():
        return lib().libbpf_probe_bpf_map_type(map_type, None) == 1


def probe_helper(prog_type: int, helper: int) -> int:
    """libbpf_probe_bpf_helper: 1 available, 0 not, negative errno if libbpf cannot tell."""
    with capture():
        return lib().libbpf_probe_bpf_helper(prog_type, helper, None)


# -- BTF ---------------------------------------------------------------------------------------
class Btf:
    """A struct btf parsed by libbpf (vmlinux, or a module's split BTF on top of it)."""

    def __init__(self, ptr: int, base: Btf | None = None, name: str = "vmlinux", borrowed: bool = False):
        self.ptr = ptr
        self.base = base
        self.name = name
        self.borrowed = borrowed  # someone else's (kernelbtf's shared copy): free() leaves it be

    @classmethod
    def vmlinux(cls) -> Btf:
        """The running kernel's BTF (/sys/kernel/btf/vmlinux)."""
        with capture() as sink:
            ctypes.set_errno(0)
            ptr = lib().btf__load_vmlinux_btf()
        return cls(_check_ptr(ptr, "btf__load_vmlinux_btf", sink))

    @classmethod
    def split(cls, path: str, base: Btf) -> Btf:
        """A module's split BTF, parsed on top of vmlinux's."""
        with capture() as sink:
            ctypes.set_errno(0)
            ptr = lib().btf__parse_split(path.encode(), base.ptr)
        return cls(_check_ptr(ptr, "btf__parse_split", sink), base, os.path.basename(path))

    def free(self) -> None:
        """btf__free; idempotent."""
        if self.ptr and not self.borrowed:
            lib().btf__free(self.ptr)
            self.ptr = 0

    @property
    def type_cnt(self) -> int:
        """Number of type ids (vmlinux's included for split BTF), plus one."""
        return lib().btf__type_cnt(self.ptr)

    @property
    def start_id(self) -> int:
        """First type id that belongs to this BTF itself (not to its base)."""
        return self.base.type_cnt if self.base else 1

    def find(self, name: str, kind: int) -> int | None:
        """Type id of a named type of one kind, None if absent (ids of the base are found too)."""
        ret = lib().btf__find_by_name_kind(self.ptr, name.encode(), kind)
        return ret if ret > 0 else None

    def type_header(self, type_id: int) -> tuple[int, int, int, int]:
        """(name_off, kind, vlen, size_or_type) of one type."""
        ptr = lib().btf__type_by_id(self.ptr, type_id)
        if not ptr:
            raise LibbpfError("btf__type_by_id", 2)
        name_off, info, size = struct.unpack("<III", ctypes.string_at(ptr, 12))
        return name_off, (info >> 24) & 0x1F, info & 0xFFFF, size

    def type_bytes(self, type_id: int, extra: int) -> bytes:
        """The 12-byte type header plus `extra` bytes that follow it."""
        return ctypes.string_at(lib().btf__type_by_id(self.ptr, type_id), 12 + extra)

    def string(self, name_off: int) -> str:
        """A string of the BTF's string section (names of types, members, enumerators)."""
        return _str(lib().btf__name_by_offset(self.ptr, name_off)) or ""

    def raw(self) -> bytes:
        """The raw BTF blob of this BTF alone (header, types, strings)."""
        size = ctypes.c_uint32(0)
        ptr = lib().btf__raw_data(self.ptr, ctypes.byref(size))
        return ctypes.string_at(ptr, size.value) if ptr else b""

    def enum_values(self, name: str) -> dict[str, int]:
        """Enumerators of a named enum: {NAME: value}."""
        type_id = self.find(name, BTF_KIND_ENUM)
        if type_id is None:
            return {}
        _, _, vlen, _ = self.type_header(type_id)
        data = self.type_bytes(type_id, 8 * vlen)[12:]
        return {self.string(off): val for off, val in struct.iter_unpack("<Ii", data)}


def kernel_btf_fds() -> dict[str, int]:
    """{name: fd} of the kernel's loaded BTF objects (vmlinux and modules); the caller closes them."""
    lb = lib()
    out: dict[str, int] = {}
    next_id = ctypes.c_uint32(0)
    cur = 0
    while lb.bpf_btf_get_next_id(cur, ctypes.byref(next_id)) == 0:
        cur = next_id.value
        fd = lb.bpf_btf_get_fd_by_id(cur)
        if fd < 0:
            continue
        name = ctypes.create_string_buffer(64)
        info = BtfInfo(name=ctypes.addressof(name), name_len=64)
        size = ctypes.c_uint32(ctypes.sizeof(info))
        if lb.bpf_btf_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) == 0 and info.kernel_btf:
            out[name.value.decode() or "vmlinux"] = fd
        else:
            os.close(fd)
    return out


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """bpf_map_create without options: an fd, or LibbpfError."""
    with capture() as sink:
        fd = lib().bpf_map_create(map_type, None, key_size, value_size, max_entries, None)
    return _check_int(fd, "bpf_map_create", sink)
