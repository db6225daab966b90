import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import run_compat

from compat.cache import Cache, sha256_json
from compat.errors import InfraError, UserError


def _build_slowly(root: str, marker_dir: str, key: str) -> str:
    cache = Cache(Path(root))

    def build(d: Path) -> dict:
        # Count real builds: each process that builds leaves a marker.
        (Path(marker_dir) / f"built-{os.getpid()}").write_text("x")
        time.sleep(0.5)
        (d / "data.bin").write_bytes(b"payload" * 1000)
        return {"by": os.getpid()}

    entry = cache.ensure("things", key, build, hashed=["data.bin"])
    return entry.file("data.bin").read_bytes()[:7].decode()


def test_concurrent_processes_build_once(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_build_slowly, [(str(tmp_path / "c"), str(markers), "k1")] * 4)
    assert results == ["payload"] * 4
    assert len(list(markers.iterdir())) == 1
    assert not list((tmp_path / "c" / "things").glob(".tmp-*"))


def test_truncated_entry_is_detected_and_rebuilt(tmp_path):
    cache = Cache(tmp_path)
    builds = []

    def build(d: Path) -> dict:
        builds.append(1)
        (d / "big").write_bytes(b"a" * 4096)
        (d / "small").write_bytes(b"b" * 10)
        return {}

    e = cache.ensure("k", "key", build, hashed=["small"])
    with open(e.file("big"), "r+b") as f:  # truncated by a crash or a full disk
        f.truncate(100)
    assert cache.lookup("k", "key") is None
    cache.ensure("k", "key", build, hashed=["small"])
    e.file("small").write_bytes(b"c" * 10)  # same size, other content: the hash catches it
    assert cache.lookup("k", "key") is None
    cache.ensure("k", "key", build, hashed=["small"])
    (e.path / "manifest.json").write_text("{not json")
    assert cache.lookup("k", "key") is None
    cache.ensure("k", "key", build, hashed=["small"])
    assert len(builds) == 4


def test_failed_build_leaves_nothing(tmp_path):
    cache = Cache(tmp_path)

    def boom(d: Path) -> dict:
        (d / "half").write_bytes(b"x")
        raise RuntimeError("network died")

    with pytest.raises(RuntimeError):
        cache.ensure("k", "key", boom)
    assert cache.lookup("k", "key") is None
    assert list((tmp_path / "k").iterdir()) == []


