"""A stable series and its changelogs against the real Debian archive (network marker)."""

from __future__ import annotations

import pytest

from compat.kernels.changelog import load, suspects
from compat.kernels.matrix import KernelSpec
from compat.kernels.series import expand, release_versions
from compat.kernels.sources import KernelStore
from compat.kernels.version import version_key

pytestmark = pytest.mark.network


def test_the_6_12_series_expands_to_every_point_release_in_order(real_cache):
    store = KernelStore(real_cache)
    versions = release_versions(store, "6.12")
    # The archive's list grows: no count, but order, uniqueness and the ends known today.
    assert len(versions) == len(set(versions)) >= 10
    assert versions == sorted(versions, key=version_key)
    assert "6.12.43" in versions and "6.12.118" in versions
    specs = expand(store, [KernelSpec(id="debian:6.12.*", label="x", series="6.12", releases="all")])
    assert [s.id for s in specs] == versions
    assert [store.resolve(s).version for s in specs[:2]] == versions[:2]


def test_a_full_real_changelog_of_a_cached_kernel(real_cache, default_specs):
    store = KernelStore(real_cache)
    kernel = store.fetch(next(s for s in default_specs if s.id == "6.1"))
    path = store.changelog(kernel)  # kept in the entry, or read from the package once
    assert path is not None and path.stat().st_size > 100_000
    log = load(path)
    assert log.version == kernel.version
    minor = version_key(kernel.version)[2]
    # the stable updates up to this release are listed, each once per entry
    assert f"6.1.{minor}" in log.stable_updates and "6.1.100" in log.stable_updates
    assert len(log.bpf_commits()) > 100
    found = suspects(None, path, f"6.1.{minor - 10}", kernel.version)
    assert found.known and found.commits
    releases = [version_key(c.release) for c in found.commits]
    assert releases == sorted(releases, reverse=True)
    assert all(version_key(f"6.1.{minor - 10}") < r <= version_key(kernel.version) for r in releases)
    assert store.changelog(kernel) == path  # cached: no second download
