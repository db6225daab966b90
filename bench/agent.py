"""Agent benchmark: the guest's time per object, and whether every expected verdict holds.

    python bench/agent.py [--runs N] [--label NAME]

For the current guest image (COMPAT_IMAGE_SUITE picks its suite, so its libbpf) and agent:
every programs/ object and bench/programs/many_programs (five programs, two rejected) is
checked on each default kernel, attach on and off, --runs times on a warm guest: the
guest's own check time (median), and how many bpf_object__load calls it made. Then a
`compat check` of the programs/ objects (result cache off) is compared with
programs/expected.yaml. Writes bench/results/agent[-NAME].json.

To compare two agents or images without disturbing the default cache's snapshots, give each
its own cache (COMPAT_CACHE) that shares the kernels: `bench/agent.py --help` is all it takes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from common import RESULTS, machine
from speed import ROOT, build_programs, guest_times  # speed puts tests/ on sys.path for bpf_build
from tabulate import tabulate

from bpf_build import expected_mismatches  # isort: skip (needs the path speed sets)

from compat.cache import Cache
from compat.guest.fleet import Fleet
from compat.kernels.matrix import load_matrix
from compat.run.checker import Checker, CheckOptions, load_objects


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--label", default="", help="results go to bench/results/agent-LABEL.json")
    args = ap.parse_args()
    cache = Cache()
    specs = load_matrix().kernels
    work = Path(tempfile.mkdtemp(prefix="compat-agent-"))
    try:
        programs = build_programs(work / "programs")
        extra = build_programs(work / "extra", programs_dir=ROOT / "bench" / "programs")
        objects = [programs[n] for n in sorted(programs)] + [extra[n] for n in sorted(extra)]

        found, infos, bad = load_objects([str(p) for p in programs.values()])
        assert not bad
        checker = Checker(cache, specs, CheckOptions(result_cache=False))
        result = checker.run(found, infos)
        image = result.image
        problems = expected_mismatches(result.results)

        data = {
            "attach": guest_times(cache, specs, objects, args.runs, attach=True),
            "no_attach": guest_times(cache, specs, objects, args.runs, attach=False),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows, totals = [], {"attach": 0.0, "no_attach": 0.0}
    for kernel in data["attach"]:
        for obj in data["attach"][kernel]:
            on = statistics.median(data["attach"][kernel][obj]["agent"])
            off = statistics.median(data["no_attach"][kernel][obj]["agent"])
            totals["attach"] += on
            totals["no_attach"] += off
            loads = data["attach"][kernel][obj]["loads"]
            rows.append({"kernel": kernel, "object": obj, "check ms (attach)": round(on, 1),
                         "check ms (no attach)": round(off, 1),
                         "loads (attach)": max(loads) if loads and max(loads) else "?"})  # fmt: skip
    rows.append({"kernel": "all", "object": "total", "check ms (attach)": round(totals["attach"], 1),
                 "check ms (no attach)": round(totals["no_attach"], 1)})  # fmt: skip
    print(tabulate(rows, headers="keys"))
    print(f"\nimage: {image}")
    verdicts = "all hold" if not problems else f"{len(problems)} differ:\n  " + "\n  ".join(problems)
    print(f"expected verdicts: {verdicts}")
    meta = machine(Fleet(cache, specs).ensure_accel())
    meta["image"] = image
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (f"agent-{args.label}.json" if args.label else "agent.json")
    out.write_text(json.dumps({"machine": meta, "rows": rows, "expected_mismatches": problems, "samples": data},
                              indent=1))  # fmt: skip
    print(f"written {out}")


if __name__ == "__main__":
    main()