def test_disk_full_is_an_infra_error_and_leaves_no_temporary(tmp_path):
    cache = Cache(tmp_path)

    def full(d: Path) -> dict:
        (d / "part").write_bytes(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(InfraError, match="disk full"):
        cache.ensure("k", "key", full)
    assert list((tmp_path / "k").iterdir()) == []


def test_clean_and_sweep(tmp_path):
    cache = Cache(tmp_path)
    cache.ensure("a", "1", lambda d: (d / "f").write_bytes(b"x" * 100) and {})
    stale = cache.dir("a") / ".tmp-dead-1"
    stale.mkdir()
    os.utime(stale, (0, 0))
    cache.sweep_temporaries()
    assert not stale.exists()
    assert cache.clean(["a"]) >= 100
    assert cache.lookup("a", "1") is None
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    for name in ("..", f"../{outside.name}", "a/1", ".tmp-x"):
        with pytest.raises(UserError):  # a path never reaches a removal
            cache.clean([name])
    assert outside.is_dir() and tmp_path.is_dir()


# -- pruning ---------------------------------------------------------------------------------
DAY = 24 * 3600


def _entry(cache: Cache, kind: str, key: str, size: int = 100, age_days: float = 0) -> Path:
    """A cache entry whose last use was age_days ago."""
    path = cache.ensure(kind, key, lambda d: (d / "f").write_bytes(b"x" * size) and {}).path
    _age(path, age_days)
    return path


def _age(path: Path, days: float) -> None:
    past = time.time() - days * DAY
    os.utime(path, (past, past))


def test_prune_keeps_used_entries_and_removes_unused_ones(tmp_path):
    cache = Cache(tmp_path)
    used = _entry(cache, "initrd", "used", age_days=2)
    unused = _entry(cache, "initrd", "unused", size=1000, age_days=40)
    other = _entry(cache, "images", "unused", age_days=40)
    size = cache.size(unused)
    assert cache.unused("initrd", 30) == size
    assert cache.prune(30, ["initrd"]) == (1, size)
    assert cache.lookup("initrd", "used") is not None and not unused.exists()
    assert other.exists()  # another kind: not asked for
    assert not [p for p in (tmp_path / "initrd").iterdir() if p.name.startswith(".")]  # nothing left aside
    other_size = cache.size(other)
    assert cache.prune(30) == (1, other_size)  # all kinds
    assert not other.exists() and used.exists()


def test_a_lookup_records_the_use(tmp_path):
    cache = Cache(tmp_path)
    path = _entry(cache, "snapshots", "k", age_days=40)
    assert cache.lookup("snapshots", "k", record_use=False) is not None  # a scan is no use
    assert time.time() - path.stat().st_mtime > 39 * DAY
    assert cache.lookup("snapshots", "k") is not None
    assert time.time() - path.stat().st_mtime < 60
    assert cache.prune(30) == (0, 0) and path.exists()
    # Recorded to the hour: a use within the hour is not written again.
    _age(path, 0.01)
    before = path.stat().st_mtime_ns
    cache.lookup("snapshots", "k")
    assert path.stat().st_mtime_ns == before


def test_an_entry_whose_lock_is_held_is_not_pruned(tmp_path):
    cache = Cache(tmp_path)
    path = _entry(cache, "kernels", "k", age_days=40)
    with cache.lock("kernels", "k"):  # another compat process is building or checking it
        assert cache.prune(30) == (0, 0)
        assert path.exists()
    assert cache.prune(30)[0] == 1 and not path.exists()


def test_prune_by_kind_of_data(tmp_path):
    cache = Cache(tmp_path)
    assert cache.prune(30, ["nothing-here"]) == (0, 0)  # a kind that does not exist
    with pytest.raises(UserError):
        cache.prune(30, ["../elsewhere"])
    state = cache.dir("state") / "schedule.json"
    state.write_text("{}")
    _age(state, 400)
    # Result files: plain files, last used when last written or read.
    results = cache.dir("results")
    old_result, read_result = results / "old.json", results / "read.json"
    for f in (old_result, read_result):
        f.write_text("{}")
        _age(f, 40)
    os.utime(read_result, (time.time(), time.time() - 40 * DAY))  # read yesterday (atime)
    # apt roots: in use while AptRepo opens them (state/status) or refreshes them (state/updated).
    apt = cache.dir("apt")
    for key, status_age in (("old", 40), ("open", 1)):
        (apt / key / "state").mkdir(parents=True)
        (apt / key / "state/status").touch()
        (apt / key / "state/updated").touch()
        for f in ("state/status", "state/updated", "state", ""):
            _age(apt / key / f if f else apt / key, 40)
        _age(apt / key / "state/status", status_age)
        (apt / f"{key}.lock").touch()
        _age(apt / f"{key}.lock", 40)
    # Not compat entries (no manifest: the benchmark corpus), or another cache's (a link).
    corpus = cache.dir("corpus") / "libxdp1"
    corpus.mkdir()
    _age(corpus, 40)
    linked = _entry(cache, "elsewhere", "real", age_days=40)
    (cache.dir("images") / "linked").symlink_to(linked)
    os.utime(cache.dir("images") / "linked", (0, 0), follow_symlinks=False)
    # Lock files: deleted when old and not held.
    old_lock, held_lock = cache.dir("locks") / "gone-1.lock", cache.dir("locks") / "busy-2.lock"
    for f in (old_lock, held_lock):
        f.touch()
        _age(f, 40)
    from filelock import FileLock

    with FileLock(str(held_lock)):
        removed, _ = cache.prune(30, ["state", "results", "apt", "corpus", "images", "locks"])
    assert removed == 2  # old.json and apt/old: lock files are not counted
    assert state.exists() and read_result.exists() and not old_result.exists()
    assert not (apt / "old").exists() and not (apt / "old.lock").exists()
    assert (apt / "open").is_dir() and (apt / "open.lock").exists()
    assert corpus.exists() and linked.exists() and (cache.root / "images" / "linked").is_symlink()
    assert not old_lock.exists() and held_lock.exists()


def test_cli_prune(tmp_path):

    cache = Cache(tmp_path)
    _entry(cache, "images", "a", size=3_000_000, age_days=1)

    def compat(*args):
        proc = run_compat("--cache", str(tmp_path), "cache", *args, timeout=120)  # fmt: skip
        assert "Traceback" not in proc.stderr
        return proc

    info = compat("info")
    assert info.returncode == 0 and "unused 30+ days" in info.stdout
    proc = compat("prune", "--days", "0")
    assert proc.returncode == 0 and proc.stdout.splitlines() == [
        f"freed 3 MB in {tmp_path}: 1 entry unused for more than 0 days"
    ], proc.stdout
    assert proc.stderr == "" and not (tmp_path / "images" / "a").exists()
    for bad in ("-1", "soon"):
        proc = compat("prune", "--days", bad)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "is not a number of days" in proc.stderr


def test_automatic_prune_runs_at_most_once_a_day(tmp_path, monkeypatch, capsys):
    from compat.cli.cache import _auto_prune

    cache = Cache(tmp_path)
    monkeypatch.delenv("COMPAT_CACHE_KEEP_DAYS", raising=False)
    monkeypatch.delenv("COMPAT_DEBUG", raising=False)
    first = _entry(cache, "initrd", "1", age_days=40)
    _auto_prune(cache)
    stamp = tmp_path / "state" / "last-prune"
    assert not first.exists() and stamp.exists()
    second = _entry(cache, "initrd", "2", age_days=40)
    _auto_prune(cache)  # pruned today already: one stat, nothing more
    assert second.exists()
    _age(stamp, 1.1)
    monkeypatch.setenv("COMPAT_CACHE_KEEP_DAYS", "50")
    _auto_prune(cache)
    assert second.exists()  # not unused for 50 days
    for setting in ("0", "-3", "a month"):  # off, or a setting that is not a number: nothing goes
        _age(stamp, 1.1)
        monkeypatch.setenv("COMPAT_CACHE_KEEP_DAYS", setting)
        _auto_prune(cache)
        assert second.exists()
    monkeypatch.setenv("COMPAT_CACHE_KEEP_DAYS", "30")
    _auto_prune(cache)
    assert not second.exists()
    assert capsys.readouterr().err == ""

    # Whatever goes wrong, the check it follows is not failed: one line under COMPAT_DEBUG.
    def broken(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Cache, "prune", broken)
    _age(stamp, 1.1)
    _auto_prune(cache)
    assert capsys.readouterr().err == ""
    _age(stamp, 1.1)
    monkeypatch.setenv("COMPAT_DEBUG", "1")
    _auto_prune(cache)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "not pruned" in err[0] and "Read-only" in err[0]


# -- integrity: digests of every file, checked cheaply on use and fully on demand -----------------


def _corrupt_in_place(path: Path, keep_mtime: bool = False) -> None:
    """Overwrite the middle of a file with different bytes of the same length (a disk fault, an
    interrupted copy or another process); with keep_mtime its mtime is set back as a fault keeps it."""
    st = path.stat()
    data = path.read_bytes()
    middle = len(data) // 2
    with open(path, "r+b") as f:
        f.seek(middle)
        f.write(bytes(b ^ 0xFF for b in data[middle : middle + 64]))
    assert path.stat().st_size == st.st_size
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _counted_entry(cache: Cache, builds: list, kind: str = "things", key: str = "k") -> Path:
    def build(d: Path) -> dict:
        builds.append(1)
        (d / "sub").mkdir()
        (d / "sub" / "unhashed.bin").write_bytes(bytes(range(256)) * 64)
        (d / "data.bin").write_bytes(b"payload" * 1000)
        return {"answer": 42}

    return cache.ensure(kind, key, build).path


def test_a_same_size_corruption_of_any_file_costs_one_rebuild(tmp_path):
    notes: list[str] = []
    cache = Cache(tmp_path, notify=notes.append)
    builds: list = []
    path = _counted_entry(cache, builds)
    # Not named in `hashed`: before digests of every file, only its size was checked.
    _corrupt_in_place(path / "sub" / "unhashed.bin")
    assert cache.lookup("things", "k") is None
    path = _counted_entry(cache, builds)
    assert len(builds) == 2
    assert (path / "sub" / "unhashed.bin").read_bytes() == bytes(range(256)) * 64
    assert len(notes) == 1 and "things/k" in notes[0] and "unhashed.bin" in notes[0]
    assert cache.lookup("things", "k") is not None  # and intact from now on
    _counted_entry(cache, builds)
    assert len(builds) == 2


def test_damage_that_keeps_the_mtime_is_found_on_use_and_by_a_full_check(tmp_path):
    cache = Cache(tmp_path, notify=lambda _: None)
    builds: list = []
    path = _counted_entry(cache, builds)
    _corrupt_in_place(path / "data.bin", keep_mtime=True)
    # The inode and mtime are those recorded at save, but the write moved the ctime, which no one
    # can set back: the cheap check on use sees it...
    assert cache.lookup("things", "k") is None
    # ...and the full check (after a failed load, or `compat cache verify`) says what and removes it.
    found = cache.verify_entry("things", "k", repair=True)
    assert not found.intact and found.removed and "data.bin" in found.damage
    assert not path.exists()
    _counted_entry(cache, builds)
    assert len(builds) == 2


def test_a_manifest_that_parses_but_was_altered_or_does_not_parse_is_rebuilt(tmp_path):
    cache = Cache(tmp_path, notify=lambda _: None)
    builds: list = []
    manifest = _counted_entry(cache, builds) / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"answer": 42', '"answer": 43'))  # same size, still JSON
    assert cache.lookup("things", "k") is None
    assert cache.ensure("things", "k", lambda d: {"answer": 42}).meta == {"answer": 42}
    manifest.write_text("{" + manifest.read_text()[1:-1] + "{")  # same size, no JSON
    assert cache.lookup("things", "k") is None
    _counted_entry(cache, builds)
    assert len(builds) == 2


def test_a_copied_entry_is_checked_fully_once_then_cheaply(tmp_path):
    cache = Cache(tmp_path)
    builds: list = []
    path = _counted_entry(cache, builds)
    copy = path.with_name("copy")
    shutil.copytree(path, copy)  # new inodes and mtimes: the recorded identities no longer match
    stamps = json.loads((copy / "manifest.json").read_text())["stamps"]
    assert cache.lookup("things", "copy") is not None
    refreshed = json.loads((copy / "manifest.json").read_text())["stamps"]
    assert refreshed != stamps and refreshed["data.bin"][0] == (copy / "data.bin").stat().st_ino


def test_an_entry_of_an_older_compat_is_still_used_and_verified_for_what_it_records(tmp_path):
    cache = Cache(tmp_path)
    entry = tmp_path / "kernels" / "old"
    entry.mkdir(parents=True)
    (entry / "vmlinuz").write_bytes(b"k" * 100)
    manifest = {"schema": "compat-cache/v1", "created": 0, "meta": {"m": 1}, "sizes": {"vmlinuz": 100},
                "sha256": {"vmlinuz": hashlib.sha256(b"k" * 100).hexdigest()}}  # fmt: skip
    (entry / "manifest.json").write_text(json.dumps(manifest))
    assert cache.lookup("kernels", "old").meta == {"m": 1}
    found = cache.verify_entry("kernels", "old")
    assert found.intact and found.partial


def test_cli_cache_verify_removes_damaged_entries_and_says_so(tmp_path):
    cache = Cache(tmp_path)
    builds: list = []
    good = _counted_entry(cache, builds, key="good")
    bad = _counted_entry(cache, builds, kind="snapshots", key="bad")
    _corrupt_in_place(bad / "data.bin", keep_mtime=True)
    results = tmp_path / "results"
    results.mkdir()
    payload = {"reply": {"type": "check_result"}, "n": 1}
    doc = {"schema": "s", "key": "r", "sha256": sha256_json(payload), "payload": payload}
    (results / "ok.json").write_text(json.dumps(doc))
    (results / "bad.json").write_text(json.dumps(doc).replace('"n": 1', '"n": 2'))
    env = {**os.environ, "COMPAT_CACHE": str(tmp_path)}
    run = run_compat("cache", "verify", "--json", env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["checked"], report["damaged"], report["removed"]) == (4, 2, 2)
    assert report["kinds"]["snapshots"] == {"checked": 1, "damaged": 1, "removed": 1}
    assert {(d["kind"], d["key"]) for d in report["damaged_entries"]} == {("snapshots", "bad"), ("results", "bad.json")}
    assert good.exists() and not bad.exists() and (results / "ok.json").exists() and not (results / "bad.json").exists()
    # The table form; a second pass finds nothing more to do.
    run = run_compat("cache", "verify", "things", env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0 and "things" in run.stdout and "removed" in run.stdout, run.stdout
