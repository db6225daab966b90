"""Perf events to attach programs to: kprobes and tracepoints for programs that exist only as
an fd, and a sampling event for perf_event programs.

libbpf attaches a bpf_program of its own; a program loaded by compat's legacy-map loader has only
its fd. Loaders of that era attached such programs the same way done here: perf_event_open of a
kprobe (the kprobe PMU, Linux 4.17+) or of a tracepoint (its id in tracefs), then the program set
on the event with PERF_EVENT_IOC_SET_BPF. Closing the event detaches the program. A perf_event
program (a profiler's sampler) attaches to a sampling event its loader opens: here a software
cpu-clock event on CPU 0 (the guest has no hardware PMU under emulation).
"""

from __future__ import annotations

import ctypes
import os

# perf_event_open's number per architecture (uname -m): 298 on x86-64, 241 on arm64 (the generic
# table, include/uapi/asm-generic/unistd.h). 298 on arm64 is another syscall (ENOSYS at best).
SYS_PERF_EVENT_OPEN_BY_MACHINE = {"x86_64": 298, "aarch64": 241}


def sys_perf_event_open(machine: str | None = None) -> int:
    """perf_event_open's syscall number on this guest's architecture (or machine's)."""
    return SYS_PERF_EVENT_OPEN_BY_MACHINE.get(machine or os.uname().machine, 298)


PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT = 1, 2
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr, as far as kprobes and tracepoints need it (the kernel takes the
    size given, zero-filled to what it knows)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),  # kprobe: the function's name
        ("config2", ctypes.c_uint64),  # kprobe: the offset in it
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _open(attr: PerfEventAttr) -> int:
    """perf_event_open(attr, all tasks, CPU 0): the event's fd; OSError on failure."""
    attr.size = ctypes.sizeof(PerfEventAttr)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(
        ctypes.c_long(sys_perf_event_open()), ctypes.byref(attr), ctypes.c_int(-1), ctypes.c_int(0),
        ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC),
    )  # fmt: skip
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def kprobe_event(function: str, retprobe: bool) -> int:
    """A kprobe (or kretprobe) perf event on a kernel function; OSError when the kernel has no
    such function (ENOENT) or no kprobe PMU."""
    try:
        pmu = int(_read(f"{KPROBE_PMU}/type"))
        bit = int(_read(f"{KPROBE_PMU}/format/retprobe").split(":")[1]) if retprobe else 0
    except (OSError, ValueError, IndexError):
        raise OSError(95, "this kernel has no kprobe PMU (perf_event_open of kprobes: Linux 4.17)") from None
    name = ctypes.create_string_buffer(function.encode())
    attr = PerfEventAttr(type=pmu, config=(1 << bit) if retprobe else 0, config1=ctypes.addressof(name))
    return _open(attr)


def tracepoint_event(category: str, name: str) -> int:
    """A perf event on a tracepoint; OSError (ENOENT) when the kernel has no such tracepoint."""
    for root in TRACEFS:
        try:
            tp_id = int(_read(f"{root}/events/{category}/{name}/id"))
            break
        except (OSError, ValueError):
            continue
    else:
        raise OSError(2, f"no tracepoint {category}/{name} in tracefs")
    return _open(PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tp_id))


def sampling_event() -> int:
    """A software cpu-clock sampling event on CPU 0 (every 10 ms), as profilers open one per CPU."""
    return _open(PerfEventAttr(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_CPU_CLOCK, sample_period=10_000_000))


def attach_and_detach(event_fd: int, prog_fd: int) -> None:
    """Run prog_fd on the perf event, then detach it (closing the event); OSError on failure."""
    libc = _libc()
    try:
        for request, arg in ((PERF_EVENT_IOC_SET_BPF, prog_fd), (PERF_EVENT_IOC_ENABLE, 0)):
            if libc.ioctl(event_fd, ctypes.c_ulong(request), ctypes.c_int(arg)) < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
    finally:
        os.close(event_fd)
