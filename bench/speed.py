"""Speed benchmark (issue 6): how long a check takes, where the time goes, and against what.

    python bench/speed.py [--runs N] [--only boot,a,b,b1,c,d,e] [--jobs J] [--no-real] [--native-real]

Measures, medians of --runs runs (default 5), with the default cache (kernels, guest image,
snapshots and probes warm; a first check warms them when they are not):

  boot  per kernel, QEMU start to a ready agent: cold boot vs restore from the snapshot
  (a)   1 object x the default kernels, end to end (`compat check --no-cache`, a new process)
  (b)   50 objects x the default kernels (the programs/ objects in 5 variants each), in process,
        with the scheduler's helpers and without them (kernels packed longest first only);
        b1: the same 50 objects on one kernel (fewer kernels than cores), with and without helpers
  (c)   per-object latency on a warm fleet (one guest at a time): the host's round trip of a
        check request against the guest's own time in bpf_object__load for the verdicts (strict)
        and against the agent's whole check in the guest, for the programs/ objects and for
        real third-party objects from Debian (bench/corpus.py)
  (d)   in-guest / native: the same agent code (compat_agent.checker.check, attach off) with the host's
        libbpf on the host kernel, against the guest's time for the same objects, where both
        sides gave the same verdicts. compat's own objects; with --native-real also the Debian
        objects (loaded, never attached, into the host kernel: the product never loads objects
        on the host, the benchmark does it with Debian's signed objects only when asked)
  (e)   re-check of an unchanged object (`compat check`, result cache warm), end to end

Writes a table and bench/results/speed.json (machine, accel and every sample).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import machine, report, summary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bpf_build import build_programs, compile_command, find_clang, sources  # noqa: E402

from compat.cache import Cache  # noqa: E402
from compat.guest.fleet import Fleet  # noqa: E402
from compat.guest.vm import VM, VMConfig  # noqa: E402
from compat.kernels.matrix import load_matrix  # noqa: E402
from compat.run.checker import Checker, CheckOptions, check_request, load_objects  # noqa: E402

TARGETS = {"a": 3.0, "c": 1.5, "d": 5.0, "e": 0.5}
VARIANTS = 5


# -- objects ---------------------------------------------------------------------------------------
def build_variants(out: Path, count: int = VARIANTS) -> list[Path]:
    """The programs/ objects, each built `count` times with a different constant in .rodata, so
    that every build is a distinct object (content hash) with the same programs and verdicts."""
    clang = find_clang()
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for i in range(count):
        header = out / f"variant{i}.h"
        header.write_text(f"__attribute__((used)) static const volatile unsigned int compat_bench_variant = {i};\n")
        for name, source in sources().items():
            obj = out / f"{name}-v{i}.o"
            cmd = compile_command(clang, source, obj)
            cmd[1:1] = ["-include", str(header)]
            subprocess.run(cmd, check=True, capture_output=True)
            built.append(obj)
    return built


def real_objects() -> list[Path]:
    """The real third-party objects of bench/corpus.py, one of each family of near-copies (the
    ten xdpfilt_* filters differ in constants only)."""
    from corpus import corpus

    seen: set[str] = set()
    out = []
    for path in corpus(warn=lambda message: print(message, file=sys.stderr)):
        family = path.name.split("_")[0] if path.name.startswith("xdpfilt_") else path.name
        if family not in seen:
            seen.add(family)
            out.append(path)
    return out


# -- helpers ---------------------------------------------------------------------------------------
# An installed compat has its bytecode compiled; a PYTHONDONTWRITEBYTECODE inherited from the
# bench's environment would have every run compile every module again (~0.1 s of each (e) run).
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "compat", *args], capture_output=True, text=True, env=CLI_ENV)
    took = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"compat {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return took, proc


def status(value: float | None, target: float | None) -> str:
    if value is None or target is None:
        return ""
    return "met" if value <= target else "not met"


def row(what: str, samples: list[float], unit: str = "s", target: float | None = None, detail: str = "") -> dict:
    s = summary(samples)
    return {
        "measurement": what,
        "median": s["median"],
        "min": s["min"],
        "max": s["max"],
        "runs": s["runs"],
        "unit": unit,
        "target": f"<= {target}" if target is not None else "",
        "status": status(s["median"], target),
        "detail": detail,
    }


# -- boot: cold vs snapshot --------------------------------------------------------------------------
def measure_boot(cache: Cache, specs, runs: int) -> list[dict]:
    """Cold boot and snapshot restore of each kernel (of its own architecture: bench/arm64.py
    measures the arm64 builds with this too)."""
    fleet = Fleet(cache, specs)
    fleet.prepare()
    assert fleet.snapshots is not None
    rows = []
    for spec in specs:
        kernel = fleet.store.fetch(spec)
        accel = fleet.accel_for(spec.arch)
        initrd = fleet.builder_for(spec.arch).initrd(fleet.image_for(spec.arch), kernel)
        config = VMConfig(fleet.store.boot_image(kernel), initrd, accel=accel, arch=spec.arch)
        cold, restored = [], []
        for _ in range(runs):
            with VM(config, spec.id) as vm:
                vm.start()
                cold.append(vm.boot_seconds)
        found = fleet.snapshots.find(config)
        if found is None:  # no snapshot yet: make one through the fleet
            fleet._release(fleet._boot(kernel, accel))
            found = fleet.snapshots.find(config)
        assert found is not None
        size = found[0].stat().st_size / 1e6
        for _ in range(runs):
            with VM(replace(config, restore=found[0]), spec.id) as vm:
                vm.start()
                restored.append(vm.boot_seconds)
        rows.append(row(f"boot {spec.id} ({kernel.version}): cold", cold))
        rows.append(row(f"boot {spec.id} ({kernel.version}): snapshot restore", restored,
                        detail=f"{statistics.median(cold) / statistics.median(restored):.1f}x faster than cold, "
                        f"state {size:.0f} MB"))  # fmt: skip
    return rows


# -- (c) and (d): per-object times in the guests and on the host ---------------------------------------
def guest_times(cache: Cache, specs, objects: list[Path], runs: int, attach: bool) -> dict:
    """{kernel id: {object: {"rtt": [ms], "agent": [ms], "load": [ms], "verify": [ms]}}} on a warm
    fleet, one guest at a time (so no request competes with another guest for a core)."""
    fleet = Fleet(cache, specs, jobs=1)
    blobs = [(p.name, p.read_bytes()) for p in objects]

    def work(session, kernel):
        out = {}
        for name, data in blobs:
            request = check_request(name, data, attach)  # the product's own request
            session.request(request, data, timeout=900)  # first one: the guest's code translation
            samples: dict[str, list] = {"rtt": [], "agent": [], "load": [], "verify": [], "loads": []}
            for _ in range(runs):
                t0 = time.perf_counter()
                reply, _ = session.request(request, data, timeout=900)
                samples["rtt"].append((time.perf_counter() - t0) * 1000)
                samples["agent"].append(float(reply.get("duration_ms") or 0.0))
                loads = (reply.get("timing") or {}).get("loads") or []
                samples["load"].append(sum(x["ms"] for x in loads if x.get("level") == 4))
                samples["loads"].append(len(loads))
                samples["verify"].append(
                    sum((p.get("stats") or {}).get("verification_time_us") or 0 for p in reply["programs"]) / 1000
                )
                samples["verdicts"] = [p["verdict"] for p in reply["programs"]]
            out[name] = samples
        return out

    outcomes = fleet.run(work)
    bad = [f"{o.spec.id}: {o.error}" for o in outcomes if o.error]
    if bad:
        raise SystemExit("guest measurement failed: " + "; ".join(bad))
    return {o.spec.id: o.value for o in outcomes}


NATIVE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from compat_agent import libbpf as lb
from compat_agent.checker.check import check
from compat_agent.elf.analysis import analyze_elf, elf_to_json
runs = int(sys.argv[2])
out = {"libbpf": lb.version(), "objects": {}}
for path in sys.argv[3:]:
    data = open(path, "rb").read()
    name = path.rsplit("/", 1)[-1]
    request = {"type": "check", "object": name, "attach": False, "elf": elf_to_json(analyze_elf(data))}
    check(request, data)
    samples = {"agent": [], "load": [], "verdicts": []}
    for _ in range(runs):
        reply = check(request, data)
        samples["agent"].append(reply["duration_ms"])
        samples["load"].append(sum(x["ms"] for x in reply["timing"]["loads"] if x["level"] == 4))
        samples["verdicts"] = [p["verdict"] for p in reply["programs"]]
    out["objects"][name] = samples
print(json.dumps(out))
"""


