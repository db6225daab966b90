"""Compare two result files cell by cell: did a change keep every verdict the same?

    python bench/same_verdicts.py BEFORE.json AFTER.json [--fields verdict,stage,...]

A cell is one object × program × kernel (kernels matched by matrix id, objects by file name and
sha256). For each cell in either file it compares the fields that make the verdict and its
explanation: verdict, stage, reason, message, errno, program type and where the type came from,
and the attach status with its reason. Prints one line per difference (at most --show) and a
summary line; exit 0 when the two files agree on every cell, 1 when they differ, 2 on bad input.

Used to hold a redesign to "behaviour stays the same": save the result JSON of
`compat check --format json` before, and after. bench/results/redesign/ keeps the results of
`programs/` and of the Debian corpus (bench/corpus.py) on the default matrix from before the
host/guest contract redesign (gzip: either file may end in .gz).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

FIELDS = ("verdict", "stage", "reason", "message", "errno", "prog_type", "prog_type_from", "attach.status",
          "attach.reason")  # fmt: skip


def _get(record: dict, field: str) -> Any:
    value: Any = record
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def cells(doc: dict) -> dict[tuple[str, str, str, str], dict]:
    """The result's records by (object, object sha256, program, kernel)."""
    out = {}
    for r in doc.get("results") or []:
        key = (r.get("object"), r.get("object_sha256"), r.get("program"), r.get("kernel"))
        out[key] = r
    return out


def compare(before: dict, after: dict, fields: tuple[str, ...] = FIELDS) -> list[str]:
    """One line per cell that differs in a field, or that only one of the results has."""
    a, b = cells(before), cells(after)
    lines = []
    for key in sorted(a.keys() | b.keys(), key=lambda k: tuple(str(x) for x in k)):
        name = f"{key[0]}:{key[2]} on {key[3]}"
        if key not in b:
            lines.append(f"{name}: only before")
        elif key not in a:
            lines.append(f"{name}: only after")
        else:
            for f in fields:
                x, y = _get(a[key], f), _get(b[key], f)
                if x != y:
                    lines.append(f"{name}: {f}: {str(x)[:200]!r} -> {str(y)[:200]!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--fields", default=",".join(FIELDS), help="comma-separated record fields (a.b for nested)")
    ap.add_argument("--show", type=int, default=50, help="print at most this many differences")
    args = ap.parse_args(argv)
    try:
        docs = [json.loads(gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_text())
                for p in (args.before, args.after)]  # fmt: skip
    except (OSError, ValueError) as e:
        print(f"same_verdicts: error: {e}", file=sys.stderr)
        return 2
    fields = tuple(f for f in args.fields.split(",") if f)
    diffs = compare(*docs, fields=fields)
    for line in diffs[: args.show]:
        print(line)
    n = len(cells(docs[1]))
    print(f"{len(diffs)} difference(s) over {n} cell(s) in {', '.join(fields)}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
