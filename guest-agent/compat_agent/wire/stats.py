"""The verifier's statistics, as one table (as veristat's stat_defs[]): parsing, records, schema, comparison.

Each statistic says how it is read from the verifier log (a regular expression over the
kernel's own lines: "processed N insns (limit ...) max_states_per_insn ... total_states N
peak_states N mark_read N", "verification time N usec", "stack depth A+B"; None when libbpf
reports it instead), its unit, its name in the JSON (guest records and result files alike),
whether a bigger value is worse, whether comparisons show it, and its short label in reports.
The agent's parser, the wire's StatsRecord, the result schema, compare.py and the reports read
this table: adding a statistic is one row here (then python tests/gen_schema_stats.py for the
schema file; tests/unit/test_stats_table.py checks every consumer picks a new row up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from .validate import Max

Unit = Literal["insns", "states", "us", "bytes"]


@dataclass(frozen=True)
class Stat:
    """One statistic of a verified program."""

    json: str  # its name in guest records and result files
    label: str  # short, for report columns
    unit: Unit
    patterns: tuple[str, ...]  # regexes with one group, over the log; later ones only when earlier ones never match
    bigger_is_worse: bool = True
    compared: bool = False  # shown by comparisons (compare.py) and reports
    many: bool = False  # a list of integers (one per subprogram frame: "stack depth 16+8")
    noisy: bool = False  # moves from run to run on the same program (time): no change of its own
    doc: str = ""
    # its column in veristat's CSV (tools/testing/selftests/bpf/veristat.c, stat_defs[].names[0]);
    # "" when veristat has none with the same meaning. compat's --format csv reads it.
    veristat: str = ""

    def wire_type(self) -> Any:
        """The type of its field in the wire's StatsRecord (validate.py checks guest replies by it):
        an integer, or a bounded list of them (one per stack frame); None when the log did not say."""
        return (Annotated[list[int], Max(1024)] if self.many else int) | None


STATS: tuple[Stat, ...] = (
    Stat("insns_processed", "insns", "insns",
         (r"processed (\d+) insns", r"BPF program is too large\. Processed (\d+) insn"), compared=True,
         doc="instructions the verifier processed (its complexity limit is 1,000,000)", veristat="total_insns"),
    Stat("states_total", "states", "states", (r"total_states (\d+)",), compared=True,
         doc="verifier states created", veristat="total_states"),
    Stat("states_peak", "peak states", "states", (r"peak_states (\d+)",), doc="verifier states alive at once, at most",
         veristat="peak_states"),
    Stat("verification_time_us", "time µs", "us", (r"verification time (\d+) usec",), compared=True, noisy=True,
         doc="time the kernel spent verifying (5.3 and later say it)", veristat="duration"),
    Stat("stack_depth", "stack", "bytes", (r"stack depth (\d+(?:\+\d+)*)",), many=True,
         doc="stack bytes per frame: the main program, then each subprogram", veristat="stack_depth"),
    Stat("max_states_per_insn", "states/insn", "states", (r"max_states_per_insn (\d+)",),
         doc="verifier states kept at one instruction, at most", veristat="max_states_per_insn"),
    Stat("mark_read", "mark read", "states", (r"mark_read (\d+)",),
         doc="the longest chain of read marks the verifier propagated (where the kernel's log says it)",
         veristat="max_mark_read_len"),
    Stat("insn_cnt", "size", "insns", (), doc="the program's instructions, as libbpf loads it (not from the log)"),
)  # fmt: skip
BY_JSON: dict[str, Stat] = {s.json: s for s in STATS}
LOGGED: tuple[Stat, ...] = tuple(s for s in STATS if s.patterns)

# One pass over the log for every figure (a regex pass is dear under emulation): group s<i>_<j>
# is pattern j of statistic i.
_ONE_PASS = re.compile(
    "|".join(p.replace("(", f"(?P<s{i}_{j}>", 1) for i, s in enumerate(LOGGED) for j, p in enumerate(s.patterns))
)


_GROUPS = [(s, [f"s{i}_{j}" for j in range(len(s.patterns))]) for i, s in enumerate(LOGGED)]


def parse_stats(log: str) -> dict[str, Any]:
    """The statistics in a verifier log, by JSON name (missing ones None; the last match of each
    pattern wins): exactly what compat_agent.verifierlog.parse_stats has always returned."""
    found: dict[str, str] = {}
    for m in _ONE_PASS.finditer(log):
        group = m.lastgroup
        if group:
            found[group] = m.group(group)
    stats: dict[str, Any] = {}
    for s, groups in _GROUPS:
        raw = None
        for g in groups:
            if g in found:
                raw = found[g]
                break
        if raw is None:
            stats[s.json] = None
        elif s.many:
            stats[s.json] = [int(x) for x in raw.split("+")]
        else:
            stats[s.json] = int(raw)
    return stats


def compared() -> tuple[str, ...]:
    """The JSON names of the statistics comparisons show (compare.py's STAT_KEYS)."""
    return tuple(s.json for s in STATS if s.compared)


def steady() -> tuple[str, ...]:
    """The compared statistics whose change is a change of the program (not time, which always moves)."""
    return tuple(s.json for s in STATS if s.compared and not s.noisy)


def labels() -> dict[str, str]:
    """Report labels of the compared statistics (compare.py's STAT_LABELS)."""
    return {s.json: s.label for s in STATS if s.compared}


def schema_properties() -> dict[str, Any]:
    """The JSON schema of a result's stats object (result-v1.json's), from the table."""
    return {
        s.json: {"type": ["array", "null"], "items": {"type": "integer"}}
        if s.many
        else {"$ref": "#/$defs/nullable_int"}
        for s in STATS
    }
