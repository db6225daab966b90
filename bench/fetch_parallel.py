"""Kernel fetch benchmark: several uncached point releases fetched one at a time, then in the
small pool KernelStore.fetch_all uses (sources.FETCH_WORKERS).

    python bench/fetch_parallel.py [--series 6.1] [--count 3] [--workers 3]

Each mode gets its own private cache (in a temporary directory) whose apt root is a hard-linked
copy of the default cache's, so only the kernel packages are downloaded and unpacked: the
`count` oldest point releases of the series, which the default matrix does not hold.
Writes bench/results/fetch_parallel.json.
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

from common import RESULTS, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.cache import Cache
from compat.kernels.matrix import KernelSpec
from compat.kernels.series import release_versions
from compat.kernels.sources import FETCH_WORKERS, KernelStore
from compat.paths import cache_root


def fetch(versions: list[str], workers: int, tmp: Path) -> float:
    """Seconds to fetch the versions into a fresh private cache sharing the default apt root."""
    root = tmp / f"cache-{workers}"
    root.mkdir()
    subprocess.run(["cp", "-al", str(cache_root() / "apt"), str(root / "apt")], check=True)
    store = KernelStore(Cache(root))
    specs = [KernelSpec(id=v, label=v, version=v) for v in versions]
    for spec in specs:
        store.resolve(spec)  # the apt questions are memoised: not part of the measure
    start = time.monotonic()
    results = store.fetch_all(specs, workers=workers)
    seconds = time.monotonic() - start
    failed = [str(r) for r in results if not hasattr(r, "vmlinuz")]
    if failed:
        raise SystemExit(f"fetch failed: {failed[0]}")
    shutil.rmtree(root)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="6.1")
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--workers", type=int, default=FETCH_WORKERS)
    args = ap.parse_args()
    versions = release_versions(KernelStore(Cache()), args.series)[: args.count]
    with tempfile.TemporaryDirectory(dir=cache_root().parent) as tmp:
        serial = fetch(versions, 1, Path(tmp))
        parallel = fetch(versions, args.workers, Path(tmp))
    doc = {"machine": machine(), "versions": versions, "serial_s": round(serial, 1),
           f"parallel_{args.workers}_s": round(parallel, 1)}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fetch_parallel.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
