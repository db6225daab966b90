"""The verifier log buffers of the agent's loads, by log level, reused across loads."""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Iterator

STATS_LOG_SIZE = 64 << 10  # level 4: error lines and stats, a few hundred bytes
FULL_LOG_SIZE = 4 << 20  # level 1: bounded (two 64 MiB ctypes buffers OOM a 512 MiB guest)

_POOL: dict[int, list[ctypes.Array]] = {}


def log_buffers(size: int) -> Iterator[ctypes.Array]:
    """Emptied log buffers of a size, reused by every load of this agent: allocating and zeroing
    64 KiB (4 MiB for full logs) per program and load is a measurable part of a small object's
    check under emulation. Loads run one at a time and read their logs before the next one."""
    pool = _POOL.setdefault(size, [])
    for i in itertools.count():
        if i == len(pool):
            pool.append(ctypes.create_string_buffer(size))
        buf = pool[i]
        buf[0] = b"\0"  # a program libbpf does not load leaves its buffer as it was
        yield buf


def log_buffer(level: int) -> ctypes.Array:
    """One emptied buffer for a load at this log level (1: full log, else stats only)."""
    return next(log_buffers(FULL_LOG_SIZE if level == 1 else STATS_LOG_SIZE))
