"""Fault injection on real guests: a guest that panics, hangs, babbles, exits or lies in the middle
of a check; QEMU killed from outside; compat interrupted (Ctrl-C, SIGTERM); the run deadline.

Each run checks good objects before and after the faulty one on one kernel, through the CLI, with
the test build of the guest image (COMPAT_TEST_FAULTS=1: the agent injects the fault named by an
object called compat-fault-<kind>.o) and a private TMPDIR. Every fault must leave: the other
results intact, the faulty object's cells `error` with the guest's console tail, exit status 3
(130 when interrupted), no QEMU process, no temporary file, no half-built cache entry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import COMPAT, start_compat

from compat.cache import TMP_KIND, Cache

pytestmark = [pytest.mark.vm, pytest.mark.network]

KERNEL = "6.12"  # everything built in, boots fast: one kernel keeps these tests quick
WAIT = 600  # a bound on every wait below, so a broken build fails instead of hanging (never a timing assertion)


@pytest.fixture(scope="module")
def objects(built_programs, tmp_path_factory):
    """Good objects and a maker of fault objects (distinct content: objects are keyed by hash)."""
    d = tmp_path_factory.mktemp("faults")

    def fault(kind: str) -> str:
        path = d / f"compat-fault-{kind}.o"
        path.write_bytes(built_programs["counter"].read_bytes() + kind.encode())
        return str(path)

    return str(built_programs["counter"]), str(built_programs["bpf_loop"]), fault


def start(objs: list[str], tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path, Path]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "result.json"
    env = {**os.environ, "COMPAT_TEST_FAULTS": "1", "TMPDIR": str(tmpdir)}
    # --no-cache: every object goes to a guest (none is answered from the result cache)
    cmd = [*COMPAT, "check", *objs, "--kernel", KERNEL, "--no-cache", "--format", "table",
           "--format", "json", "--output", "-", "--output", str(out), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, tmpdir, out


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=WAIT)
    return proc.returncode, stdout, stderr


def processes_using(path: Path) -> list[int]:
    """Pids of processes whose command line names path (QEMU's files live in the run's TMPDIR)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(path).encode() in cmdline:
                found.append(int(entry.name))
    return found


def qemu_pids(tmpdir: Path) -> list[int]:
    pids = []
    for pid in processes_using(tmpdir):
        try:
            if b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


def assert_nothing_left(tmpdir: Path, pid: int) -> None:
    cache = Cache().root
    # The guests' work directories live under the cache's tmp/, named with their owner's pid.
    own = Path(f"{cache / TMP_KIND}/compat-{KERNEL}-{pid}.")
    assert qemu_pids(tmpdir) == [] and qemu_pids(own) == [], "QEMU processes outlived compat"
    assert list(tmpdir.iterdir()) == [], "temporary files left behind"
    assert list((cache / TMP_KIND).glob(f"compat-*-{pid}.*")) == [], "guest work directories left behind"
    half_built = [p for p in cache.glob(f"*/.tmp-*-{pid}.*-*")]
    assert half_built == [], f"half-built cache entries left behind: {half_built}"


def wait_for_console(tmpdir: Path, text: str, pid: int, skip: set[Path] = frozenset()) -> Path:
    """The first console log of a guest of the compat process pid (in its work dir: under the
    cache's tmp/, or tmpdir when the cache's path is too long for its sockets) that shows text.
    Only that process's work dirs (named with its owner tag, which starts with its pid): tests
    running in parallel, or a run's leftovers, share the cache's tmp/."""
    deadline = time.monotonic() + WAIT
    mine = f"compat-*-{pid}.*/console.log"
    while time.monotonic() < deadline:
        for log in [*(Cache().root / TMP_KIND).glob(mine), *tmpdir.glob(mine)]:
            try:
                if log not in skip and text in log.read_text(errors="replace"):
                    return log
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no guest console showed {text!r}")


def cells(doc: dict) -> dict[str, dict]:
    return {r["object"]: r for r in doc["results"]}


def summary(stdout: str) -> str:
    return stdout.rstrip().splitlines()[-1]


EXPECTED = {
    # fault: (words in the cell's message, words in its log: the guest console's tail)
    "panic": ("guest kernel panicked", "Kernel panic - not syncing: sysrq triggered crash"),
    "hang": ("was not done within the object timeout (15 s", "compat-fault: hang"),  # and not tried again
    "garbage": ("the guest broke the protocol: bad frame magic", "compat-fault: garbage"),
    "exit": ("the guest stopped", "compat-init: agent exited with status 3"),
    "malformed": ("malformed reply (check_result): programs[0].program: expected a string", "compat-fault: malformed"),
}


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_a_faulty_guest_costs_only_its_own_cell(objects, fault, tmp_path):
    good, other, make = objects
    extra = ["--object-timeout", "15"] if fault == "hang" else []
    proc, tmpdir, out = start([good, make(fault), other], tmp_path, *extra)
    status, stdout, stderr = finish(proc)
    assert status == 3, stderr
    doc = json.loads(out.read_text())
    by = cells(doc)
    # The objects before and after the fault were checked: a reboot, not a lost run.
    assert by["counter.o"]["verdict"] == "accepted" and by["bpf_loop.o"]["verdict"] == "accepted", by
    bad = by[f"compat-fault-{fault}.o"]
    message_words, log_words = EXPECTED[fault]
    assert bad["verdict"] == "error" and bad["reason"] == "infrastructure_error", bad
    assert message_words in bad["message"], bad["message"]
    if fault == "panic":  # the panic line is in the message; the tail is its register dump
        assert "Kernel panic" in bad["message"] and bad["log"], bad
    else:
        assert log_words in bad["log"], bad["log"]
    assert summary(stdout).endswith("2 accepted, 0 rejected, 1 error(s)"), stdout
    assert "Traceback" not in stderr
    assert_nothing_left(tmpdir, proc.pid)


