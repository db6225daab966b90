"""The kernel's warnings a check caused: what /dev/kmsg got while it ran, read as splats.

The verifier sometimes warns and still accepts (a WARN_ONCE "verifier bug", a REG INVARIANTS
VIOLATION), and BPF CI checks its guests' logs for such splats for that reason. Before a check
the agent skips what the log already holds; after it, it reads what came since (non-blocking, one
record per read) and keeps the splats of the pattern table with their lines, bounded.
"""

from __future__ import annotations

import errno
import os
import re

# A splat starts at a line that matches one of these; its kind is the first kind of the table
# any of its lines matches (the table's order: most specific first): a WARN_ONCE splat's
# "[ cut here ]" line, then "verifier bug: REG INVARIANTS VIOLATION ...", then "WARNING: CPU: ...".
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("reg_invariants", re.compile(r"REG INVARIANTS VIOLATION")),
    ("verifier_bug", re.compile(r"verifier (backtracking )?bug|verifier internal error")),
    ("kasan", re.compile(r"\bKASAN: |BUG: KASAN")),
    ("ubsan", re.compile(r"\bUBSAN: ")),
    ("lockdep", re.compile(r"possible circular locking dependency|possible recursive locking|inconsistent lock state|"
                           r"suspicious RCU usage|lockdep")),
    ("bug", re.compile(r"^BUG: |kernel BUG at |^Oops: ")),
    ("warning", re.compile(r"^WARNING: |\[ cut here \]")),
)  # fmt: skip
KINDS = tuple(kind for kind, _ in PATTERNS)
END = re.compile(r"---\[ end trace")
SPLATS_MAX = 8  # per check
LINES_MAX = 40  # per splat (the head says what and where; the stack trace is long)
LINE_MAX = 512  # characters per line
RECORDS_MAX = 100_000  # per read: a kernel that floods its log cannot keep the agent here
RECORD_MAX = 8192  # a /dev/kmsg record is at most ~1 KiB of text (PRINTK_MESSAGE_MAX); reads need room for it


def kind_of(lines: list[str]) -> str | None:
    """The kind of a splat: the first kind of the table any of its lines matches (None: none)."""
    for kind, pattern in PATTERNS:
        if any(pattern.search(line) for line in lines):
            return kind
    return None


def splats(lines: list[str]) -> list[dict]:
    """The splats in kernel log lines, in order: {kind, lines} (bounded by SPLATS_MAX and
    LINES_MAX, lines cut at LINE_MAX). A splat runs from a line that matches the table to its
    "---[ end trace" line, the next splat, or LINES_MAX lines."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        starts = any(p.search(line) for _, p in PATTERNS)
        # a "[ cut here ]" splat's own lines ("verifier bug: ...", "WARNING: CPU ...") continue it
        continues = current is not None and len(current) < 3 and "[ cut here ]" in current[0]
        if starts and not continues:
            if len(found) == SPLATS_MAX:
                break
            current = [line[:LINE_MAX]]
            found.append(current)
        elif current is not None:
            if len(current) < LINES_MAX:
                current.append(line[:LINE_MAX])
            if END.search(line):
                current = None
    return [{"kind": kind_of(s) or "warning", "lines": s} for s in found]


class KernelLog:
    """/dev/kmsg, read from where the last read stopped (None fd: no kernel log to read)."""

    def __init__(self, path: str = "/dev/kmsg"):
        try:
            self.fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)  # what the log held before: not a check's doing
        except OSError:
            self.fd = None

    def read(self) -> list[str]:
        """The log's lines since the last read (the text of each record; continuation lines of a
        record, its " KEY=value" dictionary, are left out)."""
        out: list[str] = []
        for _ in range(RECORDS_MAX if self.fd is not None else 0):
            assert self.fd is not None
            try:
                record = os.read(self.fd, RECORD_MAX)
            except OSError as e:
                if e.errno == errno.EPIPE:  # records were overwritten before they were read: go on
                    continue
                break  # EAGAIN: nothing more
            if not record:
                break
            _, _, text = record.decode("utf-8", "replace").partition(";")
            if text:
                out.append(text.split("\n", 1)[0])
        return out


_LOG: KernelLog | None = None


def kernel_log() -> KernelLog:
    """The guest's one KernelLog (opened on first use, before the snapshot in a warmed agent)."""
    global _LOG
    if _LOG is None:
        _LOG = KernelLog()
    return _LOG


# The test build of the guest image only (agent.py's TEST_FAULTS): an object named
# compat-fault-kmsg... is checked for real while this splat is written to the kernel log, as if
# the check had made the kernel warn: the path from /dev/kmsg to the report, on a real kernel.
TEST_FAULTS = "/etc/compat-test-faults"
TEST_SPLAT = (
    "------------[ cut here ]------------",
    "verifier bug: REG INVARIANTS VIOLATION (false_reg1): range bounds violation u64=[0x11, 0x10] "
    "s64=[0x11, 0x10] u32=[0x11, 0x10] s32=[0x11, 0x10] var_off=(0x10, 0x0)",
    "WARNING: CPU: 0 PID: 1 at kernel/bpf/verifier.c:2731 reg_bounds_sanity_check+0x19d/0x210",
    "---[ end trace 0000000000000000 ]---",
)


def inject_test_splat(name: str) -> None:
    """Write TEST_SPLAT to /dev/kmsg when the test build asks for it by the object's name."""
    if not name.startswith("compat-fault-kmsg") or not os.path.exists(TEST_FAULTS):
        return
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        for line in TEST_SPLAT:
            os.write(fd, f"<4>{line}\n".encode())  # one record per write, at KERN_WARNING
    finally:
        os.close(fd)
