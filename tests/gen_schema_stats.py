"""Write the stats properties of the result schema from the table of verifier statistics.

    python tests/gen_schema_stats.py [--check]

compat/results/schema/result-v1.json stays a plain file users can read; its "stats" object's
properties come from compat_agent.wire.stats (one line each, in the table's order). After adding
a statistic to the table, run this once; --check (what tests/unit/test_stats_table.py runs)
exits 1 when the file is not what the table says.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "compat" / "results" / "schema" / "result-v1.json"
sys.path.insert(0, str(ROOT / "guest-agent"))

from compat_agent.wire import stats  # noqa: E402

# The stats object's properties block: its indentation, the lines inside, the closing brace.
_BLOCK = re.compile(r'("stats": \{\n\s*"type": "object",\n\s*"properties": \{\n)(.*?)(\n(\s*)\})', re.S)


def generated(text: str) -> str:
    """The schema's text with the stats properties the table gives (everything else untouched)."""
    m = _BLOCK.search(text)
    if m is None:
        raise SystemExit(f"gen_schema_stats: no stats properties block in {SCHEMA}")
    indent = m.group(4) + "  "
    props = stats.schema_properties()
    body = ",\n".join(f"{indent}{json.dumps(name)}: {json.dumps(value)}" for name, value in props.items())
    return text[: m.start(2)] + body + text[m.end(2) :]


def main(argv: list[str]) -> int:
    """Rewrite the schema (or, with --check, say whether it is up to date)."""
    text = SCHEMA.read_text()
    new = generated(text)
    if "--check" in argv:
        if new != text:
            print(f"{SCHEMA} is not what the stats table says: run python tests/gen_schema_stats.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        SCHEMA.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
