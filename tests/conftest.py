"""Shared fixtures. Tests that reach the archive or boot VMs use the real compat cache
(COMPAT_CACHE or ~/.cache/compat) so kernels are fetched once per machine, not per test."""

from __future__ import annotations

import pytest

from compat.cache import Cache
from compat.kernels.matrix import load_matrix


@pytest.fixture(scope="session")
def real_cache() -> Cache:
    return Cache()


@pytest.fixture(scope="session")
def default_specs():
    return load_matrix().kernels


@pytest.fixture(scope="session")
def built_programs(tmp_path_factory):
    """The programs/ objects, built with clang once per test session: {name: path}."""
    from bpf_build import build_programs

    return build_programs(tmp_path_factory.mktemp("programs"))
