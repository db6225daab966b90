"""What `compat run` found: per kernel, what the team's loader did (KernelRun), the whole run
(CommandResult, the compat-run/v1 result file: schema/run-v1.json) and the loader-fidelity diff
(compare: where the generic check and the team's loader disagree on a kernel)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from compat import __version__

SCHEMA = "compat-run/v1"


@dataclass
class KernelRun:
    """What the command did on one kernel (error: no answer from that kernel, and why)."""

    kernel: str
    label: str
    version: str | None
    release: str | None
    ok: bool | None  # the command succeeded here (None: error, no answer)
    exit_status: int | None = None
    signal: int | None = None
    timed_out: bool = False
    duration: float | None = None  # seconds
    programs: list[str] = field(default_factory=list)  # names of the BPF programs it loaded
    program_details: list[dict[str, Any]] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    kernel_log: list[str] = field(default_factory=list)
    kernel_log_truncated: bool = False
    kernel_warnings: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    fidelity: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The kernel's record of the result file (compat-run/v1)."""
        return asdict(self)


@dataclass
class CommandResult:
    """Everything one `compat run` produced."""

    command: str
    argv: list[str]
    kind: str
    timeout: float
    running_ok: bool
    kernels: list[KernelRun]
    files: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    embedded: list[str] = field(default_factory=list)  # the BPF objects checked the generic way
    generic: dict[str, Any] | None = None  # that check's result file (compat/v1), when there was one
    wall_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The result file (compat-run/v1, compat/results/schema/run-v1.json)."""
        return {"schema": SCHEMA, "compat_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime()), "command": self.command, "argv": self.argv, "kind": self.kind,
                "timeout": self.timeout, "running_ok": self.running_ok, "files": self.files,
                "libraries": self.libraries, "embedded": self.embedded, "wall_seconds": self.wall_seconds,
                "kernels": [k.to_json() for k in self.kernels], "generic": self.generic}  # fmt: skip

    def status(self) -> int:
        """compat run's exit status: 0 when the command succeeded on every kernel, 1 when it failed
        on some, 3 when some kernel gave no answer (and none failed)."""
        if any(k.ok is False for k in self.kernels):
            return 1
        if any(k.ok is None for k in self.kernels):
            return 3
        return 0


def compare(run: KernelRun, generic: list[Any]) -> list[dict[str, Any]]:
    """Where the generic check (ProgramResults of one kernel) and the team's loader disagree:
    {kind, object, program, generic, loader, message}. Program names are matched on the kernel's
    15 characters (BPF_OBJ_NAME_LEN)."""
    loaded = {name[:15] for name in run.programs}
    failed = f"failed ({_how(run)})"
    out: list[dict[str, Any]] = []
    for r in generic:
        here = r.program[:15] in loaded
        verdict = r.verdict
        reason = r.message or r.reason or r.stage or ""
        where = {"object": r.object, "program": r.program}
        if verdict == "rejected" and run.ok and not here:
            out.append({"kind": "loader_handles", **where, "generic": f"rejected ({reason})",
                        "loader": "succeeded", "message": f"generic load: rejected ({reason}); your loader: "
                        f"succeeded, it did not load program {r.program}"})  # fmt: skip
        elif verdict == "rejected" and here:
            out.append({"kind": "loader_loads_rejected", **where, "generic": f"rejected ({reason})",
                        "loader": "loaded it", "message": f"generic load: rejected ({reason}); your loader "
                        f"loaded program {r.program} (its own options: flags, sizes, program type?)"})  # fmt: skip
        elif verdict == "accepted" and not run.ok:
            out.append({"kind": "loader_failed", **where, "generic": "accepted",
                        "loader": failed, "message": f"generic load: accepted; your loader {failed}"
                        + ("" if here else f", it did not load program {r.program}")})  # fmt: skip
        elif verdict == "accepted" and run.ok and not here:
            out.append({"kind": "not_loaded", **where, "generic": "accepted", "loader": "succeeded",
                        "message": f"generic load: accepted; your loader succeeded without loading program "
                        f"{r.program}"})  # fmt: skip
    return out


def _how(run: KernelRun) -> str:
    if run.error:
        return run.error
    if run.timed_out:
        return "still running at the timeout"
    if run.signal:
        return f"killed by signal {run.signal}"
    return f"exit {run.exit_status}"
