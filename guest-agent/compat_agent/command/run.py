"""Run the team's own loader in the guest (compat run): its files in a fresh working directory,
the command as root under a time limit, its output bounded, the kernel log and the BPF programs
and maps that existed while it ran.

Its processes are bounded and ended together: they run in a cgroup of their own (pids.max,
memory.max: a fork bomb or a memory filler stops there, not in the agent; every process in it is
killed at the end, also those that left the command's session), the agent is the subreaper of
whatever they orphan and the OOM killer's last choice, and files are limited in size
(RLIMIT_FSIZE). Without cgroup v2 the fallback ends every process that appeared since the start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from typing import Any

from compat_agent.checker.kmsg import KernelLog, splats
from compat_agent.wire.messages import RUN_DIR, RunReply, RunRequest

from .bpfids import Seen, Walker

POLL_SECONDS = 0.05  # between walks of the kernel's BPF ids while the command runs
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP = f"{CGROUP_ROOT}/compat-run"
PIDS_MAX = 1024  # processes of the command at once: a fork bomb stops here
FILE_MAX = 256 << 20  # RLIMIT_FSIZE of the command: no file it writes grows past this
KERNEL_LOG_MAX = 2000  # lines kept
PR_SET_CHILD_SUBREAPER = 36


def run(message: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """Answer a run request: the run_result (RunReply) of the command on this kernel."""
    request = RunRequest.from_json(message)
    workdir = _fresh_workdir()
    try:
        _write_files(workdir, request, payload)
        return _run(request, workdir).to_json()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _fresh_workdir() -> str:
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    os.makedirs(RUN_DIR, mode=0o755)
    return RUN_DIR


def _write_files(workdir: str, request: RunRequest, payload: bytes) -> None:
    """The request's files under workdir (paths relative, never out of it), bytes from payload."""
    if sum(f.size for f in request.files) != len(payload):
        raise ValueError("the run request's file sizes do not add up to its payload")
    offset = 0
    root = os.path.realpath(workdir)
    for f in request.files:
        path = os.path.realpath(os.path.join(root, f.path))
        if os.path.isabs(f.path) or not path.startswith(root + os.sep):
            raise ValueError(f"file path {f.path!r} leaves the working directory")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(payload)[offset : offset + f.size]
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.chmod(path, f.mode & 0o777)
        offset += f.size


class _Output:
    """One of the command's pipes, read to its end by a thread: the first `limit` bytes kept."""

    def __init__(self, fd: int, limit: int):
        self.fd, self.limit = fd, limit
        self.kept = bytearray()
        self.total = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
        os.close(self.fd)

    def text(self) -> str:
        return self.kept.decode("utf-8", "replace")


