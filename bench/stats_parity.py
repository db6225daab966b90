"""The table-driven statistics parser reads real verifier logs as the agent's parser does.

    python bench/stats_parity.py RESULT.json [RESULT.json ...]

For every record's verifier log in the result files (compat/v1), compares
compat_agent.wire.stats.parse_stats with the agent's parser before the table (kept below as
the reference: the agent now uses the table's) and times both.
Prints the disagreements and a summary; exit 0 when they agree on every log, 1 otherwise, 2 on
bad input. (The logs of a result file are too big to commit as fixtures: this runs on the ones
you have.)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "guest-agent"))

import re  # noqa: E402

from compat_agent.wire.stats import parse_stats  # noqa: E402

# The agent's parser before the table (compat_agent/verifierlog.py until issue 15), verbatim.
_STATS = re.compile(
    r"processed (?P<insns_processed>\d+) insns|total_states (?P<states_total>\d+)|"
    r"peak_states (?P<states_peak>\d+)|verification time (?P<verification_time_us>\d+) usec|"
    r"stack depth (?P<stack_depth>\d+(?:\+\d+)*)|BPF program is too large\. Processed (?P<too_large>\d+) insn"
)


def agent_parse_stats(log: str) -> dict:
    """Verifier statistics from a log (missing ones are None); the last match of each wins."""
    found: dict[str, str] = {}
    for m in _STATS.finditer(log):
        assert m.lastgroup
        found[m.lastgroup] = m.group(m.lastgroup)
    stats: dict = {
        key: int(found[key]) if key in found else None
        for key in ("insns_processed", "states_total", "states_peak", "verification_time_us")
    }
    if stats["insns_processed"] is None and "too_large" in found:
        stats["insns_processed"] = int(found["too_large"])
    stats["stack_depth"] = [int(x) for x in found["stack_depth"].split("+")] if "stack_depth" in found else None
    return stats


def main(argv: list[str]) -> int:
    """Compare both parsers on every log of the result files."""
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    logs: list[str] = []
    for name in argv:
        try:
            result = json.loads(Path(name).read_text())
        except (OSError, ValueError) as e:
            print(f"stats_parity: error: cannot read {name}: {e}", file=sys.stderr)
            return 2
        logs += [r["log"] for r in result.get("results") or [] if isinstance(r, dict) and isinstance(r.get("log"), str)]
    differ = [log for log in logs if parse_stats(log) != agent_parse_stats(log)]
    for log in differ[:10]:
        print(f"differs: {log[-200:]!r}\n  table: {parse_stats(log)}\n  agent: {agent_parse_stats(log)}")
    timing = {}
    for label, parse in (("table", parse_stats), ("agent", agent_parse_stats)):
        t = time.perf_counter()
        for log in logs:
            parse(log)
        timing[label] = time.perf_counter() - t
    size = sum(len(log) for log in logs) / 1e6
    print(
        f"{len(logs) - len(differ)}/{len(logs)} logs ({size:.1f} MB) parse the same; "
        f"table {timing['table'] * 1000:.0f} ms, agent {timing['agent'] * 1000:.0f} ms"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
