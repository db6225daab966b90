"""Resource bounds and cancellation, without guests: option checks, the run deadline's effect on
the fleet, and snapshots kept apart per image variant and guest memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from compat.apt import AptRepo, AptSource
from compat.cache import Cache
from compat.errors import InfraError
from compat.fleet import Fleet
from compat.snapshot import KIND, Snapshots
from compat.vm import VM, VMConfig


def compat(*args):
    return subprocess.run([sys.executable, "-m", "compat", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ})  # fmt: skip


@pytest.mark.parametrize(
    "args, words",
    [
        (["--memory", "64"], "--memory 64: give between 256 and 65536 MiB"),
        (["--timeout", "0"], "--timeout must be positive"),
        (["--timeout", "-5"], "--timeout must be positive"),
        (["--object-timeout", "0"], "--object-timeout must be positive"),
        (["--program-timeout", "-1"], "--program-timeout must be positive"),
    ],
)
def test_bad_bounds_are_usage_errors(tmp_path, args, words):
    obj = tmp_path / "x.o"
    obj.write_bytes(b"\x7fELF")
    proc = compat("check", str(obj), *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"compat: error: {words}"


def test_a_cancelled_fleet_boots_no_guest(tmp_path):
    fleet = Fleet(Cache(tmp_path), [])
    fleet.cancel("run deadline exceeded")
    fleet.cancel("interrupted")  # the first reason stays
    vm = VM(VMConfig(Path("/nonexistent/vmlinuz"), Path("/nonexistent/initrd")), "k")
    with pytest.raises(InfraError, match=r"^run deadline exceeded$"):
        fleet._start(vm)
    assert vm.proc is None and not vm.workdir.exists() and not fleet._live


def test_a_cancelled_fleet_stops_its_downloads(tmp_path):
    fleet = Fleet(Cache(tmp_path), [])
    repo = AptRepo(Cache(tmp_path), [AptSource("http://mirror.invalid/debian", ("trixie",))], stop=fleet._stop_reason)
    assert repo._run(["true"]).returncode == 0
    threading.Timer(0.2, fleet.cancel, ("run deadline exceeded",)).start()
    with pytest.raises(InfraError, match=r"^sleep 600 stopped: run deadline exceeded$"):
        repo._run(["sleep", "600"])  # a download from a slow mirror: killed, not waited for


def test_snapshots_of_other_variants_and_memory_sizes_are_not_pruned(tmp_path):
    cache = Cache(tmp_path)
    entries = {
        "old-image": {"kernel": "/k/vmlinuz", "variant": "", "memory": 512},
        "test-image": {"kernel": "/k/vmlinuz", "variant": "test-faults", "memory": 512},
        "other-memory": {"kernel": "/k/vmlinuz", "variant": "", "memory": 1024},
        "other-kernel": {"kernel": "/k2/vmlinuz", "variant": "", "memory": 512},
        "before-variants": {"kernel": "/k/vmlinuz"},  # written by an older compat: a product state
    }
    for key, meta in entries.items():

        def build(d: Path, meta=meta) -> dict:
            (d / "state").write_bytes(b"saved guest")
            return meta

        cache.ensure(KIND, key, build)
    Snapshots(cache)._prune("new", "/k/vmlinuz", 512)
    left = {p.name for p in cache.entries(KIND)}
    assert left == {"test-image", "other-memory", "other-kernel"}
