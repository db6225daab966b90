"""What a warm run does not redo: apt-cache queries on an unchanged index, hashes of unchanged files."""

from __future__ import annotations

import os

import pytest

import compat.cache as cache_mod
from compat.cache import Cache, HashMemo
from compat.kernels.apt import AptRepo, AptSource


def test_file_hashes_are_remembered_while_the_file_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "RECENT_NS", 0)
    memo = HashMemo(tmp_path / "state" / "hashes.json")
    f = tmp_path / "big"
    f.write_bytes(b"a" * 1000)
    digest = memo.sha256(f)
    assert digest == cache_mod.sha256_file(f)

    def boom(path, chunk=1 << 20):
        raise AssertionError("hashed again")

    monkeypatch.setattr(cache_mod, "sha256_file", boom)
    assert memo.sha256(f) == digest
    assert HashMemo(memo.path).sha256(f) == digest  # another process: from the file
    f.write_bytes(b"b" * 1001)  # another size (and ctime): hashed again
    with pytest.raises(AssertionError, match="hashed again"):
        memo.sha256(f)


def test_a_file_changed_just_now_is_not_remembered(tmp_path, monkeypatch):
    memo = HashMemo(tmp_path / "hashes.json")
    f = tmp_path / "fresh"
    f.write_bytes(b"x")
    memo.sha256(f)  # ctime within RECENT_NS: a write in the same clock tick could hide
    calls = []
    real = cache_mod.sha256_file
    monkeypatch.setattr(cache_mod, "sha256_file", lambda p, chunk=1 << 20: calls.append(p) or real(p))
    memo.sha256(f)
    assert calls == [f]


def test_cache_lookup_still_catches_an_altered_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "RECENT_NS", 0)
    cache = Cache(tmp_path)
    entry = cache.ensure("k", "key", lambda d: (d / "f").write_bytes(b"1" * 10) and {}, hashed=["f"])
    assert cache.lookup("k", "key") is not None  # remembered now
    st = entry.file("f").stat()
    entry.file("f").write_bytes(b"2" * 10)
    os.utime(entry.file("f"), ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime, new ctime
    if entry.file("f").stat().st_ctime_ns == st.st_ctime_ns:
        pytest.skip("this filesystem did not move the ctime")
    assert cache.lookup("k", "key") is None


def test_apt_queries_are_answered_from_the_memo_until_the_index_changes(tmp_path):
    repo = AptRepo(Cache(tmp_path), [AptSource("http://mirror.invalid/debian", ("trixie",))])
    lists = repo.root / "state/lists"
    (lists / "x_Packages").write_text("one")
    calls = []

    def compute():
        calls.append(1)
        return ["answer", len(calls)]

    assert repo._memo("q", compute) == ["answer", 1]
    assert repo._memo("q", compute) == ["answer", 1]
    again = AptRepo(Cache(tmp_path), [AptSource("http://mirror.invalid/debian", ("trixie",))])
    assert again._memo("q", compute) == ["answer", 1] and len(calls) == 1  # a new process: from disk
    (lists / "x_Packages").write_text("two, and longer")  # apt-get update changed the index
    assert again._memo("q", compute) == ["answer", 2]


def test_runs_reaching_one_apt_root_by_two_paths_never_rewrite_each_others_configuration(tmp_path):
    # The tests link a cache's apt root into another cache; before, the two spellings of its path
    # made each run rewrite apt.conf through one shared temporary name, and a run at the same time
    # lost the race (FileNotFoundError on the rename).
    real = tmp_path / "real"
    linked = tmp_path / "linked"
    source = [AptSource("http://mirror.invalid/debian", ("trixie",))]
    first = AptRepo(Cache(real), source)
    linked.mkdir()
    (linked / "apt").symlink_to(real / "apt")
    second = AptRepo(Cache(linked), source)
    assert first.conf.resolve().parent == second.conf.resolve().parent
    assert first.conf.name != second.conf.name
    assert f'Dir "{first.root}/"' in first.conf.read_text()
    assert f'Dir "{second.root}/"' in second.conf.read_text()
    assert not list(first.root.glob("*.tmp*")) and not list(first.root.glob(".tmp-*"))