class _Cgroup:
    """The command's cgroup (None when cgroup v2 with pids and memory is not there)."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def make(cls) -> _Cgroup | None:
        try:
            if os.path.isdir(CGROUP):
                cls(CGROUP).remove()
            with open(f"{CGROUP_ROOT}/cgroup.subtree_control", "w") as f:
                f.write("+pids +memory")
            os.mkdir(CGROUP)
            with open(f"{CGROUP}/pids.max", "w") as f:
                f.write(str(PIDS_MAX))
            with open(f"{CGROUP}/memory.max", "w") as f:
                f.write(str(_memory_max()))
            return cls(CGROUP)
        except OSError:
            return None

    def procs(self) -> list[int]:
        try:
            with open(f"{self.path}/cgroup.procs") as f:
                return [int(line) for line in f if line.strip()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """Every process of the cgroup killed (cgroup.kill from 5.14; before, frozen then killed)."""
        if os.path.exists(f"{self.path}/cgroup.kill"):
            _write(f"{self.path}/cgroup.kill", "1")
        else:
            _write(f"{self.path}/cgroup.freeze", "1")  # a fork bomb cannot outrun the kill loop
            for _ in range(100):
                pids = self.procs()
                if not pids:
                    break
                for pid in pids:
                    _kill(pid)
            _write(f"{self.path}/cgroup.freeze", "0")
        deadline = time.monotonic() + 5
        while self.procs() and time.monotonic() < deadline:
            _reap()
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def _memory_max() -> int:
    """The command's memory: 60% of the guest's, so that the agent keeps room to report."""
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    return total_kb * 1024 * 6 // 10


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError:
        pass


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _reap() -> None:
    """Collect every exited child (the agent is the subreaper of what the command orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def _kill_new(before: set[int]) -> None:
    """Without a cgroup: end every process that appeared since the start (kernel threads aside)."""
    me = os.getpid()
    for _ in range(50):
        new = [p for p in _pids() - before if p != me and _user_process(p)]
        if not new:
            return
        for pid in new:
            _kill(pid)
        _reap()
        time.sleep(0.02)


def _user_process(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0] != "Z" and int(fields[1]) != 2  # not a zombie, not a kernel thread (parent kthreadd)
    except (OSError, IndexError, ValueError):
        return False


def _set_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _run(request: RunRequest, workdir: str) -> RunReply:
    _set_subreaper()
    _write("/proc/self/oom_score_adj", "-1000")  # the command, not the agent, is what memory pressure ends
    walker = Walker()
    kmsg = KernelLog()  # from now on
    cgroup = _Cgroup.make()
    before = _pids()

    def child_setup() -> None:  # in the child, before exec: its limits and its cgroup
        _write("/proc/self/oom_score_adj", "0")
        os.nice(19)  # a fork bomb or a busy loop must leave the agent the CPU to watch the clock and report
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_MAX, FILE_MAX))
        if cgroup is not None:
            _write(f"{cgroup.path}/cgroup.procs", str(os.getpid()))

    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": workdir, "LANG": "C.UTF-8", **request.env}
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(request.argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out_w,
                                stderr=err_w, start_new_session=True, preexec_fn=child_setup)  # fmt: skip
    except OSError as e:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        if cgroup is not None:
            cgroup.remove()
        return RunReply(type="run_result", exit_status=None, timed_out=False, duration_ms=0, stdout="", stderr="",
                        programs=[], maps=[], kernel_log=[], error=f"cannot run {request.argv[0]}: {e.strerror or e}",
                        isolation="cgroup" if cgroup else "session")  # fmt: skip
    os.close(out_w)
    os.close(err_w)
    stdout, stderr = _Output(out_r, request.output_max), _Output(err_r, request.output_max)
    lines: list[str] = []
    total_lines = 0
    deadline = start + request.timeout
    timed_out = False
    while True:
        walker.walk()
        for line in kmsg.read():
            total_lines += 1
            if len(lines) < KERNEL_LOG_MAX:
                lines.append(line[:4096])
        if proc.poll() is not None:
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(POLL_SECONDS)
    walker.walk()  # what it had loaded at its end (or at the timeout: what it is judged by)
    duration = time.monotonic() - start
    if timed_out:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.remove()
    _kill_new(before)  # also what left the cgroup's reach (none should)
    proc.wait()
    _reap()
    for output in (stdout, stderr):
        output.thread.join(timeout=5)
    for line in kmsg.read():
        total_lines += 1
        if len(lines) < KERNEL_LOG_MAX:
            lines.append(line[:4096])
    status = proc.returncode
    return RunReply(
        type="run_result",
        exit_status=None if timed_out or status < 0 else status,
        signal=-status if status < 0 and not timed_out else None,
        timed_out=timed_out,
        duration_ms=round(duration * 1000, 1),
        stdout=stdout.text(),
        stderr=stderr.text(),
        stdout_bytes=stdout.total,
        stderr_bytes=stderr.total,
        programs=[_prog(s, s.id in walker.present["prog"]) for s in walker.seen["prog"].values()],
        maps=[_map(s, s.id in walker.present["map"]) for s in walker.seen["map"].values()],
        kernel_log=lines,
        kernel_log_lines=total_lines,
        kernel_warnings=[w for w in _warnings(lines)] or None,
        isolation="cgroup" if cgroup else "session",
    )


def _prog(s: Seen, at_end: bool):
    from compat_agent.wire.messages import BpfProgSeen

    return BpfProgSeen(id=s.id, name=s.name, type=s.type, verified_insns=s.verified_insns, loaded_at_end=at_end)


def _map(s: Seen, at_end: bool):
    from compat_agent.wire.messages import BpfMapSeen

    return BpfMapSeen(id=s.id, name=s.name, type=s.type, key_size=s.key_size, value_size=s.value_size,
                      max_entries=s.max_entries, loaded_at_end=at_end)  # fmt: skip


def _warnings(lines: list[str]):
    from compat_agent.wire.messages import KernelWarningRecord

    return [KernelWarningRecord(kind=w["kind"], lines=w["lines"]) for w in splats(lines)[:16]]
