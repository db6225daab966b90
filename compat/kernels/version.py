"""Upstream kernel versions: parsing and ordering, with no archive or cache code.

Apart from sources.py so that results and reports can order kernels (the kernel axis) without
importing apt or the cache.
"""

from __future__ import annotations

import re

_UPSTREAM = re.compile(r"^(?:\d+:)?(\d+\.\d+(?:\.\d+)?)")


def upstream_version(debian_version: str) -> str:
    """6.1.192-2 → 6.1.192; 1:6.8.0-40.40 → 6.8.0."""
    m = _UPSTREAM.match(debian_version)
    return m.group(1) if m else debian_version


def version_key(version: str) -> tuple[int, ...]:
    """A sortable key for upstream versions like 6.1.176."""
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def release_version(release: str) -> str:
    """6.1.0-50-amd64 → 6.1.0; 6.13.0-rc1+ → 6.13.0."""
    m = re.match(r"^(\d+\.\d+(?:\.\d+)?)", release)
    return m.group(1) if m else release


def series_of(version: str) -> str:
    """The stable series of an upstream version: 6.12.43 → 6.12 (6.12 → 6.12)."""
    return ".".join(str(x) for x in version_key(version)[:2])


def group_series(versions: list[str]) -> list[tuple[str, list[str]]]:
    """Consecutive versions of one series as one group, in the order given: the kernel axis of a
    report shows 5.10.262, 6.12.43, 6.12.57, 6.12.118 as 5.10 [5.10.262] and 6.12 [three releases].
    A series that comes back after another one starts a new group (the order is the caller's)."""
    groups: list[tuple[str, list[str]]] = []
    for v in versions:
        s = series_of(v)
        if groups and groups[-1][0] == s:
            groups[-1][1].append(v)
        else:
            groups.append((s, [v]))
    return groups
