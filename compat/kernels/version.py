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
