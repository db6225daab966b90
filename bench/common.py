"""Shared helpers for the benchmarks: timing, medians, machine facts, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from tabulate import tabulate

RESULTS = Path(__file__).parent / "results"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - t0, value


def summary(samples: list[float]) -> dict:
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
        "runs": len(samples),
    }


def machine(accel: str | None = None) -> dict:
    from compat.guest.accel import qemu_version

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "qemu": qemu_version(),
        "accel": accel,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def report(name: str, rows: list[dict], meta: dict) -> None:
    """Print a table and write bench/results/NAME.json."""
    print(tabulate(rows, headers="keys"))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps({"machine": meta, "rows": rows}, indent=1))
    print(f"\nwritten {out}")
