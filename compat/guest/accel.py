"""KVM or software emulation: decided once per host boot, then cached, and said in one line.

/dev/kvm may exist and still not work (a paravirtual device that runs only special guest
kernels: QEMU aborts or hangs). So KVM is used only after a real guest booted with it. The
probe boot of a KVM that hangs costs its whole timeout (20 s), so what can be seen without
booting is checked first, in milliseconds (kvm_check): the device opens, its API version is
the stable one, a VM can be created, and the module behind it is not PVM (kvm_pvm without
kvm_intel or kvm_amd: it runs only PVM guest kernels, and a Debian kernel hangs in it).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from compat.cache import Cache, write_atomic
from compat.errors import UserError

from .vm import arch_boot, qemu_binary

PROBE_TIMEOUT = 20.0
KVM_DEVICE = "/dev/kvm"
KVM_API_VERSION = 12  # the only stable KVM API version since Linux 2.6.22
KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
KVM_CREATE_VM = 0xAE01  # _IO(KVMIO, 0x01)
SYS_MODULE = Path("/sys/module")

log = logging.getLogger(__name__)


def _probe_key(arch: str = "amd64") -> str:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    qemu = qemu_binary(arch)
    return f"{boot_id}:{qemu}:{os.stat(qemu).st_mtime_ns}"


def kvm_usable_device() -> bool:
    """Whether /dev/kvm exists and we may open it (a precondition, not proof)."""
    try:
        fd = os.open(KVM_DEVICE, os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def kvm_check(device: str = KVM_DEVICE, sys_module: Path = SYS_MODULE) -> str | None:
    """Why KVM cannot run our guests, seen without booting one (None: it may; a probe boot
    decides). Milliseconds: opening the device, two ioctls and a look at the loaded modules."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        what = "missing" if e.errno == errno.ENOENT else f"cannot be opened: {os.strerror(e.errno or 0)}"
        return f"{device} {what}"
    try:
        try:
            version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        except OSError as e:
            return f"{device} present but KVM_GET_API_VERSION failed: {os.strerror(e.errno or 0)}"
        if version != KVM_API_VERSION:
            return f"{device} present but speaks KVM API {version}, not {KVM_API_VERSION}"
        try:
            os.close(fcntl.ioctl(fd, KVM_CREATE_VM, 0))
        except OSError as e:
            return f"{device} present but KVM_CREATE_VM failed: {os.strerror(e.errno or 0)}"
    finally:
        os.close(fd)
    loaded = {name for name in ("kvm_pvm", "kvm_intel", "kvm_amd") if (sys_module / name).is_dir()}
    if loaded == {"kvm_pvm"}:
        return f"{device} is PVM (kvm_pvm), which runs only PVM guest kernels"
    return None


def foreign_arch(arch: str, machine: str | None = None) -> bool:
    """Whether guests of arch cannot run on this host's CPU (KVM runs only the host's own
    architecture: an arm64 guest on an x86-64 host is always software-emulated)."""
    return arch_boot(arch).uname != (machine or platform.machine())


def choose_accel(cache: Cache, probe_boot: Callable[[str, float], bool], arch: str = "amd64") -> str:
    """'kvm' or 'tcg' for guests of arch. COMPAT_ACCEL forces one; a guest of another
    architecture than the host's is always 'tcg'; otherwise kvm_check, then (when it finds
    nothing wrong) probe_boot('kvm', timeout) decides, once per host boot and QEMU build (the
    answer and its reason are cached). The decision is logged in one line: a warning when it
    was made now, info when it was cached."""
    forced = os.environ.get("COMPAT_ACCEL")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise UserError(f"COMPAT_ACCEL={forced} is not kvm or tcg", "unset it, or set it to kvm or tcg")
        if forced == "kvm" and foreign_arch(arch):
            raise UserError(f"COMPAT_ACCEL=kvm cannot run {arch} guests on this {platform.machine()} host",
                            "unset COMPAT_ACCEL, or set it to tcg")  # fmt: skip
        log.info("accel: %s (COMPAT_ACCEL)", forced)
        return forced
    if foreign_arch(arch):
        log.info("accel: tcg for %s guests (a %s host runs them by software emulation)", arch, platform.machine())
        return "tcg"
    # amd64 keeps its file; arm64 (on an arm64 host) has its own decision.
    state = cache.dir("state") / ("accel.json" if arch == "amd64" else f"accel-{arch}.json")
    key = _probe_key(arch)
    saved: dict = {}
    try:
        doc = json.loads(state.read_text())
        if isinstance(doc, dict) and doc.get("key") == key and doc.get("accel") in ("kvm", "tcg"):
            saved = doc
    except (OSError, ValueError):
        pass
    t0 = time.monotonic()
    # kvm_check runs every time (milliseconds): a device fixed or broken since is seen at once.
    # Only the probe boot's answer is worth remembering.
    wrong = kvm_check()
    if wrong is not None:
        accel, why = "tcg", f"KVM: {wrong}"
    elif saved.get("probed"):
        accel, why = saved["accel"], saved.get("why", "a probe boot")
    else:
        accel, why = probe_accel(probe_boot)
    seconds = round(time.monotonic() - t0, 2)
    if (saved.get("accel"), saved.get("why")) == (accel, why):
        log.info("accel: %s (%s)", accel, why)
        return accel
    doc = {"key": key, "accel": accel, "why": why, "probed": wrong is None, "probe_seconds": seconds}
    write_atomic(state, json.dumps(doc))
    log.warning("accel: %s (%s; decided in %.2f s)", accel, why, seconds)
    return accel


def probe_accel(probe_boot: Callable[[str, float], bool]) -> tuple[str, str]:
    """The accelerator and why, by a probe boot with KVM (for a KVM that kvm_check passed)."""
    try:
        ok = probe_boot("kvm", PROBE_TIMEOUT)
    except Exception as e:
        return "tcg", f"KVM: a probe boot failed: {e.__class__.__name__}: {e}"
    if not ok:
        return "tcg", "KVM: a probe boot failed"
    return "kvm", "KVM: a probe boot worked"


@functools.cache
def qemu_version(arch: str = "amd64") -> str:
    """The version string of arch's QEMU, for results, benchmarks and snapshot keys."""
    out = subprocess.run([qemu_binary(arch), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split("version", 1)[-1].strip() if out else "unknown"
