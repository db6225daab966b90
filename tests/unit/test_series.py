"""A stable series as kernels (series.py, matrix `releases:`, debian:6.12.*), with the archive
faked at the apt boundary: a repository that answers package_names/versions from a list."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import pytest

from compat.cache import Cache
from compat.errors import UserError
from compat.kernels.apt import PackageVersion
from compat.kernels.matrix import KernelSpec, load_matrix
from compat.kernels.series import expand, release_versions, select_range
from compat.kernels.sources import KernelStore
from compat.kernels.version import group_series, series_of

# (package, version, suite): 6.12.57 both as a trixie build and as a bookworm backport, 6.12.90 too.
ARCHIVE = [
    ("linux-image-6.12.43+deb12-amd64", "6.12.43-1~bpo12+1", "bookworm-backports"),
    ("linux-image-6.12.57+deb12-amd64", "6.12.57-1~bpo12+1", "bookworm-backports"),
    ("linux-image-6.12.57+deb13-amd64", "6.12.57-1", "trixie"),
    ("linux-image-6.12.90+deb13.1-amd64", "6.12.90-2", "trixie-security"),
    ("linux-image-6.12.90+deb12-amd64", "6.12.90-1~bpo12+1", "bookworm-backports"),
    ("linux-image-6.12.118+deb13-amd64", "6.12.118-1", "trixie-security"),
    ("linux-image-6.1.0-57-amd64", "6.1.192-3", "bookworm-security"),
    ("linux-image-6.1.0-50-amd64", "6.1.176-1", "bookworm"),
    ("linux-image-6.12.118+deb13-cloud-amd64", "6.12.118-1", "trixie-security"),
]


class FakeRepo:
    """The questions KernelStore asks apt, answered from ARCHIVE (LACKING: what the mirror
    answered 404 for)."""

    LACKING: ClassVar[set[str]] = set()

    def missing(self) -> set[str]:
        return set(self.LACKING)

    def package_names(self, prefix: str) -> list[str]:
        return sorted({name for name, _, _ in ARCHIVE if name.startswith(prefix)})

    def versions(self, names: list[str]) -> list[PackageVersion]:
        return [PackageVersion(n, v, s, 1, f"sha-{n}-{v}") for n, v, s in ARCHIVE if n in names]


class FakeStore(KernelStore):
    def repo_for(self, spec):  # the apt boundary
        return FakeRepo()


@pytest.fixture
def store(tmp_path: Path) -> FakeStore:
    return FakeStore(Cache(tmp_path / "cache"))


def matrix(tmp_path: Path, text: str):
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return load_matrix(path)


def test_a_series_lists_its_point_releases_oldest_first_native_builds_preferred(store):
    assert release_versions(store, "6.12") == ["6.12.43", "6.12.57", "6.12.90", "6.12.118"]
    specs = expand(store, [KernelSpec(id="debian:6.12.*", label="x", series="6.12", releases="all")])
    assert [s.id for s in specs] == ["6.12.43", "6.12.57", "6.12.90", "6.12.118"]
    assert [s.label for s in specs] == ["Debian 6.12.43", "Debian 6.12.57", "Debian 6.12.90", "Debian 6.12.118"]
    resolved = [store.resolve(s) for s in specs]
    # the native build of a version, not its backport
    assert [r.packages[0].name for r in resolved][1:3] == ["linux-image-6.12.57+deb13-amd64",
                                                          "linux-image-6.12.90+deb13.1-amd64"]
    assert all(not s.releases for s in specs) and [s.order for s in specs] == [0, 1, 2, 3]


def test_the_adhoc_kernel_name_and_the_matrix_entry(store, tmp_path):
    m = matrix(tmp_path, 'kernels:\n  - {series: "6.12", releases: "since 6.12.57"}\n'
                         '  - {id: lts, label: LTS, series: "6.1", releases: last 1}\n'
                         '  - {series: "6.1"}\n')
    picked = m.select(["debian:6.12.*"])
    assert picked[0].series == "6.12" and picked[0].releases == "all"
    ids = [s.id for s in expand(store, m.select(None))]
    assert ids == ["6.12.57", "6.12.90", "6.12.118", "lts-6.1.192", "6.1"]
    assert [s.label for s in expand(store, m.select(["lts"]))] == ["LTS 6.1.192"]
    # a kernel named twice (a series and one of its releases) is checked once
    twice = expand(store, m.select(["debian:6.12.*", "6.12"]))
    assert [s.id for s in twice] == ["6.12.43", "6.12.57", "6.12.90", "6.12.118"]
    # no series: the archive is not asked at all
    plain = [KernelSpec(id="6.1", label="6.1", series="6.1")]
    assert expand(KernelStore(Cache(tmp_path / "c2")), plain) == plain


@pytest.mark.parametrize(("entry", "message"), [
    ('{series: "6.12", releases: sometimes}', "is not all, since X.Y.Z or last N"),
    ('{series: "6.12", releases: "since 6.1.90"}', "releases since 6.1.90 is outside the series 6.12"),
    ('{series: "6.12", releases: "last 0"}', "between 1 and"),
    ('{version: "6.12.90", releases: all}', "'releases' goes with a 'series'"),
    ('{series: "6.12", package: linux-image-6.12.90+deb13.1-amd64, releases: all}', "'releases' goes with"),
    ("{image: /bin/true, series: '6.12', releases: all}", "'releases' goes with"),
    ('{series: "6.12", releases: 5}', "not a string"),
])
def test_bad_releases_are_one_line_errors(tmp_path, entry, message):
    with pytest.raises(UserError) as e:
        matrix(tmp_path, f"kernels:\n  - {entry}\n")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_series_or_a_since_the_archive_does_not_have(store):
    with pytest.raises(UserError, match=re.escape("the archive has no amd64 kernel of series 6.13")):
        expand(store, [KernelSpec(id="debian:6.13.*", label="x", series="6.13", releases="all")])
    with pytest.raises(UserError, match=re.escape("releases since 6.12.200: the archive's 6.12 ends at 6.12.118")):
        expand(store, [KernelSpec(id="6.12", label="6.12", series="6.12", releases="since 6.12.200")])
    # a series spec that was not expanded is never resolved as "the newest of the series"
    with pytest.raises(UserError, match=re.escape("stands for several point releases")):
        store.resolve(KernelSpec(id="debian:6.12.*", label="x", series="6.12", releases="all"))


def test_select_range():
    versions = ["6.12.43", "6.12.57", "6.12.90", "6.12.118"]
    assert select_range(versions, "6.12") == versions
    assert select_range(versions, "6.12", "6.12.57", "6.12.90") == ["6.12.57", "6.12.90"]
    with pytest.raises(UserError, match=re.escape("--from 6.12.90 is newer than --to 6.12.57")):
        select_range(versions, "6.12", "6.12.90", "6.12.57")
    with pytest.raises(UserError, match=re.escape("--to 6.12.119 is not a point release of 6.12")):
        select_range(versions, "6.12", None, "6.12.119")
    with pytest.raises(UserError, match=re.escape("no kernel of series 6.13")):
        select_range([], "6.13")


def test_series_grouping_for_the_kernel_axis():
    assert series_of("6.12.43") == "6.12" and series_of("6.12") == "6.12"
    assert group_series(["5.10.262", "6.12.43", "6.12.57", "6.1.192", "6.12.118"]) == [
        ("5.10", ["5.10.262"]), ("6.12", ["6.12.43", "6.12.57"]), ("6.1", ["6.1.192"]), ("6.12", ["6.12.118"])]


def test_a_package_the_mirror_lacks_is_skipped_for_a_series_not_for_a_pinned_version(store, monkeypatch):
    """A partial mirror (bullseye-security's arm64 kernels here) lists packages it does not serve:
    once a download found one missing, the newest of the series is the newest it serves."""
    monkeypatch.setattr(FakeRepo, "LACKING", {"linux-image-6.12.118+deb13-amd64=6.12.118-1"})
    assert store.resolve(KernelSpec(id="6.12", label="x", series="6.12")).version == "6.12.90"
    assert store.resolve(KernelSpec(id="p", label="x", version="6.12.118")).version == "6.12.118"
