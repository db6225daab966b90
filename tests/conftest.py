"""Shared fixtures. Tests that reach the archive or boot VMs use the real compat cache
(COMPAT_CACHE or ~/.cache/compat) so kernels are fetched once per machine, not per test."""

from __future__ import annotations

import pytest

from compat.cache import Cache
from compat.matrix import load_matrix


@pytest.fixture(scope="session")
def real_cache() -> Cache:
    return Cache()


@pytest.fixture(scope="session")
def default_specs():
    return load_matrix().kernels
