"""Reading verifier logs: the error line, for every kernel 5.10 .. 7.x (the statistics: stats.py).

Shared by the agent (which fills a result's message) and the host (which classifies
and locates rejections), so both read a log the same way. Formats differ across kernels: each
figure is matched on its own, loosely, and the raw text is always kept by the callers.
"""

from __future__ import annotations

import re

# Lines of a log that are statistics or framing, not the verifier's verdict.
STATS_LINE = re.compile(
    r"^(processed \d+ insns|insns processed \d+|verification time|stack depth|max_states_per_insn|"
    r"-- (BEGIN|END) PROG LOAD LOG --|\[compat: |Live regs before insn|func#\d+ @\d+$|Validating )"
)


# Some kernels print an error without its newline, so the statistics line that follows is glued
# to it ("invalid type id 5 in func infoprocessed 0 insns (limit ...)"): the error ends there.
GLUED_STATS = re.compile(r"(?<=\S)processed \d+ insns")


def error_line(log: str) -> str | None:
    """The verifier's error: the last line of the log that is not a statistic (without the
    statistics a kernel glued to it)."""
    for line in reversed(log.splitlines()):
        text = line.strip()
        if text and not STATS_LINE.match(text):
            glued = GLUED_STATS.search(text)
            return text[: glued.start()].rstrip() if glued else text
    return None
