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

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import COMPAT

from compat.cache import TMP_KIND, Cache

WAIT = 600  # a bound on every wait (a broken build fails instead of hanging), never a timing assertion


# -- real runs, real signals -------------------------------------------------------------------
KERNEL = "6.1"
# What a private cache borrows from the real one (hard links: no kernel is downloaded again).
# Snapshots, results and locks are never borrowed: each test makes its own.
BORROWED = ("apt", "kernels", "boot", "initrd", "images", "modules", "modsyms", "probes")
REAL_CACHE = Cache().root


def _real_has_kernel() -> bool:
    for manifest in (REAL_CACHE / "kernels").glob("*/manifest.json"):
        try:
            if json.loads(manifest.read_text())["meta"]["version"].startswith(f"{KERNEL}."):
                return True
        except (OSError, ValueError, KeyError):
            continue
    return False


def make_cache(dest: Path, kinds: tuple[str, ...] = BORROWED) -> Path:
    """A private cache at dest holding hard links to the real cache's entries of these kinds
    (same filesystem as the real cache), and a copy of its small state files (the accelerator
    probe's answer: no probe boot)."""
    if not _real_has_kernel():
        pytest.skip(f"needs the {KERNEL} kernel in the real cache (compat kernels fetch)")
    dest.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        if (REAL_CACHE / kind).is_dir():
            subprocess.run(["cp", "-al", str(REAL_CACHE / kind), str(dest / kind)], check=True)
    # No borrowed temporary: this run's own leftovers are what the tests look for.
    for leftover in [*dest.glob("*/.tmp-*"), *dest.glob("apt/*/.tmp-*")]:
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    (dest / "state").mkdir(exist_ok=True)
    for name in ("accel.json", "hashes.json"):
        if (REAL_CACHE / "state" / name).is_file():
            shutil.copy2(REAL_CACHE / "state" / name, dest / "state" / name)
    return dest


@pytest.fixture
def short_dir():
    """A directory with a short path (a VM's unix sockets live under the cache's tmp/)."""
    # On the real cache's filesystem, for the hard links: /var/tmp if it is there, else beside it.
    base = Path("/var/tmp")
    with contextlib.suppress(OSError):
        if base.stat().st_dev != REAL_CACHE.stat().st_dev:
            base = REAL_CACHE.parent
    d = Path(tempfile.mkdtemp(prefix="ci-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(
    cache: Path, sys_tmp: Path, objs: list[str], *extra: str, env: dict | None = None, kernel: str = KERNEL
) -> subprocess.Popen:
    out = cache.parent / f"result-{uuid.uuid4().hex[:6]}.json"
    environ = {**os.environ, "COMPAT_CACHE": str(cache), "TMPDIR": str(sys_tmp), "COMPAT_APT_MAX_AGE": "999999999",
               "COMPAT_CACHE_KEEP_DAYS": "0", **(env or {})}  # fmt: skip
    environ.pop("COMPAT_DEBUG", None)
    cmd = [*COMPAT, "check", *objs, "--kernel", kernel, "--no-cache",
           "--format", "json", "--output", str(out), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.result_path = out  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=WAIT)
    assert "Traceback" not in err, err
    return proc.returncode, err


def verdicts(proc: subprocess.Popen) -> dict[str, str]:
    doc = json.loads(proc.result_path.read_text())  # type: ignore[attr-defined]
    return {f"{r['object']}:{r['program']}@{r['kernel']}": r["verdict"] for r in doc["results"]}


def wait_for(what: str, found, timeout: float = WAIT):
    """found()'s first true value, polled every 10 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"never saw {what}")


def processes_in(path: Path) -> list[str]:
    """Processes whose command line names path or whose working directory is under it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(path).encode() in cmdline or cwd.startswith(str(path)):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


def leftovers(cache: Path, sys_tmp: Path) -> list[Path]:
    """Temporaries of any run: guests' work directories, half-built entries, half-written files."""
    found = [*cache.glob(f"{TMP_KIND}/*"), *cache.glob("*/.tmp-*"), *cache.glob("apt/*/.tmp-*"), *sys_tmp.iterdir()]
    return sorted(found)


def half_built_entries(cache: Path) -> list[Path]:
    """Entry directories without a manifest (never renamed into place half-built)."""
    kinds = ("kernels", "boot", "initrd", "images", "modules", "modsyms", "snapshots", "probes")
    entries = [p for k in kinds for p in cache.glob(f"{k}/*") if not p.name.startswith(".")]
    return [p for p in entries if not (p / "manifest.json").is_file()]


def kill_at(cache: Path, sys_tmp: Path, objs: list[str], sig: signal.Signals, phase: str, found, **kw) -> list[Path]:
    """Start a check, send sig once found(cache, pid) sees the phase in that run (never what an
    earlier run left), wait for compat to end; returns what it
    left behind (SIGKILL: its temporaries; any other signal: nothing, checked here)."""
    proc = start(cache, sys_tmp, objs, **kw)
    try:

        def seen() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"compat ended before {phase}: {proc.communicate()[1]}")
            return found(cache, proc.pid)

        wait_for(phase, seen)
        proc.send_signal(sig)
        status, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # QEMU and apt die with compat (their parent-death signal), whatever signal compat got: at
    # once, not when a download or a guest's work would have ended (a generous bound).
    wait_for("the run's processes to end", lambda: not processes_in(cache), timeout=20)
    assert half_built_entries(cache) == []  # nothing that looks complete and is not
    if sig == signal.SIGKILL:
        assert status == -signal.SIGKILL
        return leftovers(cache, sys_tmp)
    assert status == 130, err
    assert err.strip().splitlines()[-1] == "compat: interrupted", err
    assert leftovers(cache, sys_tmp) == []
    assert not proc.result_path.exists()  # type: ignore[attr-defined]
    return []


