"""Foundation benchmark: kernel fetch, guest image build and boot time per kernel.

    python bench/foundation.py [--runs N] [--kernel ID ...]

Fetch and image build run into a fresh cache each time (the archive index is shared, so what
is measured is download + verify + extract, not the index refresh). Boots are measured one
VM at a time (cold boot to agent ready), then all kernels at once as `compat vm smoke` does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from common import machine, report, summary, timed

from compat.cache import Cache
from compat.guest.fleet import Fleet
from compat.guest.image import ImageBuilder
from compat.guest.vm import VM, VMConfig
from compat.kernels.matrix import load_matrix
from compat.kernels.sources import KernelStore


def scratch_cache(real: Cache) -> Cache:
    root = Path(tempfile.mkdtemp(prefix="compat-bench-"))
    os.symlink(real.dir("apt"), root / "apt")  # share the archive index, not the entries
    return Cache(root)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--fetch-runs", type=int, default=3)
    ap.add_argument("--kernel", action="append")
    args = ap.parse_args()
    real = Cache()
    specs = load_matrix().select(args.kernel)
    store = KernelStore(real)
    builder = ImageBuilder(real)
    image = builder.build()
    kernels = [store.fetch(s) for s in specs]
    accel = Fleet(real, specs).ensure_accel()
    rows = []

    for spec, kernel in zip(specs, kernels, strict=True):
        fetch = []
        for _ in range(args.fetch_runs):
            cache = scratch_cache(real)
            try:
                fetch.append(timed(KernelStore(cache).fetch, spec)[0])
            finally:
                shutil.rmtree(cache.root)
        boots = []
        initrd = builder.initrd(image, kernel)
        for _ in range(args.runs):
            with VM(VMConfig(store.boot_image(kernel), initrd, accel=accel), spec.id) as vm:
                vm.start()
                boots.append(vm.boot_seconds)
        rows.append(
            {
                "what": f"kernel {spec.id} ({kernel.version})",
                "fetch s (median)": summary(fetch)["median"],
                "boot s (median)": summary(boots)["median"],
                "boot min": summary(boots)["min"],
                "boot max": summary(boots)["max"],
            }
        )

    builds = []
    for _ in range(args.fetch_runs):
        cache = scratch_cache(real)
        try:
            builds.append(timed(ImageBuilder(cache).build)[0])
        finally:
            shutil.rmtree(cache.root)
    what = f"guest image build ({image.size / 1e6:.1f} MB)"
    rows.append({"what": what, "fetch s (median)": summary(builds)["median"]})

    walls = []
    for _ in range(max(3, args.runs // 2)):
        fleet = Fleet(real, specs)
        fleet.prepare()
        wall, _ = timed(fleet.run, lambda vm, k: None)
        walls.append(wall)
    what = f"all {len(specs)} kernels at once, as compat boots them (snapshots; {os.cpu_count()} cores)"
    rows.append({"what": what, "boot s (median)": summary(walls)["median"]})
    report("foundation", rows, machine(accel))


if __name__ == "__main__":
    main()
