"""KVM or software emulation: decided once per host by a short probe boot, then cached.

/dev/kvm may exist and still not work (a paravirtual device that runs only special guest
kernels: QEMU aborts or hangs). So KVM is used only after a real guest booted with it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from compat.cache import Cache, write_atomic
from compat.errors import UserError

from .vm import qemu_binary

PROBE_TIMEOUT = 20.0


def _probe_key() -> str:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    qemu = qemu_binary()
    return f"{boot_id}:{qemu}:{os.stat(qemu).st_mtime_ns}"


def kvm_usable_device() -> bool:
    """Whether /dev/kvm exists and we may open it (a precondition, not proof)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def choose_accel(cache: Cache, probe_boot: Callable[[str, float], bool]) -> str:
    """'kvm' or 'tcg'. COMPAT_ACCEL forces one; otherwise probe_boot('kvm', timeout) decides,
    once per host boot and QEMU build (the answer is cached)."""
    forced = os.environ.get("COMPAT_ACCEL")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise UserError(f"COMPAT_ACCEL={forced} is not kvm or tcg")
        return forced
    if not kvm_usable_device():
        return "tcg"
    state = cache.dir("state") / "accel.json"
    key = _probe_key()
    try:
        saved = json.loads(state.read_text())
        if saved.get("key") == key:
            return saved["accel"]
    except (OSError, ValueError, KeyError):
        pass
    t0 = time.monotonic()
    try:
        ok = probe_boot("kvm", PROBE_TIMEOUT)
    except Exception:
        ok = False
    accel = "kvm" if ok else "tcg"
    write_atomic(state, json.dumps({"key": key, "accel": accel, "probe_seconds": round(time.monotonic() - t0, 2)}))
    return accel


@functools.cache
def qemu_version() -> str:
    """QEMU's version string, for results, benchmarks and snapshot keys."""
    out = subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split("version", 1)[-1].strip() if out else "unknown"