def _guest_booting(cache: Path, pid: int) -> bool:
    """A guest of run pid is booting: its work directory exists and its QEMU runs, and no snapshot
    is being saved yet."""
    dirs = list(cache.glob(f"{TMP_KIND}/compat-{KERNEL}-{pid}.*"))
    return bool(dirs) and bool(processes_in(dirs[0])) and not list(cache.glob(f"snapshots/.tmp-*-{pid}.*-*"))


def _snapshot_saving(cache: Path, pid: int) -> bool:
    """Run pid is writing a snapshot's state (not yet renamed into place)."""
    return any(p.stat().st_size > 0 for p in cache.glob(f"snapshots/.tmp-*-{pid}.*-*/state") if p.exists())


@pytest.mark.vm
@pytest.mark.parametrize("phase", ["boot", "snapshot"])
def test_killed_or_interrupted_then_a_normal_run_gives_verdicts_and_leaves_nothing(phase, built_programs, short_dir):
    cache, sys_tmp = make_cache(short_dir / "cache"), short_dir / "systmp"
    sys_tmp.mkdir()
    objs = [str(built_programs["counter"])]
    found = _guest_booting if phase == "boot" else _snapshot_saving
    left = kill_at(cache, sys_tmp, objs, signal.SIGKILL, phase, found)
    # What SIGKILL leaves (no handler runs): the guest's work directory, the half-saved snapshot.
    assert any(p.parent.name == TMP_KIND for p in left), left
    if phase == "snapshot":
        assert any(p.parent.name == "snapshots" for p in left), left
    assert list(cache.glob("snapshots/*/manifest.json")) == []  # none looks complete
    # The next run sweeps them at its start (their owner is gone); SIGINT leaves nothing itself.
    assert kill_at(cache, sys_tmp, objs, signal.SIGINT, phase, found) == []
    assert not any(p.exists() for p in left)
    proc = start(cache, sys_tmp, objs)
    status, err = finish(proc)
    assert status == 0, err
    assert set(verdicts(proc).values()) == {"accepted"}, verdicts(proc)
    assert leftovers(cache, sys_tmp) == []
    assert len(list(cache.glob("snapshots/*/manifest.json"))) == 1  # saved whole by the normal run


