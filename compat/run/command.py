"""`compat run`: the team's own loader, run as root inside each kernel's guest.

The command and the files named with --with are checked on the host before any guest boots
(compat/objects/loader.py). Each guest gets the files in a fresh working directory (wire
RUN_DIR), runs the command under --timeout and answers with what it did
(compat_agent/command/run.py); the records are compat/results/command.py's. The command runs only
in guests, never on the host.

When the command's binary or a --with file embeds BPF objects (or is one), those objects are also
checked the generic way (compat check's path, on the same kernels) and the two are compared: the
fidelity findings of each kernel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from compat.cache import Cache
from compat.errors import CompatError, InfraError
from compat.guest import guestmsg
from compat.guest.fleet import Fleet, Session
from compat.guest.vm import DEFAULT_MEMORY_MB, GuestError
from compat.kernels.matrix import KernelSpec
from compat.kernels.sources import Kernel
from compat.objects.loader import Prepared
from compat.results.command import CommandResult, KernelRun, compare

DEFAULT_TIMEOUT = 60.0
OUTPUT_MAX = 64 << 10  # bytes of stdout and of stderr kept per kernel


@dataclass
class RunOptions:
    """How the command runs: its time limit and whether still running then is success."""

    timeout: float = DEFAULT_TIMEOUT
    running_ok: bool = False
    jobs: int | None = None
    refresh: bool = False
    memory_mb: int = DEFAULT_MEMORY_MB
    fidelity: bool = True  # check the embedded objects the generic way too
    test_faults: bool = False


def run_command(cache: Cache, specs: list[KernelSpec], prepared: Prepared, options: RunOptions) -> CommandResult:
    """Run the command on every kernel (one guest each); a kernel whose guest fails becomes an
    error record, the others are kept. Then the fidelity check of its embedded objects."""
    t0 = time.monotonic()
    message, payload = prepared.request(options.timeout, options.running_ok, OUTPUT_MAX)
    fleet = Fleet(cache, specs, jobs=options.jobs, refresh=options.refresh, memory_mb=options.memory_mb,
                  test_faults=options.test_faults)  # fmt: skip

    def work(session: Session, kernel: Kernel) -> dict[str, Any]:
        # The guest answers after the command's timeout and the clean-up that follows it.
        reply, _ = session.request(message, payload, timeout=options.timeout + 120)
        if reply.get("type") == "run_result":
            return guestmsg.validate(reply, "run_result", who=kernel.id, console_tail=session.vm.console_tail())
        raise InfraError(f"{kernel.id}: the guest agent could not run the command: {guestmsg.describe_error(reply)}")

    # A guest that dies while the command runs is not retried: the command is the likely cause.
    outcomes = fleet.run(work, retries=0)
    kernels: list[KernelRun] = []
    for o in outcomes:
        version = o.kernel.version if o.kernel else None
        release = (o.hello or {}).get("release") or (o.kernel.release if o.kernel else None)
        if o.error is not None or o.value is None:
            error = str(o.error) if o.error else "no answer"
            if o.console_tail and isinstance(o.error, GuestError):
                error = f"{error}; the guest's console ended with: {o.console_tail.strip()[-600:]}"
            kernels.append(KernelRun(o.spec.id, o.spec.label, version, release, None, error=error))
            continue
        kernels.append(kernel_run(o.spec, version, release, o.value, options.running_ok))
    result = CommandResult(
        command=prepared.command, argv=prepared.argv, kind=prepared.kind, timeout=options.timeout,
        running_ok=options.running_ok, kernels=kernels, files=[f.path for f in prepared.files],
        libraries=prepared.libraries,
    )  # fmt: skip
    if options.fidelity:
        fidelity_check(cache, specs, prepared, options, result)
    result.wall_seconds = round(time.monotonic() - t0, 2)
    return result


def kernel_run(spec: KernelSpec, version: str | None, release: str | None, reply: dict[str, Any],
               running_ok: bool) -> KernelRun:  # fmt: skip
    """A kernel's record from the agent's validated run_result."""
    timed_out = bool(reply["timed_out"])
    error = reply.get("error")
    ok = (reply.get("exit_status") == 0) if not timed_out else running_ok
    if error:
        ok = False
    programs = sorted(reply.get("programs") or [], key=lambda p: p["id"])
    maps = sorted(reply.get("maps") or [], key=lambda m: m["id"])
    return KernelRun(
        kernel=spec.id, label=spec.label, version=version, release=release, ok=ok,
        exit_status=reply.get("exit_status"), signal=reply.get("signal"), timed_out=timed_out,
        duration=round(float(reply["duration_ms"]) / 1000, 3),
        # By name; nameless ones (libbpf's feature probes: a loader's libbpf loads a few tiny
        # programs to learn what the kernel supports) are in program_details only.
        programs=sorted({p["name"] for p in programs if p["name"]}),
        program_details=[_seen(p, ("id", "name", "type", "verified_insns")) for p in programs],
        maps=[_seen(m, ("id", "name", "type", "key_size", "value_size", "max_entries")) for m in maps],
        stdout=reply["stdout"], stderr=reply["stderr"],
        stdout_truncated=(reply.get("stdout_bytes") or 0) > len(reply["stdout"].encode("utf-8", "replace")),
        stderr_truncated=(reply.get("stderr_bytes") or 0) > len(reply["stderr"].encode("utf-8", "replace")),
        kernel_log=list(reply["kernel_log"]),
        kernel_log_truncated=(reply.get("kernel_log_lines") or 0) > len(reply["kernel_log"]),
        kernel_warnings=[dict(w) for w in reply.get("kernel_warnings") or []],
        error=f"the command could not start: {error}" if error else None,
    )  # fmt: skip


def _seen(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A program or map of the reply for the result file (loaded_at_end always a boolean)."""
    return {**{k: record.get(k) for k in keys}, "loaded_at_end": bool(record.get("loaded_at_end"))}


# -- the loader-fidelity diff ---------------------------------------------------------------------


def fidelity_check(cache: Cache, specs: list[KernelSpec], prepared: Prepared, options: RunOptions,
                   result: CommandResult) -> None:  # fmt: skip
    """Check the BPF objects the command's files embed (or are) the generic way on the same
    kernels and put where the two disagree on each kernel's record."""
    from compat.run.checker import Checker, CheckOptions, load_objects

    objects, infos, _ = load_objects([str(p) for p in prepared.sources])  # files without objects: left out
    if not objects:
        return
    result.embedded = [o.name for o in objects]
    ran = [s for s in specs if any(k.kernel == s.id and k.ok is not None for k in result.kernels)]
    if not ran:
        return
    check_options = CheckOptions(jobs=options.jobs, refresh=options.refresh, memory_mb=options.memory_mb,
                                 test_faults=options.test_faults)  # fmt: skip
    checker = Checker(cache, ran, check_options)
    try:
        generic = checker.run(objects, infos)
    except CompatError as e:  # the comparison is extra: the command's own results stand
        for k in result.kernels:
            k.fidelity = [{"kind": "not_compared", "message": f"the generic check failed: {e}"}]
        return
    result.generic = generic.to_json()
    for k in result.kernels:
        if k.ok is not None:
            k.fidelity = compare(k, [r for r in generic.results if r.kernel == k.kernel])
