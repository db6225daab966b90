"""CSV with veristat's column names (tools/testing/selftests/bpf/veristat.c, its CSV output: the
header is each statistic's stat_defs[].names[0]), one row per program × kernel, so that scripts
built around `veristat -o csv` read it by column name.

Columns, in veristat's CSV order, then compat's own:
  file_name, prog_name   the object and the program;
  verdict                success (accepted) or failure (rejected), as veristat writes them; N/A
                         for a cell without a verdict (veristat's word for a missing entry);
  the statistics         every row of the statistics table (compat_agent/wire/stats.py) that
                         names a veristat column (Stat.veristat), in veristat's order: duration
                         (verification time, µs), total_insns, total_states, peak_states,
                         max_states_per_insn, max_mark_read_len, stack_depth (the sum of the
                         frames, as veristat adds them); empty where the kernel's log does not
                         say it (veristat writes 0 there, which would read as a measurement);
  prog_type              libbpf's name of the program type;
  kernel, kernel_version the kernel of the row (a matrix id and its upstream version).
veristat's prog_size, prog_size_jited and attach_type are left out: compat does not measure them.
`veristat -C` itself compares two files of one kernel each and refuses columns it does not know:
cut the kernel columns and keep one kernel's rows for it.
"""

from __future__ import annotations

import csv
import io

from compat_agent.wire.stats import STATS, Stat

from compat.results.compare import Comparison
from compat.results.model import ACCEPTED, REJECTED, RunResult

from . import common, escape

# veristat's default CSV columns, in its order (default_csv_output_spec).
VERISTAT_ORDER = (
    "file_name", "prog_name", "verdict", "duration", "total_insns", "total_states", "peak_states",
    "max_states_per_insn", "max_mark_read_len", "prog_size", "prog_size_jited", "prog_type", "attach_type",
    "stack_depth",
)  # fmt: skip
_KEYS = ("file_name", "prog_name", "verdict", "prog_type")
_BY_VERISTAT: dict[str, Stat] = {s.veristat: s for s in STATS if s.veristat}
COLUMNS = (*(c for c in VERISTAT_ORDER if c in _KEYS or c in _BY_VERISTAT), "kernel", "kernel_version")
VERDICTS = {ACCEPTED: "success", REJECTED: "failure"}


def _stat(stat: Stat, value) -> str:
    if value is None:
        return ""
    if stat.many:  # stack depth per frame: veristat adds the frames up
        return str(sum(int(v) for v in value))
    return str(int(value))


def render(result: RunResult, comparison: Comparison) -> str:
    """The CSV document: a header of veristat's column names, one row per program × kernel
    (programs in first-seen order, kernels along the kernel axis)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for k in common.kernels(result, comparison):
        for obj, prog in common.programs(result):
            r = result.cell(obj, prog, k.id)
            if r is None:
                continue
            values = {
                "file_name": escape.csv_cell(obj), "prog_name": escape.csv_cell(prog),
                "verdict": VERDICTS.get(r.verdict, "N/A"), "prog_type": escape.csv_cell(r.prog_type or ""),
                "kernel": escape.csv_cell(k.id), "kernel_version": escape.csv_cell(common.kernel_version(k, k.id)),
            }  # fmt: skip
            for column, stat in _BY_VERISTAT.items():
                values[column] = _stat(stat, (r.stats or {}).get(stat.json))
            writer.writerow([values[c] for c in COLUMNS])
    return escape.no_commands(out.getvalue())