CLOUD = "cloud-6.1"  # the smallest kernel package of the archive's 6.1 series (~27 MB)


def _downloading(cache: Path, pid: int) -> bool:
    """Run pid has written part of a kernel package (into its entry's build directory)."""
    return any(p.stat().st_size > 0 for p in cache.glob(f"kernels/.tmp-*-{pid}.*-*/debs/*") if p.exists())


@pytest.mark.vm
@pytest.mark.network
def test_killed_or_interrupted_during_a_kernel_download(built_programs, short_dir):
    cache, sys_tmp = make_cache(short_dir / "cache"), short_dir / "systmp"
    sys_tmp.mkdir()
    for manifest in cache.glob("kernels/*/manifest.json"):  # this test downloads it itself
        if "cloud-amd64" in manifest.read_text():
            shutil.rmtree(manifest.parent)
    matrix = short_dir / "matrix.yaml"
    matrix.write_text(f'kernels:\n  - id: "{CLOUD}"\n    series: "6.1"\n    flavour: cloud-amd64\n')
    objs = [str(built_programs["counter"])]
    kw = {"kernel": CLOUD, "env": {"COMPAT_SNAPSHOTS": "0"}}  # snapshots: tested above
    args = ("--matrix", str(matrix))
    left = kill_at(cache, sys_tmp, [*objs, *args], signal.SIGKILL, "a download", _downloading, **kw)
    assert any(p.parent.name == "kernels" for p in left), left  # the partial download, aside
    # Killed with compat: apt's download method did not go on to finish the package (it did, in
    # the background, before apt ran under a guard that kills its process group).
    (partial,) = cache.glob("kernels/.tmp-*/debs/*.deb")
    unpack = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(partial)], capture_output=True)
    assert unpack.returncode != 0, "the package was downloaded whole after compat was killed"
    assert kill_at(cache, sys_tmp, [*objs, *args], signal.SIGINT, "a download", _downloading, **kw) == []
    assert not any(p.exists() for p in left)
    proc = start(cache, sys_tmp, objs, *args, **kw)
    status, err = finish(proc)
    assert status == 0, err
    assert set(verdicts(proc).values()) == {"accepted"}, verdicts(proc)
    assert leftovers(cache, sys_tmp) == []
    assert sum("cloud-amd64" in m.read_text() for m in cache.glob("kernels/*/manifest.json")) == 1


# -- two runs at once ----------------------------------------------------------------------------
@pytest.mark.vm
@pytest.mark.network
def test_two_runs_started_together_on_an_empty_cache_build_once_and_agree(built_programs, short_dir):
    # Kernels (and their boot images, modules, indexes) are borrowed: a truly empty cache would
    # download ~350 MB. Guest image, initrds, snapshots, probes and results start empty.
    cache = make_cache(short_dir / "cache", ("apt", "kernels", "boot", "modules", "modsyms"))
    sys_tmp = short_dir / "systmp"
    sys_tmp.mkdir()
    objs = [str(built_programs["counter"]), str(built_programs["bpf_loop"])]
    procs = [start(cache, sys_tmp, objs) for _ in range(2)]
    builders: dict[str, set[str]] = {}  # kind -> the build directories seen (one per builder)
    while any(p.poll() is None for p in procs):
        for tmp in cache.glob("*/.tmp-*"):
            if not tmp.name.startswith(".tmp-rm-") and tmp.is_dir():
                builders.setdefault(tmp.parent.name, set()).add(tmp.name)
        time.sleep(0.01)
    results = [finish(p) for p in procs]
    assert [status for status, _ in results] == [0, 0], results
    assert verdicts(procs[0]) == verdicts(procs[1]) and len(verdicts(procs[0])) >= 2
    # One built each entry while the other waited for it (the entry's lock): never two builders.
    assert builders.get("images") and all(len(names) == 1 for names in builders.values()), builders
    for kind in ("images", "initrd", "snapshots"):
        assert len(list(cache.glob(f"{kind}/*/manifest.json"))) == 1, kind
    assert leftovers(cache, sys_tmp) == []


