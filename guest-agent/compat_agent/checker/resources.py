"""The guest's own resources: its open-file limit, and telling a loader that ran out of open
files or memory from a kernel that refused the program.

A BPF object costs the loader one file descriptor per map (libbpf gives each a placeholder fd
at open already), per program and per BTF object, and kernel memory for every map it creates.
The guest's limits are not the user's machine's: a check that runs out of them has no verdict,
so it ends in Exhausted, which the agent answers with an error reply carrying a code and its
parameters (resource, errno, limit, what failed), never with a rejection. The host words it
(compat/guest/guestmsg.py) and makes the cells ``error``.

The rules (``exhausted``):
- EMFILE and ENFILE are always the guest's (the process's or the system's file table): no
  kernel refuses a program or a map with them on its own account;
- ENOMEM from creating a map is the guest's memory, unless even the map's smallest possible size
  (max_entries x value_size) is beyond the largest guest compat runs (``--memory`` 65536 MiB):
  such a map fails on practically any machine, and that is the object's verdict;
- ENOMEM from loading a program is the guest's memory (the verifier's and the JIT's
  allocations), unless the verifier's own log says it gave up on the program's complexity
  (some kernels return ENOMEM after "The sequence of N jumps is too complex"): a verdict;
- ENOMEM or EMFILE while libbpf opens or prepares the object, or loads its BTF, is the guest's.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import re
import resource
from collections.abc import Iterator
from dataclasses import dataclass

OPEN_FILES, MEMORY = "open_files", "memory"
CODE = "resource_exhausted"  # the error reply's code (see reply())
FILE_ERRNOS = (errno_mod.EMFILE, errno_mod.ENFILE)
# The largest guest memory the host offers (compat check --memory 256-65536 MiB): a map that
# needs more than this fails in any guest compat can run, and on practically any machine.
MAX_GUEST_BYTES = 65536 << 20
# What the verifier says when it gives up on a program's complexity; some kernels then return
# ENOMEM (a failed push of a branch state), which is the program's verdict, not a lack of memory.
_COMPLEXITY = re.compile(r"jumps is too complex|too many states|BPF program is too large|complexity limit")
# libbpf's lines about the object's BTF or a feature probe failing (a number before libbpf 1.6,
# an errno name after): BTF is optional to libbpf, which goes on without it, so a load that then
# succeeds (or fails otherwise) would give a verdict on another object than the one checked.
_LIBBPF_FAILURE = re.compile(
    r"^(?:BTF loading error|Error loading \.BTF into kernel|Detection of kernel .* support failed): "
    r"-?(?:(\d+)|([A-Z]+))\b"
)


@dataclass(eq=False)
class Exhausted(Exception):
    """The guest ran out of a resource while loading an object: no verdict can be given."""

    resource: str  # OPEN_FILES or MEMORY
    errno: int
    stage: str  # open (libbpf opening the object), btf, probe, map, program, object, agent (its own)
    name: str | None = None  # the map or program that failed, when one did
    needs: int | None = None  # bytes the map needs at least (ENOMEM creating a map)

    def __str__(self) -> str:
        what = f"{self.stage} {self.name!r}" if self.name else self.stage
        return f"the guest ran out of {self.resource.replace('_', ' ')} ({errno_mod.errorcode.get(self.errno)}: {what})"


def map_bytes(max_entries: int, value_size: int) -> int:
    """The least memory a map of max_entries values of value_size bytes takes (keys, buckets
    and per-element headers come on top); for ring buffers (value_size 0) max_entries bytes."""
    return max(max_entries, 0) * max((value_size + 7) // 8 * 8, 1)


def exhausted(
    errno: int | None, stage: str, name: str | None = None, log: str = "", needs: int | None = None
) -> Exhausted | None:
    """Exhausted when a loader failure with this errno at this stage is the guest's lack of open
    files or memory (see the module's rules), else None (the failure is the object's)."""
    errno = abs(errno) if errno else 0
    if errno in FILE_ERRNOS:
        return Exhausted(OPEN_FILES, errno, stage, name)
    if errno != errno_mod.ENOMEM:
        return None
    if stage == "map" and needs is not None and needs > MAX_GUEST_BYTES:
        return None
    if stage == "program" and _COMPLEXITY.search(log):
        return None
    return Exhausted(MEMORY, errno, stage, name, needs)


def from_libbpf_lines(lines: list[str]) -> Exhausted | None:
    """Exhausted when libbpf says the object's BTF or one of its feature probes failed for lack
    of open files or memory (it then goes on without them: whatever follows is not a verdict)."""
    for line in lines:
        m = _LIBBPF_FAILURE.match(line)
        if not m:
            continue
        code = int(m.group(1)) if m.group(1) else getattr(errno_mod, m.group(2), 0)
        stage = "btf" if "BTF" in line else "probe"
        found = exhausted(code, stage)
        if found:
            return found
    return None


def open_files_limit() -> int:
    """The agent's open-file limit (soft RLIMIT_NOFILE)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def memory_kb() -> int | None:
    """The guest's memory (MemTotal, kB)."""
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1])  # "MemTotal:  492000 kB"
    except (OSError, ValueError, IndexError):
        return None


def raise_open_files() -> int:
    """Raise the agent's open-file limit, soft and hard, to the kernel's maximum (fs.nr_open,
    1048576 by default) so objects with thousands of maps load: the default soft limit (1024)
    is less than libbpf needs for such an object, and a guest's limits must not be verdicts.
    Returns the limit now in force."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            wanted = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        wanted = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for limit in ((wanted, wanted), (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            break
        except (OSError, ValueError):  # not root, or a kernel that refuses: keep what there is
            continue
    return open_files_limit()


@contextlib.contextmanager
def lowered_open_files(limit: int) -> Iterator[None]:
    """The open-file limit lowered to limit for a while (compat's tests, through the test build of
    the image only: agent.LIMIT_FAULTS), then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, soft), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def reply(e: Exhausted, request_id: object) -> dict:
    """The error reply for a check that ran out of a resource: a code with its parameters (the
    host words it), and the same in prose for a reader of the raw reply."""
    limit = open_files_limit() if e.resource == OPEN_FILES else memory_kb()
    return {
        "type": "error",
        "id": request_id,
        "error": str(e),
        "code": CODE,
        "resource": e.resource,
        "errno": e.errno,
        "stage": e.stage,
        "name": e.name,
        "limit": limit,  # open files per process, or the guest's memory in kB
        "needs": e.needs,
    }
