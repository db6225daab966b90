import multiprocessing
import os
import time
from pathlib import Path

import pytest

from compat.cache import Cache
from compat.errors import InfraError


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
