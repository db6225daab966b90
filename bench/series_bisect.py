"""Bisect benchmark (issue 17): `compat bisect` of one object across a whole stable series.
(Not named bench/bisect.py: that would shadow the standard library's bisect module, which
statistics imports, in every script of bench/.)

    nice python bench/series_bisect.py [--series 6.12] [--object OBJ] [--warm-runs 3] [--keep DIR]
    nice python bench/series_bisect.py --cold-only 2 --object OBJ --out bisect-cold.json

1. cold: a private cache (in a temporary directory next to the default cache, so that it can be
   hard-linked) holding only what a cache of the default matrix holds: the apt root, the guest
   images and initramfs, and the default matrix's kernels (their entries, boot images and module
   indexes), hard-linked from the default cache (cp -al). No verdict is cached (results, probes
   and snapshots are left out: every check runs in a guest). One bisect: the releases it needs
   are downloaded, unpacked and booted.
2. cold, --exhaustive: every other release of the series fetched, booted and checked (the upper
   bound of any bisect's cost, and the sweep a bisect's boundaries are checked against).
3. warm: the same bisects on that cache, now holding every kernel, verdicts from the result
   cache (median of --warm-runs); and the exhaustive one with --no-cache (every release restored
   from its snapshot and verified again).

With --cold-only N, only the cold bisect, N times, each from a fresh private cache. An object whose
verdict changes in the series is the real test: its search has rounds.

Targets (issue 17): cold under 2 minutes, warm under 20 s, on 2 cores without KVM.
Writes bench/results/bisect.json (machine, object, releases checked, rounds, seconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine, summary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.cache import Cache
from compat.kernels.matrix import load_matrix
from compat.kernels.sources import KernelStore
from compat.paths import cache_root

ROOT = Path(__file__).resolve().parents[1]

COMPAT = [str(ROOT / ".venv" / "bin" / "python"), "-m", "compat"]
# Kinds copied whole (what any cache that ran the default matrix has) and kinds copied only for
# the default matrix's kernels (entries named by the kernel's cache key).
WHOLE = ("apt", "images", "initrd", "state")
PER_KERNEL = ("kernels", "boot", "modsyms", "changelogs")


def private_cache(dest: Path) -> list[str]:
    """Fill dest with hard links of the default cache's apt root, images and the default matrix's
    kernels; the kernel keys copied."""
    src = cache_root()
    store = KernelStore(Cache(src))
    keys = [store.resolve(spec).key for spec in load_matrix().kernels]
    dest.mkdir(parents=True)
    for kind in WHOLE:
        if (src / kind).is_dir():
            subprocess.run(["cp", "-al", str(src / kind), str(dest / kind)], check=True)
    # The hash memo is rewritten in place by os.replace: a copy, not a link, all the same.
    memo = dest / "state" / "hashes.json"
    if memo.exists():
        memo.unlink()
        shutil.copy2(src / "state" / "hashes.json", memo)
    for kind in PER_KERNEL:
        (dest / kind).mkdir(exist_ok=True)
        for entry in (src / kind).glob("*"):
            if any(entry.name.startswith(k) for k in keys):
                subprocess.run(["cp", "-al", str(entry), str(dest / kind / entry.name)], check=True)
    return keys


def bisect(cache: Path, obj: str, series: str, *extra: str) -> tuple[float, dict]:
    """Seconds of one `compat bisect --format json` run and its document."""
    start = time.monotonic()
    done = subprocess.run([*COMPAT, "--cache", str(cache), "bisect", obj, "--series", series, "--format", "json",
                           *extra], capture_output=True, text=True)  # fmt: skip
    seconds = time.monotonic() - start
    if done.returncode not in (0, 3):
        raise SystemExit(f"bisect failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return seconds, json.loads(done.stdout)


def _facts(doc: dict) -> dict:
    return {
        "releases": len(doc["releases"]),
        "checked": doc["releases_checked"],
        "rounds": doc["rounds"],
        "changes": [(c["object"], c["program"], c["before"]["version"], c["after"]["version"],
                     c["before"]["verdict"], c["after"]["verdict"], len(c["suspects"])) for c in doc["changes"]],
        "failed": doc["failed_releases"],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="6.12")
    ap.add_argument("--object", default=str(ROOT / "build" / "programs" / "counter.o"),
                    help="the object to bisect (one whose verdict changes in the series is the real test)")  # fmt: skip
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--no-exhaustive", dest="exhaustive", action="store_false",
                    help="skip the --exhaustive legs (which fetch and boot every release of the series)")  # fmt: skip
    ap.add_argument("--keep", type=Path, help="use (and keep) this private cache directory instead of a temporary one")
    ap.add_argument("--cold-only", type=int, metavar="N",
                    help="only the cold bisect, N times, each from its own fresh cache")  # fmt: skip
    ap.add_argument("--out", default="bisect.json", help="file name under bench/results/")
    args = ap.parse_args()
    doc: dict = {"machine": machine(), "series": args.series, "object": Path(args.object).name}

    def leg(name: str, *extra: str) -> None:
        seconds, out = bisect(cache, args.object, args.series, *extra)
        doc[name] = {"seconds": round(seconds, 1), **_facts(out)}
        print(f"{name}: {seconds:.1f} s, {len(out['releases_checked'])} releases checked", flush=True)

    def warm(name: str, *extra: str) -> None:
        doc[name] = summary([bisect(cache, args.object, args.series, *extra)[0] for _ in range(args.warm_runs)])
        print(f"{name}: {doc[name]}", flush=True)

    if args.cold_only:
        for n in range(1, args.cold_only + 1):
            with tempfile.TemporaryDirectory(dir=cache_root().parent) as tmp:
                doc["default_kernels"] = private_cache(Path(tmp) / "cache")
                seconds, out = bisect(Path(tmp) / "cache", args.object, args.series)
                doc[f"cold_{n}"] = {"seconds": round(seconds, 1), **_facts(out)}
                print(f"cold {n}: {seconds:.1f} s, {len(out['releases_checked'])} releases checked", flush=True)
        doc["targets"] = {"cold_s": 120}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(json.dumps(doc, indent=1))
        return
    with tempfile.TemporaryDirectory(dir=cache_root().parent) as tmp:
        cache = args.keep or Path(tmp) / "cache"
        if not cache.exists():
            doc["default_kernels"] = private_cache(cache)
        leg("cold")  # from a cache of the default matrix only
        if args.exhaustive:
            leg("cold_exhaustive", "--exhaustive")  # every other release fetched and booted
        warm("warm")  # every kernel cached, verdicts from the result cache
        if args.exhaustive:
            warm("warm_exhaustive", "--exhaustive")
            leg("warm_exhaustive_no_result_cache", "--exhaustive", "--no-cache")  # every release verified again
    doc["targets"] = {"cold_s": 120, "warm_s": 20}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
