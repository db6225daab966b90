"""The table of verifier statistics drives every consumer: adding a statistic is one row.

The proof: a copy of compat_agent/wire/stats.py with one more row is installed before anything
imports it (in a fresh interpreter), and the agent's parser and record, the wire's StatsRecord,
the host's reply validation, the comparison, the reports and the schema generator all pick the
new statistic up. The row itself is the only change; the agent needs nothing more for a figure
the kernel writes into its log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATS_PY = ROOT / "guest-agent" / "compat_agent" / "wire" / "stats.py"
EXTRA_ROW = (
    '    Stat("jited_bytes", "jited", "bytes", (r"jited (\\d+) bytes",), compared=True,\n'
    '         doc="a statistic that does not exist: the test of a one-row change"),\n'
)

PROGRAM = r'''
import importlib.util, sys
from pathlib import Path

import compat_agent.wire as wire_pkg

source = Path(sys.argv[1]).read_text()
end = source.index(")  # fmt: skip")
source = source[:end] + sys.argv[2] + source[end:]
spec = importlib.util.spec_from_loader("compat_agent.wire.stats", loader=None)
module = importlib.util.module_from_spec(spec)
module.__package__ = "compat_agent.wire"
sys.modules["compat_agent.wire.stats"] = module
exec(compile(source, sys.argv[1], "exec"), module.__dict__)
wire_pkg.stats = module

from compat_agent.checker.state import ProgState
from compat_agent.wire import messages
from compat_agent.wire.stats import parse_stats

from compat.guest import guestmsg
from compat.reports import render
from compat.results import compare
from compat.results.model import KernelInfo, ObjectInfo, ProgramResult, RunResult
from tests.gen_schema_stats import SCHEMA, generated

# The agent: its parser reads the figure, its record carries it.
log = "processed 9 insns (limit 1000000) max_states_per_insn 0 total_states 2\njited 77 bytes\n"
assert parse_stats(log)["jited_bytes"] == 77, parse_stats(log)
state = ProgState(name="p", section="xdp", prog_type=6, type_name="xdp", eat=0, attach_type=None,
                  attach_target=None, insn_cnt=3, helpers=[], kfuncs=[], initial_autoload=True)
assert state.record()["stats"]["jited_bytes"] is None
state.stats = parse_stats(log)
record = state.record()
assert list(record["stats"]) == [s.json for s in module.STATS] and record["stats"]["jited_bytes"] == 77

# The wire and the host's validation of the guest's reply.
assert "jited_bytes" in messages.StatsRecord.__dataclass_fields__
assert messages.StatsRecord.from_json({"jited_bytes": 5}).jited_bytes == 5
try:
    messages.StatsRecord.from_json({"jited_bytes": "5"})
    raise AssertionError("a string was accepted")
except messages.WireError as e:
    assert str(e).startswith("jited_bytes:"), e
reply = {"type": "check_result", "open": {"ok": True}, "programs": [
    {"program": "p", "verdict": "accepted", "stats": {"jited_bytes": "x"}}]}
assert "jited_bytes" in (guestmsg.problem(reply, "check_result") or ""), guestmsg.problem(reply, "check_result")

# Comparison and reports.
assert compare.STAT_KEYS[-1] == "jited_bytes" and compare.STAT_LABELS["jited_bytes"] == "jited"
assert "jited_bytes" in compare.STEADY_STATS


def run(jited):
    k = KernelInfo(id="6.1", label="6.1", version="6.1.1")
    r = ProgramResult(object="a.o", object_sha256="1" * 64, program="p", section="xdp", prog_type="xdp",
                      kernel="6.1", verdict="accepted",
                      stats={"insns_processed": 9, "states_total": 2, "jited_bytes": jited})
    return RunResult(kernels=[k], objects=[ObjectInfo(object="a.o", path="a.o")], results=[r])


comparison = compare.compare(run(90), run(77))
cell = comparison.cell("a.o", "p", "6.1")
assert cell.stats["jited_bytes"].delta == 13 and cell.stats_changed()
for fmt, words in (("table", "jited 77 → 90"), ("markdown", "| jited |")):
    text = render(fmt, run(90), comparison)
    assert words in text, (fmt, text)

# The schema file's generator.
assert '"jited_bytes": {"$ref": "#/$defs/nullable_int"}' in generated(SCHEMA.read_text())
print("ok")
'''


def test_one_more_row_reaches_every_consumer():
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(STATS_PY), EXTRA_ROW],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_the_schema_file_is_what_the_table_says():
    check = [sys.executable, "tests/gen_schema_stats.py", "--check"]
    out = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
