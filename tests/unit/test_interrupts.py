"""Nothing is left behind, whatever stops compat: SIGKILL and SIGINT during a boot, a snapshot save
and a kernel download; two runs started together on an empty cache; a cache whose filesystem
fills up. After each, a normal run gives verdicts and no temporary of the stopped run remains.

The VM tests work on a private cache (COMPAT_CACHE) made of hard links to the real cache's kernels,
boot images, apt root and guest image (so no test downloads ~80 MB kernels again), and boot one
kernel. The phases are hit by watching their files appear: a VM's work directory
(``tmp/compat-<kernel>-<owner>-*``), a snapshot's half-written state
(``snapshots/.tmp-*/state``) and a kernel's half-downloaded package (``kernels/.tmp-*/debs/*``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from compat import paths
from compat.cache import TMP_KIND, Cache


# -- the sweep (no VM) -----------------------------------------------------------------------
def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _tag(pid: int, start: int) -> str:
    return f"{pid}.{start}.{paths._boot_id()}"


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The system's temporary directory, for this test: a private one."""
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(sys_tmp))
    return sys_tmp


def test_sweep_removes_what_dead_owners_left_and_keeps_what_live_ones_hold(tmp_path, private_tmp):
    cache = Cache(tmp_path / "cache")
    tmp = cache.dir(TMP_KIND)
    kernels = cache.dir("kernels")
    me, dead = os.getpid(), _dead_pid()
    start = paths._start_ticks(me)
    assert start is not None
    hexid = uuid.uuid4().hex[:8]
    gone = [
        tmp / f"compat-6.1-{_tag(dead, 1234)}-abcd_123",  # owner exited
        tmp / f"compat-6.1-{_tag(me, start + 1)}-abcd_123",  # this pid, another process: reused
        tmp / f"compat-6.1-{me}.{start}.ffffffff-abcd_123",  # this pid and start, another boot
        private_tmp / f"compat-sid-{_tag(dead, 99)}-x1y2z3w4",  # in the system's temporary dir too
        kernels / f".tmp-0123456789abcdef-{dead}-{hexid}",  # ensure's build dir of a dead process
        kernels / f".tmp-rm-{hexid}",  # an entry renamed aside to be deleted
        cache.dir("state") / f".tmp-hashes.json-{dead}-140000000-{hexid}",  # replace_text's
    ]
    kept = [
        tmp / f"compat-6.1-{paths.owner_tag()}-abcd_123",  # this process: alive
        private_tmp / f"compat-6.1-{paths.owner_tag()}-abcd_123",
        kernels / f".tmp-0123456789abcdef-{me}-{hexid}",  # ensure's build dir of a live process
        private_tmp / "compat-notours",  # not a name compat gives
    ]
    for p in gone + kept:
        p.mkdir()
        (p / "console.log").write_text("x")
    # Apt roots hold replace_text's temporaries one level down.
    apt_root = cache.dir("apt") / "0123456789abcdef"
    apt_root.mkdir()
    apt_tmp = apt_root / f".tmp-compat-queries.json-{dead}-1400-{hexid}"
    apt_tmp.write_text("{")
    gone.append(apt_tmp)
    # A pid-only temporary whose pid is now a process started after it was written: pid reuse.
    reused = kernels / f".tmp-fedcba9876543210-{me}-{hexid}"
    reused.mkdir()
    os.utime(reused, (1, 1))  # ctime cannot be set back; the start-time check uses ctime: see below
    assert cache.sweep_temporaries() == len(gone)
    assert [p for p in gone if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert reused.exists()  # written after this process started: possibly ours, kept


def test_sweep_removes_old_unowned_vm_dirs_unless_a_process_names_them(tmp_path, private_tmp):
    cache = Cache(tmp_path / "cache")
    names = ("aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd")
    old, busy, fresh, foreign = (private_tmp / f"compat-6.1-{s}" for s in names)
    for d in (old, busy, fresh, foreign):
        d.mkdir()
        (d / "console.log").write_text("x")
    (foreign / "notes.txt").write_text("someone else's")
    for d in (old, busy, foreign):
        os.utime(d, (0, 0))
    # A process that names the directory on its command line, as QEMU names its sockets.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"{busy}/ch.sock"])
    try:
        deadline = time.monotonic() + 30
        while str(busy).encode() not in Path(f"/proc/{holder.pid}/cmdline").read_bytes():  # exec'd yet?
            assert time.monotonic() < deadline
            time.sleep(0.01)
        cache.sweep_temporaries()
        assert not old.exists()
        assert busy.exists() and fresh.exists() and foreign.exists()
    finally:
        holder.kill()
        holder.wait()


def test_vm_work_dirs_live_under_the_cache_and_name_their_owner(tmp_path):
    from compat.guest.vm import VM, VMConfig

    short = Path(tempfile.mkdtemp(prefix="ci-"))  # pytest's tmp_path can be too long for sockets
    config = VMConfig(Path("/nonexistent/vmlinuz"), Path("/nonexistent/initrd"))
    vm = VM(config, "cloud-6.12", tmp_root=short / "tmp")
    try:
        assert vm.workdir.parent == short / "tmp"
        m = paths.TEMP_DIR_RE.match(vm.workdir.name)
        assert m and m["owner"] == paths.owner_tag(), vm.workdir.name
        assert paths.owner_alive(m["owner"])
    finally:
        vm.close()
        shutil.rmtree(short)
    assert not vm.workdir.exists()
    # A cache path too long for the unix sockets: the system's temporary directory instead.
    deep = tmp_path / ("d" * 90) / "tmp"
    vm = VM(config, "6.1", tmp_root=deep)
    try:
        assert not str(vm.workdir).startswith(str(deep)) and paths.TEMP_DIR_RE.match(vm.workdir.name)
    finally:
        vm.close()


# -- real runs, real signals -------------------------------------------------------------------
KERNEL = "6.1"



