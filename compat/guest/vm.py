"""One QEMU guest: boot a kernel with the guest image, talk to its agent, always clean up.

The host listens on unix sockets; QEMU connects its virtio-serial port and its console (ttyS0)
to them at start-up, so both exist before the guest boots. The console is logged to a file that
keeps only its newest bytes (ConsoleLog): it is the evidence when a guest panics. Every wait has
a deadline, and the QEMU process is killed on every exit path (errors, timeouts, Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from compat_agent.wire.framing import PORT_NAME, ChannelClosed, ProtocolError, encode, read_frame

from compat.arch import ARCHES
from compat.errors import UserError
from compat.paths import temp_dir

from .errors import GuestError, GuestTimeout

# Boot fast: a quiet console, no crypto self-tests, no mitigations, no probing of absent
# hardware; panic=-1 with -no-reboot makes a panicking guest end its QEMU at once. Expedited RCU
# grace periods: every detach, and the close of a loaded object, waits for one, which under
# emulation takes tens of ms at the normal pace: checks with attach checks ran 2.5-3x faster on
# 6.1, checks without them within noise of before.
KERNEL_CMDLINE = (
    "console=ttyS0 quiet panic=-1 oops=panic cryptomgr.notests mitigations=off tsc=reliable rcupdate.rcu_expedited=1 "
    "no_timer_check i8042.noaux i8042.nokbd i8042.nopnp rdinit=/init"
)
# arm64 (the virt machine's PL011 console is ttyAMA0): the same choices less the x86-only ones
# (tsc=, no_timer_check, i8042.*).
ARM64_KERNEL_CMDLINE = (
    "console=ttyAMA0 quiet panic=-1 oops=panic cryptomgr.notests mitigations=off rcupdate.rcu_expedited=1 rdinit=/init"
)
DEFAULT_MEMORY_MB = 512
DEFAULT_BOOT_TIMEOUT = 90.0  # software emulation with every core busy is slow
CONSOLE_TAIL_BYTES = 256 << 10  # keep and read at most about this much of a console log
CONSOLE_READ_BYTES = 64 << 10
REPLY_MAX_PAYLOAD = 1 << 20  # guest replies are JSON; no reply needs a big binary payload


@dataclass(frozen=True)
class ArchBoot:
    """How QEMU boots a guest of one architecture (Debian's name): its binary, machine, CPU
    model and kernel command line. The console (-serial: ttyS0 on x86's pc, the PL011 ttyAMA0 on
    arm64's virt) and the virtio-serial channel (virtio-serial-pci: virt has a PCIe host bridge)
    are given the same way on both."""

    arch: str
    binary: str  # qemu-system-*
    package: str  # the Debian package that installs it (said when it is missing)
    env: str  # the variable that names another binary
    cmdline: str
    tcg_cpu: str
    machine: tuple[str, ...] = ()
    kvm_machine: tuple[str, ...] = ()

    @property
    def uname(self) -> str:
        """The guest's uname -m (platform.machine()): whether KVM could run it on this host."""
        return ARCHES[self.arch].uname


ARCH_BOOT: dict[str, ArchBoot] = {
    # Under TCG: every feature, but 4-level page tables (every softmmu TLB miss walks the guest's
    # page tables; see bench/speed.py).
    "amd64": ArchBoot("amd64", "qemu-system-x86_64", "qemu-system-x86", "COMPAT_QEMU", KERNEL_CMDLINE,
                      "max,la57=off"),
    # Under TCG, Neoverse N1 (Graviton2, Ampere Altra: the cores arm64 fleets run) rather than
    # max: max has pointer authentication, whose QARMA emulation made a 5.10 guest's agent ready
    # in 12.1 s against 2.3 s (bench/results/arm64-cpu.json). cortex-a72 was 10% faster, but it
    # is an ARMv8.0 core without the LSE atomics N1 has and the arm64 BPF JIT uses when present:
    # a guest should JIT as the fleet's CPUs do. With KVM, the host's CPU and GIC.
    "arm64": ArchBoot("arm64", "qemu-system-aarch64", "qemu-system-arm", "COMPAT_QEMU_ARM64", ARM64_KERNEL_CMDLINE,
                      "neoverse-n1", ("-M", "virt"), ("-M", "virt,gic-version=host")),
}  # fmt: skip


def arch_boot(arch: str) -> ArchBoot:
    """The boot recipe of an architecture; a UserError for one compat does not boot."""
    try:
        return ARCH_BOOT[arch]
    except KeyError:
        raise UserError(f"unknown arch {arch[:40]!r}", f"use one of {', '.join(ARCH_BOOT)}") from None


def cpu_model(accel: str, arch: str = "amd64") -> str:
    """QEMU's -cpu for an accelerator and guest architecture (the host's CPU under KVM)."""
    return "host" if accel == "kvm" else arch_boot(arch).tcg_cpu


def kernel_cmdline(arch: str = "amd64") -> str:
    """The kernel command line compat boots an architecture's guests with."""
    return arch_boot(arch).cmdline


def qemu_binary(arch: str = "amd64") -> str:
    """The QEMU that runs guests of arch; a UserError (exit 2) saying what to install when absent."""
    boot = arch_boot(arch)
    path = shutil.which(os.environ.get(boot.env) or boot.binary)
    if not path:
        raise UserError(f"{boot.binary} is not installed ({arch} kernels need it)",
                        f"apt-get install {boot.package}, or set {boot.env}")  # fmt: skip
    return path


@dataclass(frozen=True)
class VMConfig:
    """What one VM boots and how."""

    vmlinuz: Path
    initrd: Path
    accel: str = "tcg"  # "kvm" or "tcg"
    memory_mb: int = DEFAULT_MEMORY_MB
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    extra_cmdline: str = ""
    restore: Path | None = None  # a saved VM state to start from instead of booting
    arch: str = "amd64"  # the kernel's architecture (Debian's name): which QEMU, machine and CPU


SNAPSHOT_TIMEOUT = 60.0


class ConsoleLog:
    """A guest's console, copied from a socket to a file that keeps only the newest bytes: a guest
    that floods its console (a warning storm) until its timeout must not fill the host's disk.

    A daemon thread copies until EOF (QEMU exited). When the file has `limit` bytes it becomes
    `path.old` and a new file starts: the two always hold the last `limit` bytes the guest wrote,
    and never more than 2 * (limit + CONSOLE_READ_BYTES). The file stays readable from outside
    (compat's fault tests watch it). Reads and writes happen under one lock, and tail() first
    copies what the socket already holds: the console line a guest wrote just before it broke
    its channel is in the tail, whether or not the thread has woken up yet."""

    def __init__(self, path: Path, limit: int = CONSOLE_TAIL_BYTES):
        self.path = path
        self.old = path.with_name(path.name + ".old")
        self.limit = limit
        self._lock = threading.Lock()  # the thread's copies, tail() and close()
        self._closed = False
        self._conn: socket.socket | None = None  # None once at EOF (closed)
        self._file = None
        self._size = 0
        self._thread: threading.Thread | None = None

    def start(self, conn: socket.socket) -> None:
        """Copy what arrives on conn (which this now owns) in a daemon thread."""
        conn.setblocking(False)
        self._conn = conn
        # The thread holds this object, never the VM: a VM nobody closes is not kept alive by it.
        self._thread = threading.Thread(target=self._run, name=f"console-{self.path.parent.name}")
        self._thread.daemon = True
        self._thread.start()

    def _run(self) -> None:
        while True:
            conn = self._conn
            if conn is None:
                return
            try:
                select.select([conn], [], [])
            except (OSError, ValueError):  # closed by tail()'s copy at EOF
                return
            with self._lock:
                self._copy_available()

    def _copy_available(self) -> None:
        """Copy everything the socket holds now (under the lock); at EOF, close it and the file."""
        while self._conn is not None:
            try:
                chunk = self._conn.recv(CONSOLE_READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk or self._closed:  # EOF, or the workdir is being removed: create nothing in it
                self._conn.close()
                self._conn = None
                if self._file is not None:
                    self._file.close()
                return
            try:
                if self._file is None or self._size >= self.limit:
                    if self._file is not None:
                        self._file.close()
                        os.replace(self.path, self.old)
                    # Unbuffered: readers outside see every chunk at once.
                    self._file, self._size = open(self.path, "wb", buffering=0), 0  # noqa: SIM115 - kept open
                self._size += self._file.write(chunk)
            except OSError:
                pass  # the log is evidence, not a result: a failed write only shortens it

    def tail(self) -> bytes:
        """The last `limit` bytes the guest wrote (fewer if it wrote less)."""
        data = b""
        with self._lock:
            self._copy_available()
            for p in (self.old, self.path):
                with contextlib.suppress(FileNotFoundError):
                    data += p.read_bytes()
        return data[-self.limit :]

    def close(self) -> None:
        """Write nothing more (before the files are removed); the thread ends at EOF."""
        with self._lock:
            self._closed = True


class VM:
    """A running guest. Use as a context manager: it is killed on exit whatever happens."""

    def __init__(self, config: VMConfig, name: str = "vm", tmp_root: Path | None = None):
        self.config = config
        self.name = name
        # Named with this process's owner tag: if compat is killed outright, the next run sees
        # that the owner is gone and removes it (Cache.sweep_temporaries). Fleets put it under
        # the cache's tmp/.
        self.workdir = temp_dir(name, tmp_root)
        self.console_path = self.workdir / "console.log"
        self.console = ConsoleLog(self.console_path)
        self.qmp_path = self.workdir / "qmp.sock"
        self.proc: subprocess.Popen | None = None
        self.conn: socket.socket | None = None
        self.hello: dict | None = None
        self.boot_seconds: float | None = None
        self.modules_loaded: set[str] = set()  # kernel modules the host had this guest load
        self._next_id = 1
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    def command(self, sock_path: Path, console_sock: Path) -> list[str]:
        """QEMU's command line for this guest (amd64's is the one compat always used)."""
        c = self.config
        boot = arch_boot(c.arch)
        accel = ["-accel", c.accel, "-cpu", cpu_model(c.accel, c.arch)]
        cmdline = f"{boot.cmdline} {c.extra_cmdline}".strip()
        return [
            qemu_binary(c.arch),
            *(boot.kvm_machine if c.accel == "kvm" else boot.machine),
            *accel,
            "-m", f"{c.memory_mb}M", "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(c.vmlinuz), "-initrd", str(c.initrd), "-append", cmdline,
            "-chardev", f"socket,id=con,path={console_sock}", "-serial", "chardev:con",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=ch0,path={sock_path}",
            "-device", f"virtserialport,chardev=ch0,name={PORT_NAME}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            *(["-incoming", f"exec:cat {shlex.quote(str(c.restore))}"] if c.restore else []),
        ]  # fmt: skip

    def start(self) -> dict:
        """Boot the guest and wait for the agent's hello; returns it."""
        sock_path, console_sock = self.workdir / "ch.sock", self.workdir / "con.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(sock_path))
            listener.listen(1)
            console_listener.bind(str(console_sock))
            console_listener.listen(1)
            t0 = time.monotonic()
            command = self.command(sock_path, console_sock)
            if shutil.which("setpriv"):
                # QEMU must not outlive compat, even when compat is killed outright: the kernel
                # kills it when the thread that started it dies.
                command = ["setpriv", "--pdeathsig", "KILL", "--", *command]
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(self.workdir / "qemu.err", "wb"),  # noqa: SIM115 - owned by the child
                start_new_session=True,  # Ctrl-C reaches compat, which then kills QEMU itself
            )
            deadline = t0 + self.config.boot_timeout
            # QEMU connects both while it starts, before the guest runs: no output is lost.
            self.console.start(self._accept(console_listener, deadline, "console"))
            self.conn = self._accept(listener, deadline, "channel")
            if self.config.restore:
                # The saved guest already said hello (to the host that saved it): resume it and
                # check that its agent answers on the new connection.
                loading = lambda q: q.cmd("query-status")["status"] == "inmigrate"  # noqa: E731
                self._qmp(deadline, lambda q: q.cmd("cont"), waiting=loading)
                hello, _ = self.request({"type": "ping"}, timeout=max(deadline - time.monotonic(), 1.0))
                if hello.get("type") != "pong":
                    raise GuestError(f"{self.name}: the restored agent did not answer", self.console_tail())
            else:
                hello, _ = self.receive(deadline - time.monotonic(), waiting_for="the agent to start")
                if hello.get("type") != "hello":
                    raise GuestError(
                        f"{self.name}: expected hello, got {str(hello.get('type'))[:40]!r}", self.console_tail()
                    )
                from .guestmsg import validate

                self.hello = validate(hello, "hello", self.name, self.console_tail())
            self.boot_seconds = time.monotonic() - t0
            return self.hello or hello
        finally:
            listener.close()
            console_listener.close()

    def _accept(self, listener: socket.socket, deadline: float, what: str) -> socket.socket:
        """QEMU's connection to one of the sockets the host listens on."""
        listener.settimeout(0.2)
        while True:
            try:
                return listener.accept()[0]
            except TimeoutError:
                self._check_alive(f"before connecting its {what}")
                if time.monotonic() > deadline:
                    raise GuestError(f"{self.name}: QEMU did not connect its {what}", self.console_tail()) from None

    def _qmp(self, deadline: float, action, waiting=None):
        """Run action(qmp) on QEMU's monitor, after waiting(qmp) turns false (both may be None)."""
        from qemu.qmp.legacy import QEMUMonitorProtocol

        while True:
            self._check_alive("before its monitor answered")
            try:
                qmp = QEMUMonitorProtocol(str(self.qmp_path))
                qmp.connect()
                break
            except Exception:  # the socket appears a moment after QEMU starts
                if time.monotonic() > deadline:
                    raise GuestError(f"{self.name}: QEMU's monitor did not answer", self.console_tail()) from None
                time.sleep(0.01)
        try:
            while waiting is not None and waiting(qmp):
                if time.monotonic() > deadline:
                    raise GuestError(f"{self.name}: timed out waiting for QEMU", self.console_tail())
                time.sleep(0.01)
            return action(qmp)
        except GuestError:
            raise
        except Exception as e:
            # The monitor closed under us (EOFError, a reset socket, a QMP error): QEMU quit, e.g.
            # because a saved state it was loading is damaged. A guest failure, not a bug.
            time.sleep(0.05)  # let a dying QEMU exit, so that its last words are in the message
            self._check_alive("while its monitor answered")
            raise GuestError(f"{self.name}: QEMU's monitor failed: {e.__class__.__name__}: {str(e)[:200]}",
                             self.console_tail()) from None  # fmt: skip
        finally:
            # Closing a monitor whose QEMU already quit re-raises its EOFError: nothing to close.
            with contextlib.suppress(Exception):
                qmp.close()

    def save_state(self, path: Path) -> None:
        """Save the running guest's whole state to path (QEMU migration to a file), then let it
        run on. Restoring it (VMConfig.restore) skips the boot: ~0.2 s instead of 2-3 s."""
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT

        def save(qmp) -> None:
            qmp.cmd("stop")
            try:
                # The default bandwidth cap (128 MiB/s) would make a file migration take ~1 s.
                qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 64 << 30})
                qmp.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(path))}")
                while (status := qmp.cmd("query-migrate").get("status")) not in ("completed", "failed", "cancelled"):
                    if time.monotonic() > deadline:
                        raise GuestError(f"{self.name}: saving the guest's state timed out")
                    time.sleep(0.02)
                if status != "completed":
                    raise GuestError(f"{self.name}: saving the guest's state {status}")
            finally:
                qmp.cmd("cont")

        self._qmp(deadline, save)

    def _check_alive(self, when: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise GuestError(self._death_message(when), self.console_tail())

    def _death_message(self, when: str) -> str:
        assert self.proc is not None
        tail = self.console_tail(lines=1000)  # the panic line comes before its long register dump
        try:
            with open(self.workdir / "qemu.err", "rb") as f:  # its last lines: QEMU's last words
                f.seek(max(f.seek(0, os.SEEK_END) - CONSOLE_READ_BYTES, 0))
                err = f.read().decode(errors="replace").strip().splitlines()
        except OSError:  # the workdir is gone: the VM was closed from another thread
            err = []
        if "Kernel panic" in tail:
            panic = next(ln for ln in tail.splitlines() if "Kernel panic" in ln)
            return f"{self.name}: guest kernel panicked {when}: {panic.strip()}"
        if err:
            return f"{self.name}: QEMU exited with status {self.proc.returncode} {when}: {err[-1]}"
        said = [ln.strip() for ln in tail.splitlines() if ln.startswith(("compat-agent:", "compat-init: insmod"))]
        if said:  # the guest's own words on why it stopped
            return f"{self.name}: the guest stopped {when}: {said[-1]}"
        return f"{self.name}: the guest stopped (QEMU status {self.proc.returncode}) {when}"

    def console_tail(self, lines: int = 40) -> str:
        """The last lines of the guest's console (of its last CONSOLE_TAIL_BYTES); "" once closed."""
        try:
            text = self.console.tail().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop the guest and remove its files. The guest is disposable (no disk, nothing to
        flush), so QEMU is killed at once: a polite poweroff costs 0.5-0.7 s of emulation."""
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.conn = None
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.console.close()  # after this its thread creates no file: rmtree removes everything
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- messages ---------------------------------------------------------------------------
    def _read_exact(self, deadline: float, waiting_for: str):
        def read_exact(n: int) -> bytes:
            buf = bytearray()
            while len(buf) < n:
                conn = self.conn  # None once another thread closed the VM (Ctrl-C, run deadline)
                if conn is None:
                    raise ChannelClosed("channel closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    self._check_alive(f"while waiting for {waiting_for}")
                    raise GuestTimeout(f"{self.name}: timed out waiting for {waiting_for}", self.console_tail())
                try:
                    conn.settimeout(min(left, 0.5))
                    chunk = conn.recv(min(n - len(buf), 1 << 20))
                except TimeoutError:
                    self._check_alive(f"while waiting for {waiting_for}")
                    continue
                except OSError:
                    raise ChannelClosed("channel closed") from None
                if not chunk:
                    raise ChannelClosed("channel closed")
                buf += chunk
            return bytes(buf)

        return read_exact

    def receive(self, timeout: float, waiting_for: str = "the guest") -> tuple[dict, bytes]:
        """One frame from the guest, within timeout seconds."""
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            return read_frame(self._read_exact(deadline, waiting_for), max_payload=REPLY_MAX_PAYLOAD)
        except ChannelClosed:
            time.sleep(0.2)  # let QEMU finish dying so the message says why
            self._check_alive(f"while waiting for {waiting_for}")
            raise GuestError(f"{self.name}: the guest closed its channel", self.console_tail()) from None
        except ProtocolError as e:
            raise GuestError(f"{self.name}: the guest broke the protocol: {e}", self.console_tail()) from None

    def request(self, message: dict, payload: bytes = b"", timeout: float = 60.0) -> tuple[dict, bytes]:
        """Send one request and wait for its reply (one request at a time per VM)."""
        conn = self.conn
        if conn is None:
            raise GuestError(f"{self.name}: not started or already stopped")
        with self._lock:
            message = {**message, "id": self._next_id}
            self._next_id += 1
            try:
                conn.settimeout(timeout)
                conn.sendall(encode(message, payload))
            except OSError as e:
                self._check_alive("while sending a request")
                raise GuestError(f"{self.name}: cannot send to the guest: {e}", self.console_tail()) from None
            reply, data = self.receive(timeout, waiting_for=f"the reply to {message['type']}")
            if reply.get("id") != message["id"]:
                raise GuestError(f"{self.name}: reply out of order", self.console_tail())
            return reply, data