def native_times(objects: list[Path], runs: int) -> tuple[dict | None, str]:
    """The agent's check on the host kernel (attach off), or None and why it cannot run."""
    if os.geteuid() != 0:
        return None, "not root: the host kernel does not let this user load BPF programs"
    proc = subprocess.run(
        [sys.executable, "-c", NATIVE, str(ROOT / "guest-agent"), str(runs), *map(str, objects)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None, f"the host could not load BPF objects: {proc.stderr.strip()[-300:]}"
    doc = json.loads(proc.stdout)
    if not any("accepted" in o["verdicts"] for o in doc["objects"].values()):
        return None, "the host kernel accepted no program at all (BPF restricted?)"
    return doc, f"host kernel {os.uname().release}, libbpf {doc['libbpf']}"


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def c_rows(label: str, data: dict, target: float | None) -> list[dict]:
    """(c) rows for one set of guest times: latency over in-guest load time (strict: libbpf's
    load of the programs only) and over the agent's whole check in the guest (what the host and
    the channel add), per cell and in all."""
    cells = [s for per in data.values() for s in per.values()]
    ratios = [med(s["rtt"]) / med(s["load"]) for s in cells if med(s["load"]) > 0]
    over_agent = [med(s["rtt"]) / med(s["agent"]) for s in cells if med(s["agent"]) > 0]
    total_agent = sum(med(s["agent"]) for s in cells)
    total_rtt = sum(med(s["rtt"]) for s in cells)
    total_load = sum(med(s["load"]) for s in cells)
    total_verify = sum(med(s["verify"]) for s in cells)
    return [
        row(
            f"(c) per-object latency / in-guest load time, {label}",
            ratios,
            unit="x",
            target=target,
            detail=(
                f"{len(ratios)} object x kernel cells; all cells: {total_rtt / 1000:.2f} s round trip, "
                f"{total_load / 1000:.2f} s in bpf_object__load ({total_rtt / max(total_load, 1e-9):.2f}x), "
                f"{total_verify / 1000:.2f} s kernel verification time"
            ),
        ),
        row(
            f"(c) per-object latency / the agent's whole check in the guest, {label}",
            over_agent,
            unit="x",
            target=target,
            detail=(
                f"what the host, the channel and the reply add to the guest's work; all cells: "
                f"{total_rtt / max(total_agent, 1e-9):.2f}x"
            ),
        ),
        row(f"(c) per-object latency, {label}", [med(s["rtt"]) / 1000 for s in cells], detail="round trip, s"),
    ]


def d_rows(label: str, guest: dict, native: dict, why: str) -> list[dict]:
    """(d) rows: in-guest over native check time per object, per kernel and over all kernels,
    for the objects whose programs got the same verdicts in the guest and on the host (else the
    two sides did different work)."""
    rows = []
    every: list[float] = []
    for kernel, per in guest.items():
        same = {o: s for o, s in per.items() if s.get("verdicts") == native["objects"][o]["verdicts"]}
        agent = [med(s["agent"]) / med(native["objects"][o]["agent"]) for o, s in same.items()]
        load = [
            med(s["load"]) / med(native["objects"][o]["load"])
            for o, s in same.items()
            if med(native["objects"][o]["load"]) > 0
        ]
        every += agent
        guest_total = sum(med(s["agent"]) for s in same.values())
        native_total = sum(med(native["objects"][o]["agent"]) for o in same)
        rows.append(
            row(
                f"(d) in-guest / native check time, {label}, {kernel}",
                agent,
                unit="x",
                target=TARGETS["d"],
                detail=(
                    f"{len(same)} of {len(per)} objects (same verdicts on both sides); load time only: median "
                    f"{med(load):.1f}x; all of them: {guest_total / 1000:.2f} s in the guest, "
                    f"{native_total / 1000:.2f} s natively ({guest_total / max(native_total, 1e-9):.1f}x); {why}"
                ),
            )
        )
    rows.append(row(f"(d) in-guest / native check time, {label}, all kernels", every, unit="x", target=TARGETS["d"]))
    return rows


def measure_c_d(
    cache: Cache, specs, objects: list[Path], real: list[Path], runs: int, only: set[str], native_real: bool
) -> tuple[list[dict], dict]:
    """(c) on compat's own objects and on real ones, (d) on compat's own objects and, with
    native_real, on the real ones too: the native side loads them into the host kernel (load
    only, never attached), which the product never does with a user's object; the benchmark
    does it only when asked, and only with objects from Debian's signed packages."""
    rows: list[dict] = []
    raw: dict = {}
    plain = guest_times(cache, specs, objects, runs, attach=False)
    raw["guest_no_attach"] = plain
    if real and ("c" in only or native_real):
        raw["guest_real_no_attach"] = guest_times(cache, specs, real, runs, attach=False)
    if "c" in only:
        rows += c_rows("programs/ objects, attach off", plain, TARGETS["c"])
        if real:
            rows += c_rows(f"{len(real)} real objects (Debian), attach off", raw["guest_real_no_attach"], TARGETS["c"])
        raw["guest_attach"] = guest_times(cache, specs, objects, runs, attach=True)
        rows += c_rows("programs/ objects, attach on (default)", raw["guest_attach"], None)
    if "d" in only:
        for label, paths, guest in (
            ("programs/ objects", objects, plain),
            (f"{len(real)} real objects (Debian)", real if native_real else [], raw.get("guest_real_no_attach")),
        ):
            if not paths:
                continue
            native, why = native_times(paths, runs)
            raw[f"native {label}"] = native
            if native is None:
                rows.append({"measurement": f"(d) in-guest / native, {label}", "status": "not measured", "detail": why})
            else:
                rows += d_rows(label, guest, native, why)
    return rows, raw


# -- main -------------------------------------------------------------------------------------------
def time_checks(cache, specs, objects, infos, args, helpers: bool) -> list[float]:
    """Wall times of args.runs full checks (result cache off); helpers=False turns off the
    scheduler's second guests, leaving only the longest-kernel-first order."""
    import compat.run.schedule as schedule

    walls = []
    original = schedule.Scheduler.pick
    if not helpers:
        schedule.Scheduler.pick = lambda self: None  # type: ignore[method-assign]
    try:
        for _ in range(args.runs):
            checker = Checker(cache, specs, CheckOptions(result_cache=False, jobs=args.jobs))
            t0 = time.perf_counter()
            result = checker.run(objects, infos)
            walls.append(time.perf_counter() - t0)
            errors = [r for r in result.results if r.verdict == "error"]
            assert not errors, errors[0].message
    finally:
        schedule.Scheduler.pick = original  # type: ignore[method-assign]
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--label", default="", help="results go to bench/results/speed-LABEL.json")
    ap.add_argument("--only", default="boot,a,b,b1,c,d,e", help="comma-separated: boot,a,b,b1,c,d,e")
    ap.add_argument("--jobs", type=int, default=None, help="VMs at once for (a), (b), (e) (default: cores)")
    ap.add_argument(
        "--no-real", dest="real", action="store_false", help="(c) without the real objects of bench/corpus.py"
    )
    ap.add_argument(
        "--native-real",
        action="store_true",
        help="(d) on the real objects too: loads Debian's objects into the host kernel (load only, root)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    cache = Cache()
    specs = load_matrix().kernels
    work = Path(tempfile.mkdtemp(prefix="compat-speed-"))
    rows: list[dict] = []
    raw: dict = {}
    try:
        programs = build_programs(work / "programs")
        counter = programs["counter"]
        jobs = ["--jobs", str(args.jobs)] if args.jobs else []
        # Warm every cache (kernels, image, snapshots, probes) the measurements rely on.
        cli("check", *map(str, programs.values()), "--no-cache", "--format", "json", "--output", os.devnull, *jobs)
        accel = Fleet(cache, specs).ensure_accel()

        if "boot" in only:
            rows += measure_boot(cache, specs, args.runs)

        if "a" in only:
            samples = [
                cli("check", str(counter), "--no-cache", "--format", "json", "--output", os.devnull, *jobs)[0]
                for _ in range(args.runs)
            ]
            raw["a"] = samples
            rows.append(
                row(
                    f"(a) 1 object x {len(specs)} kernels, caches warm (compat check --no-cache)",
                    samples,
                    target=TARGETS["a"],
                    detail="end to end: a new compat process, snapshots restored, every object verified",
                )
            )

        if "b" in only:
            variants = build_variants(work / "variants")
            objects, infos, bad = load_objects([str(p) for p in variants])
            assert not bad and len(objects) == len(variants)
            for label, helpers in (("scheduler with helpers", True), ("longest kernel first only", False)):
                walls = time_checks(cache, specs, objects, infos, args, helpers)
                cells = len(objects) * len(specs)
                raw[f"b {label}"] = walls
                rows.append(
                    row(
                        f"(b) {len(objects)} objects x {len(specs)} kernels, {label}",
                        walls,
                        detail=f"{cells} object x kernel cells, {cells / statistics.median(walls):.1f} cells/s",
                    )
                )

        if "b1" in only:
            # Fewer kernels than cores: the spare core helps with a second guest of the kernel.
            variants = build_variants(work / "variants1")
            objects, infos, bad = load_objects([str(p) for p in variants])
            one = [s for s in specs if s.id == "6.12"] or specs[:1]
            for label, helpers in (("scheduler with helpers", True), ("one guest per kernel", False)):
                walls = time_checks(cache, one, objects, infos, args, helpers)
                raw[f"b1 {label}"] = walls
                rows.append(row(f"(b) {len(objects)} objects x 1 kernel ({one[0].id}), {label}", walls))

        if "c" in only or "d" in only:
            sample = [programs[n] for n in sorted(programs)]
            real = real_objects() if args.real else []
            more, data = measure_c_d(cache, specs, sample, real, args.runs, only, args.real and args.native_real)
            rows += more
            raw.update(data)

        if "e" in only:
            cli("check", str(counter), "--format", "json", "--output", os.devnull, *jobs)  # fill the result cache
            samples = [
                cli("check", str(counter), "--format", "json", "--output", os.devnull, *jobs)[0]
                for _ in range(args.runs)
            ]
            _, proc = cli("check", str(counter), "--format", "json", "--output", "-")
            hits = json.loads(proc.stdout)["options"].get("result_cache")
            raw["e"] = samples
            rows.append(
                row(
                    "(e) re-check of an unchanged object (result cache), end to end",
                    samples,
                    target=TARGETS["e"],
                    detail=f"no VM started; result cache {hits}",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = machine(accel)
    meta["load_average"] = os.getloadavg()
    meta["kernels"] = [s.id for s in specs]
    meta["samples"] = raw
    report(f"speed-{args.label}" if args.label else "speed", rows, meta)


if __name__ == "__main__":
    main()
