"""The guest console's log (compat.guest.vm.ConsoleLog) keeps a bounded tail, without guests: one end of
a socketpair stands in for QEMU's console chardev."""

from __future__ import annotations

import gc
import socket
import tempfile
import weakref
from pathlib import Path

from compat.guest.vm import CONSOLE_READ_BYTES, VM, ConsoleLog, VMConfig

WAIT = 60  # a bound on the copy thread's end, never a timing assertion


def feed(log: ConsoleLog, data: bytes) -> None:
    host, qemu = socket.socketpair()
    log.start(host)
    qemu.sendall(data)
    qemu.close()  # EOF, as when QEMU exits
    log._thread.join(WAIT)
    assert not log._thread.is_alive(), "the copy did not end at EOF"


def test_a_flooding_console_keeps_only_its_newest_bytes(tmp_path):
    limit = 10_000
    data = b"".join(b"[%8d] WARNING: storm\n" % i for i in range(100_000))  # 2.6 MB
    log = ConsoleLog(tmp_path / "console.log", limit)
    feed(log, data)
    assert log.tail() == data[-limit:]
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert limit <= on_disk <= 2 * (limit + CONSOLE_READ_BYTES), on_disk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["console.log", "console.log.old"]


def test_a_short_console_is_kept_whole(tmp_path):
    log = ConsoleLog(tmp_path / "console.log")
    feed(log, b"compat-init: starting\nKernel panic - not syncing: sysrq triggered crash\n")
    assert log.tail().endswith(b"Kernel panic - not syncing: sysrq triggered crash\n")
    assert (tmp_path / "console.log").read_bytes() == log.tail()  # readable from outside too


def test_the_tail_holds_what_the_guest_wrote_last_before_the_copy_thread_woke(tmp_path):
    # A guest that writes to its console and then breaks its channel: the host reads the tail at
    # once, possibly before the copy thread ran. (No thread here: as if it had not woken yet.)
    log = ConsoleLog(tmp_path / "console.log")
    host, qemu = socket.socketpair()
    host.setblocking(False)
    log._conn = host
    qemu.sendall(b"compat-fault: garbage\n")
    assert log.tail() == b"compat-fault: garbage\n"
    qemu.close()
    assert log.tail() == b"compat-fault: garbage\n" and log._conn is None  # EOF: closed


def test_a_closed_log_creates_no_file(tmp_path):
    """After close() (the VM's files are being removed) nothing is written: rmtree leaves nothing."""
    log = ConsoleLog(tmp_path / "console.log")
    log.close()
    feed(log, b"late output\n")
    assert list(tmp_path.iterdir()) == [] and log.tail() == b""


def test_the_copy_thread_does_not_keep_its_vm_alive(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    vm = VM(VMConfig(Path("/nonexistent/vmlinuz"), Path("/nonexistent/initrd")), "k")
    host, qemu = socket.socketpair()
    vm.console.start(host)
    qemu.sendall(b"still running\n")
    ref = weakref.ref(vm)
    del vm
    gc.collect()
    assert ref() is None
    qemu.close()
