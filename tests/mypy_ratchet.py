"""Type checking with a ratchet: no module may get more mypy errors than it has today.

    python tests/mypy_ratchet.py            # what .ci/run runs
    python tests/mypy_ratchet.py --update   # after fixing errors: lower the baseline to what is left

mypy runs once with the configuration in pyproject.toml ([tool.mypy]: the wire contract and the
modules issue 15 typed are strict there). tests/mypy_baseline.json holds the number of errors
each module has; a module it does not list has none (every strict module is one). The check
fails (exit 1) when a module has more errors than its baseline, and says how to lower the
baseline when it has fewer; --update writes the lower counts, and refuses to raise one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tests" / "mypy_baseline.json"
_ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):\d+(?::\d+)?: error: ")


def run_mypy() -> tuple[Counter[str], str]:
    """mypy's errors per file (paths relative to the checkout), and its whole output."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context", "--no-pretty"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode not in (0, 1) or "errors prevented further checking" in done.stderr + done.stdout:
        raise SystemExit(f"mypy_ratchet: mypy failed to run (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    counts: Counter[str] = Counter()
    for line in done.stdout.splitlines():
        m = _ERROR.match(line)
        if m:
            counts[m.group("path")] += 1
    return counts, done.stdout


def load_baseline() -> dict[str, int]:
    """The committed error count per file (missing file: none anywhere)."""
    if not BASELINE.exists():
        return {}
    doc = json.loads(BASELINE.read_text())
    return {str(k): int(v) for k, v in doc.items()}


def main(argv: list[str]) -> int:
    """Compare mypy's errors with the baseline (or lower it with --update)."""
    counts, output = run_mypy()
    baseline = load_baseline()
    worse = {f: (n, baseline.get(f, 0)) for f, n in counts.items() if n > baseline.get(f, 0)}
    better = {f: (counts.get(f, 0), n) for f, n in baseline.items() if counts.get(f, 0) < n}
    if worse and not (baseline == {} and "--update" in argv):  # the first --update writes the baseline
        for f, (n, base) in sorted(worse.items()):
            print(f"mypy_ratchet: {f}: {n} type error(s), the baseline allows {base}", file=sys.stderr)
        shown = [line for line in output.splitlines() if line.split(":", 1)[0] in worse]
        print("\n".join(shown), file=sys.stderr)
        print("mypy_ratchet: fix the new errors (python -m mypy shows them all)", file=sys.stderr)
        return 1
    if "--update" in argv:
        BASELINE.write_text(json.dumps({f: n for f, n in sorted(counts.items()) if n}, indent=1) + "\n")
        print(f"mypy_ratchet: baseline written: {sum(counts.values())} error(s) in {len(counts)} file(s)")
        return 0
    for f, (n, base) in sorted(better.items()):
        print(f"mypy_ratchet: {f}: {n} type error(s), fewer than the baseline's {base}: lower it with "
              "python tests/mypy_ratchet.py --update")  # fmt: skip
    print(f"mypy_ratchet: {sum(counts.values())} type error(s), none above the baseline "
          f"({sum(baseline.values())})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
