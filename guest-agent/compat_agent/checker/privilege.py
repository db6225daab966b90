"""Checking an object under less privilege than root (compat check --privilege caps|unprivileged).

What the kernel checks when a program or map is loaded is capabilities, never the user id:
``bpf_capable()`` (CAP_BPF or CAP_SYS_ADMIN) for every program type but socket filters and
cgroup skb programs, for BTF and for most map types; ``perfmon_capable()`` (CAP_PERFMON) for
tracing programs and for the verifier's privileged mode (pointer leaks allowed, no speculation
sanitation: env->bypass_spec_v1/v4, allow_ptr_leaks); CAP_NET_ADMIN for networking program types
(XDP, tc, ...) and their maps; and ``kernel.unprivileged_bpf_disabled`` for a caller without
CAP_BPF at all. So the check of an object under a privilege runs in a forked child of the agent
that keeps uid 0 (file access stays as root's: tracefs, /sys/kernel/btf) and keeps only that
privilege's effective and permitted capabilities (capset(2)), the mode test_loader.c's
drop_capabilities gives the kernel's own selftests. The child sends back the same reply the root
check gives; the agent itself never loses a capability.

- ``caps``: CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN without CAP_SYS_ADMIN (least-privilege agents);
- ``unprivileged``: no capability at all, with kernel.unprivileged_bpf_disabled set to 0 for the
  check (Debian's kernels boot with 2, which root may lower; 1 can never be lowered again: then
  the check cannot run, and the reply says so instead of giving rejections).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_mod
import json
import os
import resource
import traceback
from collections.abc import Callable
from typing import Any

from compat_agent.wire.facts import FACTS_MAX

ROOT, CAPS, UNPRIVILEGED = "root", "caps", "unprivileged"
PRIVILEGES = (ROOT, CAPS, UNPRIVILEGED)
CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 12, 21, 38, 39  # include/uapi/linux/capability.h
KEPT: dict[str, tuple[int, ...]] = {CAPS: (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN), UNPRIVILEGED: ()}
UNPRIV_SYSCTL = "/proc/sys/kernel/unprivileged_bpf_disabled"
_CAP_VERSION_3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
# The error code of a check that could not run under its privilege (the host words it).
UNAVAILABLE = "privilege_unavailable"


class Unavailable(Exception):
    """The kernel does not let a check run under this privilege (not a verdict on the object)."""


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_to(privilege: str) -> None:
    """Keep only the privilege's capabilities (effective and permitted) in this process."""
    mask = 0
    for cap in KEPT[privilege]:
        mask |= 1 << cap
    data = (_Data * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(_Header(_CAP_VERSION_3, 0)), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _read_sysctl() -> int | None:
    try:
        with open(UNPRIV_SYSCTL) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _write_sysctl(value: int) -> OSError | None:
    try:
        with open(UNPRIV_SYSCTL, "w") as f:
            f.write(f"{value}\n")
    except OSError as e:
        return e
    return None


def allow_unprivileged() -> int | None:
    """Set kernel.unprivileged_bpf_disabled to 0; returns the value to restore (None: nothing to
    restore). Unavailable when the kernel refuses (it is 1, which cannot be undone until reboot)."""
    before = _read_sysctl()
    if before is None:
        raise Unavailable(f"kernel.unprivileged_bpf_disabled cannot be read ({UNPRIV_SYSCTL}): no unprivileged BPF")
    if before == 0:
        return None
    failed = _write_sysctl(0)
    if failed is not None or _read_sysctl() != 0:
        why = os.strerror(failed.errno or errno_mod.EPERM) if failed else "the value did not change"
        lock = " (1 locks unprivileged BPF off until the next boot)" if before == 1 else ""
        raise Unavailable(f"the kernel refuses kernel.unprivileged_bpf_disabled=0: it is {before}{lock}; {why}")
    return before


def restore(value: int | None) -> None:
    """Put kernel.unprivileged_bpf_disabled back as allow_unprivileged found it."""
    if value is not None:
        _write_sysctl(value)


def run_as(privilege: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """work() under the privilege: in this process for root, else in a forked child holding only
    that privilege's capabilities, its dict sent back through a pipe. Unavailable when the kernel
    refuses the privilege's setting; RuntimeError when the child fails (its traceback in words)."""
    if privilege == ROOT:
        return work()
    restore_to = allow_unprivileged() if privilege == UNPRIVILEGED else None
    try:
        return _in_child(privilege, work)
    finally:
        restore(restore_to)


def _in_child(privilege: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the agent's loop
        status = 0
        try:
            os.close(read_end)
            # Kernels before 5.11 charge maps to RLIMIT_MEMLOCK, which only root may raise: as root would.
            with contextlib.suppress(ValueError, OSError):  # a root without CAP_SYS_RESOURCE: as it is
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            drop_to(privilege)
            out: dict[str, Any] = {"ok": work()}
        except BaseException as e:  # everything goes back to the agent, which answers the host
            out = {"failed": f"{e.__class__.__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
            status = 1
        try:
            data = json.dumps(out).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view) :]
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as f:
        while chunk := f.read(1 << 20):
            chunks.append(chunk)
    _, wait_status = os.waitpid(pid, 0)
    try:
        out = json.loads(b"".join(chunks)) if chunks else {}
    except ValueError:
        out = {}
    if "ok" in out and isinstance(out["ok"], dict):
        return out["ok"]
    if "failed" in out:
        raise RuntimeError(f"the check under privilege {privilege} failed: {out['failed']}")
    if os.WIFSIGNALED(wait_status):
        raise RuntimeError(f"the check under privilege {privilege} was killed by signal {os.WTERMSIG(wait_status)}")
    raise RuntimeError(f"the check under privilege {privilege} ended without a reply (status {wait_status})")


def unavailable_reply(privilege: str, why: str, request_id: object) -> dict[str, Any]:
    """The error reply of a check that cannot run under its privilege on this kernel."""
    return {"type": "error", "id": request_id, "error": f"--privilege {privilege}: {why}", "code": UNAVAILABLE,
            "privilege": privilege}  # fmt: skip


def add_permission_facts(result: dict[str, Any], mode: str) -> None:
    """Under a reduced privilege, say which rejections are the kernel's EPERM for what the mode
    does not hold (a ``not_permitted`` fact first on the program: its type, or the map it needed
    that the kernel would not create for this caller), so the host tells them from verdicts."""
    if mode == ROOT:
        return
    refused = {m.get("name"): m.get("type") for m in result.get("maps") or []
               if m.get("ok") is False and m.get("errno") == errno_mod.EPERM}  # fmt: skip
    for record in result.get("programs") or []:
        if record.get("verdict") != "rejected":
            continue
        facts = record.get("facts") or []
        named = [f.get("map") for f in facts if f.get("code") in ("map_create_failed", "map_referenced")]
        maps = [m for m in named if m in refused]
        targets = [str(f.get("target")) for f in facts if f.get("code") == "attach_target_missing"]
        module = _module_defining(targets[0]) if targets else None
        if maps:
            found = {"code": "not_permitted", "privilege": mode, "map": maps[0], "map_type": refused[maps[0]]}
        elif module:
            found = {"code": "not_permitted", "privilege": mode, "target": targets[0], "module": module}
        elif record.get("errno") == errno_mod.EPERM:
            found = {"code": "not_permitted", "privilege": mode}
        else:
            continue
        record["facts"] = [found, *facts][:FACTS_MAX]  # the bound the host takes (the last facts give way)


def _module_defining(name: str, root: str = "/sys/kernel/btf") -> str | None:
    """The loaded module whose BTF names name (read by the agent, as root), or None. libbpf finds
    a module's BTF through BPF_BTF_GET_NEXT_ID, which only CAP_SYS_ADMIN may call: without it,
    libbpf skips module BTF and finds no attach target in a module."""
    wanted = b"\0" + name.encode() + b"\0"
    try:
        modules = sorted(m for m in os.listdir(root) if m != "vmlinux")
    except OSError:
        return None
    for module in modules:
        try:
            with open(os.path.join(root, module), "rb") as f:
                if wanted in f.read():
                    return module
        except OSError:
            continue
    return None
