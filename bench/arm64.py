"""arm64 speed benchmark (issue 18): arm64 guests under software emulation on this host.

    python bench/arm64.py [--runs N] [--only boot,a,c] [--series 6.12] [--label L]

Measures, medians of --runs runs (default 5), with the default cache (kernels, guest images,
snapshots and probes warm; a first check warms them when they are not):

  boot  per arm64 kernel of the default matrix, QEMU start to a ready agent: cold boot vs
        restore from the snapshot (qemu-system-aarch64 -M virt, TCG, compat's CPU model)
  (a)   1 object x the four default series on arm64, end to end (`compat check --arch arm64
        --no-cache`, a new process; target under 4 s)
  (c)   per-object check time in a warm guest (the host's round trip of the product's check
        request, one guest at a time), arm64 against amd64 on the same series (--series), for the
        programs/ objects
  cpu   (with --only cpu) the CPU model: cold boots of the first arm64 kernel with each model of
        CPU_MODELS (why compat boots neoverse-n1)

Writes a table and bench/results/arm64[-LABEL].json (machine, accel and every sample).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import machine, report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bpf_build import build_programs
from speed import cli, guest_times, measure_boot, med, row

from compat.cache import Cache
from compat.guest import vm as vmmod
from compat.guest.accel import qemu_version
from compat.guest.fleet import Fleet
from compat.guest.vm import VM, VMConfig
from compat.kernels.matrix import load_matrix

TARGET_A = 4.0
CPU_MODELS = ["neoverse-n1", "cortex-a72", "max,pauth=off", "max,pauth-impdef=on", "max"]


def cpu_models(cache: Cache, spec, runs: int) -> list[dict]:
    """Cold boots of one arm64 kernel with each CPU model (the table's choice is the first)."""
    fleet = Fleet(cache, [spec])
    fleet.prepare()
    kernel = fleet.store.fetch(spec)
    initrd = fleet.builder_for("arm64").initrd(fleet.image_for("arm64"), kernel)
    config = VMConfig(fleet.store.boot_image(kernel), initrd, accel="tcg", arch="arm64")
    rows = []
    chosen = vmmod.ARCH_BOOT["arm64"]
    try:
        for model in CPU_MODELS:
            vmmod.ARCH_BOOT["arm64"] = vmmod.ArchBoot(**{**chosen.__dict__, "tcg_cpu": model})
            samples = []
            for _ in range(runs):
                with VM(config, spec.id) as vm:
                    vm.start()
                    samples.append(vm.boot_seconds)
            rows.append(row(f"cpu {model}: cold boot {spec.id}", samples))
    finally:
        vmmod.ARCH_BOOT["arm64"] = chosen
    return rows


def per_object(cache: Cache, series: str, programs: dict[str, Path], runs: int) -> tuple[list[dict], dict]:
    """The check round trip of each programs/ object on one series, amd64 against arm64."""
    objects = [programs[n] for n in sorted(programs)]
    amd64 = [s for s in load_matrix().kernels if s.id == series]
    arm64 = [s for s in load_matrix(arch="arm64").kernels if s.id == f"{series}-arm64"]
    times = {"amd64": guest_times(cache, amd64, objects, runs, attach=True)[amd64[0].id],
             "arm64": guest_times(cache, arm64, objects, runs, attach=True)[arm64[0].id]}  # fmt: skip
    rows = []
    for obj in objects:
        a, b = med(times["amd64"][obj.name]["rtt"]), med(times["arm64"][obj.name]["rtt"])
        same = times["amd64"][obj.name].get("verdicts") == times["arm64"][obj.name].get("verdicts")
        rows.append({"measurement": f"(c) {obj.name} on {series}", "amd64 ms": round(a, 1), "arm64 ms": round(b, 1),
                     "arm64/amd64": round(b / a, 2) if a else None, "same verdicts": same})  # fmt: skip
    total_a = sum(med(times["amd64"][o.name]["rtt"]) for o in objects)
    total_b = sum(med(times["arm64"][o.name]["rtt"]) for o in objects)
    rows.append({"measurement": f"(c) all {len(objects)} objects on {series}", "amd64 ms": round(total_a, 1),
                 "arm64 ms": round(total_b, 1), "arm64/amd64": round(total_b / total_a, 2),
                 "same verdicts": ""})  # fmt: skip
    return rows, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="boot,a,c", help="comma-separated: boot,a,c,cpu")
    ap.add_argument("--series", default="6.12", help="the series (c) compares amd64 and arm64 on")
    ap.add_argument("--label", default="", help="results go to bench/results/arm64-LABEL.json")
    args = ap.parse_args()
    only = set(args.only.split(","))
    cache = Cache()
    specs = load_matrix(arch="arm64").kernels
    work = Path(tempfile.mkdtemp(prefix="compat-arm64-"))
    rows: list[dict] = []
    raw: dict = {}
    programs = build_programs(work / "programs")
    counter = programs["counter"]
    # Warm every cache (kernels, image, snapshots, probes) the measurements rely on.
    cli("check", *map(str, programs.values()), "--arch", "arm64", "--no-cache", "--format", "json",
        "--output", os.devnull)  # fmt: skip
    if "boot" in only:
        rows += measure_boot(cache, specs, args.runs)
    if "cpu" in only:
        rows += cpu_models(cache, specs[0], args.runs)
    if "a" in only:
        samples = [
            cli("check", str(counter), "--arch", "arm64", "--no-cache", "--format", "json", "--output", os.devnull)[0]
            for _ in range(args.runs)
        ]
        raw["a"] = samples
        rows.append(row(f"(a) 1 object x {len(specs)} arm64 kernels, caches warm (compat check --arch arm64 "
                        "--no-cache)", samples, target=TARGET_A,
                        detail="end to end: a new process, snapshots restored, every object verified"))  # fmt: skip
    if "c" in only:
        more, raw["c"] = per_object(cache, args.series, programs, args.runs)
        rows += more
    meta = {**machine("tcg"), "qemu_aarch64": qemu_version("arm64"), "cpu_model": vmmod.cpu_model("tcg", "arm64")}
    report(f"arm64-{args.label}" if args.label else "arm64", rows, {**meta, "raw": raw})


if __name__ == "__main__":
    sys.exit(main())