# -- a full disk ---------------------------------------------------------------------------------
@pytest.fixture
def small_fs(short_dir):
    """A 24 MiB tmpfs (grown later with .grow()); skipped where mounting is not permitted."""
    mnt = short_dir / "fs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here (needs root and mount permission): {proc.stderr.strip()}")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=1g", str(mnt)], check=True)

    try:
        yield mnt, grow
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _cache_on(fs: Path, borrowed: Path, kinds: tuple[str, ...]) -> Path:
    """A cache on fs whose kinds other than these are symbolic links to the borrowed cache (on the
    real cache's filesystem: kernels are not copied onto the small one)."""
    cache = fs / "cache"
    cache.mkdir()
    for kind in sorted(p.name for p in borrowed.iterdir()):
        if kind not in kinds:
            (cache / kind).symlink_to(borrowed / kind)
    return cache


@pytest.mark.vm
@pytest.mark.network
def test_a_full_disk_during_a_kernel_download_is_one_error_naming_the_cache(built_programs, short_dir, small_fs):
    fs, grow = small_fs
    borrowed = make_cache(short_dir / "borrowed")
    for manifest in borrowed.glob("kernels/*/manifest.json"):
        if "cloud-amd64" in manifest.read_text():
            shutil.rmtree(manifest.parent)
    cache = _cache_on(fs, borrowed, ("kernels", "tmp", "locks"))
    sys_tmp = short_dir / "systmp"
    sys_tmp.mkdir()
    matrix = short_dir / "matrix.yaml"
    matrix.write_text(f'kernels:\n  - id: "{CLOUD}"\n    series: "6.1"\n    flavour: cloud-amd64\n')
    objs = [str(built_programs["counter"]), "--matrix", str(matrix)]
    kw = {"kernel": CLOUD, "env": {"COMPAT_SNAPSHOTS": "0"}}
    proc = start(cache, sys_tmp, objs, **kw)
    status, err = finish(proc)
    assert status == 3, err
    # The kernel's cells have no verdict, and say why in one line that names the cache.
    doc = json.loads(proc.result_path.read_text())  # type: ignore[attr-defined]
    assert doc["results"] and {r["verdict"] for r in doc["results"]} == {"error"}, doc["results"]
    messages = {r["message"] for r in doc["results"]}
    assert len(messages) == 1, messages
    (message,) = messages
    assert "disk full" in message and str(cache) in message and "\n" not in message, message
    assert list(cache.glob("kernels/*")) == []  # nothing half-written stays, nothing looks complete
    grow()
    proc = start(cache, sys_tmp, objs, **kw)
    status, err = finish(proc)
    assert status == 0, err
    assert set(verdicts(proc).values()) == {"accepted"}
    assert leftovers(cache, sys_tmp) == []


@pytest.mark.vm
def test_a_full_disk_during_a_snapshot_save_costs_the_snapshot_not_the_run(built_programs, short_dir, small_fs):
    fs, grow = small_fs
    borrowed = make_cache(short_dir / "borrowed")
    cache = _cache_on(fs, borrowed, ("snapshots", "results", "tmp", "locks"))
    sys_tmp = short_dir / "systmp"
    sys_tmp.mkdir()
    objs = [str(built_programs["counter"])]
    proc = start(cache, sys_tmp, objs)
    status, err = finish(proc)
    # A snapshot only makes later guests start faster: the run goes on without it.
    assert status == 0, err
    assert set(verdicts(proc).values()) == {"accepted"}
    assert list(cache.glob("snapshots/*")) == []  # no half-saved state, aside or in place
    assert leftovers(cache, sys_tmp) == []
    grow()
    proc = start(cache, sys_tmp, objs)
    status, err = finish(proc)
    assert status == 0, err
    assert len(list(cache.glob("snapshots/*/manifest.json"))) == 1
