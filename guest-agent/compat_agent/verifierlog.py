"""Reading verifier logs: statistics and the error line, for every kernel 5.10 .. 7.x.

Shared by the agent (which fills a result's stats and message) and the host (which classifies
and locates rejections), so both read a log the same way. Formats differ across kernels: each
figure is matched on its own, loosely, and the raw text is always kept by the callers.
"""

from __future__ import annotations

import re

_STATS = {
    "insns_processed": re.compile(r"processed (\d+) insns"),
    "states_total": re.compile(r"total_states (\d+)"),
    "states_peak": re.compile(r"peak_states (\d+)"),
    "verification_time_us": re.compile(r"verification time (\d+) usec"),
}
_TOO_LARGE = re.compile(r"BPF program is too large\. Processed (\d+) insn")
_STACK = re.compile(r"stack depth (\d+(?:\+\d+)*)")
# Lines of a log that are statistics or framing, not the verifier's verdict.
STATS_LINE = re.compile(
    r"^(processed \d+ insns|insns processed \d+|verification time|stack depth|max_states_per_insn|"
    r"-- (BEGIN|END) PROG LOAD LOG --|\[compat: |Live regs before insn|func#\d+ @\d+$|Validating )"
)


def parse_stats(log: str) -> dict:
    """Verifier statistics from a log (missing ones are None); the last match of each wins."""
    stats: dict = {}
    for key, rx in _STATS.items():
        found = rx.findall(log)
        stats[key] = int(found[-1]) if found else None
    if stats["insns_processed"] is None:
        found = _TOO_LARGE.findall(log)
        stats["insns_processed"] = int(found[-1]) if found else None
    found = _STACK.findall(log)
    stats["stack_depth"] = [int(x) for x in found[-1].split("+")] if found else None
    return stats


def error_line(log: str) -> str | None:
    """The verifier's error: the last line of the log that is not a statistic."""
    for line in reversed(log.splitlines()):
        text = line.strip()
        if text and not STATS_LINE.match(text):
            return text
    return None
