"""Reading verifier logs: statistics and the error line, for every kernel 5.10 .. 7.x.

Shared by the agent (which fills a result's stats and message) and the host (which classifies
and locates rejections), so both read a log the same way. Formats differ across kernels: each
figure is matched on its own, loosely, and the raw text is always kept by the callers.
"""

from __future__ import annotations

import re

# One pass over the log for every figure (a regex pass is dear under emulation).
_STATS = re.compile(
    r"processed (?P<insns_processed>\d+) insns|total_states (?P<states_total>\d+)|"
    r"peak_states (?P<states_peak>\d+)|verification time (?P<verification_time_us>\d+) usec|"
    r"stack depth (?P<stack_depth>\d+(?:\+\d+)*)|BPF program is too large\. Processed (?P<too_large>\d+) insn"
)
# Lines of a log that are statistics or framing, not the verifier's verdict.
STATS_LINE = re.compile(
    r"^(processed \d+ insns|insns processed \d+|verification time|stack depth|max_states_per_insn|"
    r"-- (BEGIN|END) PROG LOAD LOG --|\[compat: |Live regs before insn|func#\d+ @\d+$|Validating )"
)


def parse_stats(log: str) -> dict:
    """Verifier statistics from a log (missing ones are None); the last match of each wins."""
    found: dict[str, str] = {}
    for m in _STATS.finditer(log):
        found[m.lastgroup] = m.group(m.lastgroup)
    stats: dict = {
        key: int(found[key]) if key in found else None
        for key in ("insns_processed", "states_total", "states_peak", "verification_time_us")
    }
    if stats["insns_processed"] is None and "too_large" in found:
        stats["insns_processed"] = int(found["too_large"])
    stats["stack_depth"] = [int(x) for x in found["stack_depth"].split("+")] if "stack_depth" in found else None
    return stats


def error_line(log: str) -> str | None:
    """The verifier's error: the last line of the log that is not a statistic."""
    for line in reversed(log.splitlines()):
        text = line.strip()
        if text and not STATS_LINE.match(text):
            return text
    return None