def test_qemu_killed_from_outside_is_retried_on_a_fresh_guest_then_an_error(objects, tmp_path):
    good, other, make = objects
    proc, tmpdir, out = start([good, make("hang"), other], tmp_path, "--object-timeout", "600")
    killed: list[int] = []
    seen: set[Path] = set()
    try:
        for _ in range(2):  # the first attempt and its retry on a fresh guest
            log = wait_for_console(tmpdir, "compat-fault: hang", proc.pid, skip=seen)
            seen.add(log)
            pids = [p for p in qemu_pids(log.parent) if p not in killed]
            assert len(pids) == 1, pids
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        status, _stdout, stderr = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 3, stderr
    by = cells(json.loads(out.read_text()))
    assert by["counter.o"]["verdict"] == "accepted" and by["bpf_loop.o"]["verdict"] == "accepted", by
    bad = by["compat-fault-hang.o"]
    assert bad["verdict"] == "error" and "QEMU status -9" in bad["message"], bad
    assert "compat-fault: hang" in bad["log"]
    assert_nothing_left(tmpdir, proc.pid)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_exits_130_and_leaves_nothing(objects, sig, tmp_path):
    good, other, make = objects
    proc, tmpdir, out = start([good, make("hang"), other], tmp_path, "--object-timeout", "600")
    try:
        log = wait_for_console(tmpdir, "compat-fault: hang", proc.pid)
        assert qemu_pids(log.parent)
        proc.send_signal(sig)
        status, _stdout, stderr = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 130, stderr
    assert stderr.strip().splitlines()[-1] == "compat: interrupted", stderr
    assert not out.exists() and not list(tmp_path.glob("result.json*")), "a report was half-written"
    assert_nothing_left(tmpdir, proc.pid)


def test_run_deadline_keeps_finished_results_and_errors_the_rest(objects, tmp_path):
    good, other, make = objects
    proc, tmpdir, out = start([good, make("hang"), other], tmp_path, "--object-timeout", "600", "--timeout", "45")
    try:
        hung = wait_for_console(tmpdir, "compat-fault: hang", proc.pid)
        status, stdout, stderr = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert hung and status == 3, stderr
    by = cells(json.loads(out.read_text()))
    bad = by["compat-fault-hang.o"]
    assert bad["verdict"] == "error" and bad["message"] == "run deadline exceeded", bad
    # The good objects were checked before the hang or beside it (on a helper guest), or were still
    # waiting when the deadline came: a verdict is kept as it was, the rest is an error, never a verdict.
    done = [c for c in (by["counter.o"], by["bpf_loop.o"]) if c["verdict"] == "accepted"]
    for c in (by["counter.o"], by["bpf_loop.o"]):
        assert c in done or (c["verdict"] == "error" and c["message"] == "run deadline exceeded"), c
    assert all(c["stats"].get("insns_processed") for c in done)
    assert summary(stdout).endswith(f"{len(done)} accepted, 0 rejected, {3 - len(done)} error(s)"), stdout
    assert "run deadline exceeded" in stdout
    assert_nothing_left(tmpdir, proc.pid)


def test_product_image_ignores_fault_names(objects, tmp_path):
    """Without the test build, an object merely named compat-fault-panic.o is checked like any other."""
    _good, _, make = objects
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COMPAT_TEST_FAULTS"} | {"TMPDIR": str(tmpdir)}
    proc = start_compat("check", make("panic"), "--kernel", KERNEL, env=env)
    status, stdout, stderr = finish(proc)
    assert status == 0, stderr
    assert summary(stdout).endswith("1 accepted, 0 rejected, 0 error(s)"), stdout
    assert_nothing_left(tmpdir, proc.pid)


def test_guest_memory_is_set_per_run(real_cache, default_specs):
    """--memory (Fleet memory_mb): the guest sees that much memory (no snapshot kept for this size)."""
    from compat.guest.fleet import Fleet

    spec = next(s for s in default_specs if s.id == KERNEL)
    fleet = Fleet(real_cache, [spec], memory_mb=384)
    fleet.snapshots = None
    [outcome] = fleet.run(lambda session, kernel: session.vm.hello)
    assert outcome.error is None, outcome.error
    assert 256 * 1024 < outcome.value["mem_total_kb"] <= 384 * 1024, outcome.value
