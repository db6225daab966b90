"""The front door (issue 19): cache kinds, the accelerator probe, the Python API, progress and
verbosity, machine-readable output of every command."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from compat.cache import KINDS, Cache
from compat.errors import EXIT_USAGE, UserError
from tests.conftest import run_compat

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("action", ["clean", "prune", "verify"])
def test_cache_unknown_kind_is_a_usage_error(tmp_path, action):
    """`compat cache clean bogus` said "freed 0 MB", exit 0: an unknown kind is one line naming
    the known kinds, exit 2, for clean, prune and verify alike."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "keep").write_text("x")
    r = run_compat("--cache", tmp_path, "cache", action, "bogus")
    assert r.returncode == EXIT_USAGE, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compat: error: unknown kind of cache entries: bogus"), r.stderr
    assert "snapshots" in lines[0] and "kernels" in lines[0]
    assert (tmp_path / "kernels" / "keep").exists()
    assert "freed" not in r.stdout


def test_cache_known_kinds(tmp_path):
    """A kind compat makes is known even before the cache holds it; a kind directory the cache
    holds (a selftests build of another series) is known too; a path never is."""
    cache = Cache(tmp_path)
    assert cache.kind_names(["snapshots"]) == ["snapshots"]
    (tmp_path / "selftests-6.1").mkdir()
    assert cache.kind_names(["selftests-6.1"]) == ["selftests-6.1"]
    assert cache.clean(["snapshots"]) == 0
    for bad in ("bogus", "../x", ".tmp-rm-00000000"):
        with pytest.raises(UserError):
            cache.kind_names([bad])


def test_every_kind_compat_makes_is_listed():
    """The modules that make cache entries name kinds of the one list."""
    made = {
        importlib.import_module("compat.kernels.sources").KIND,
        importlib.import_module("compat.kernels.sources").BOOT_KIND,
        importlib.import_module("compat.kernels.sources").CHANGELOG_KIND,
        importlib.import_module("compat.run.resultcache").KIND,
        importlib.import_module("compat.run.checker").PROBE_KIND,
        importlib.import_module("compat.guest.image").IMAGE_KIND,
        importlib.import_module("compat.guest.image").MODULES_KIND,
        importlib.import_module("compat.guest.image").INITRD_KIND,
        importlib.import_module("compat.guest.snapshot").KIND,
        "modsyms", "apt", "state", "locks", "tmp", "corpus", "selftests",
    }
    assert made <= KINDS, made - KINDS
