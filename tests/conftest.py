"""Shared fixtures and the one way tests run compat's command line.

Tests live in two tiers: tests/unit (no VM, no network: fast, run on every save) and tests/vm
(real guests, marked vm and network). Both import helpers from tests/ (this directory is on
sys.path: bpf_build, newc, synthetic_run). Tests that reach the archive or boot VMs use the real
compat cache (COMPAT_CACHE or ~/.cache/compat) so kernels are fetched once per machine, not per
test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from bpf_sources import CONFIGURED, LEGACY, PLACEHOLDERS, build_hostile

from compat.cache import Cache
from compat.kernels.matrix import load_matrix

# The command line of this checkout's compat, as a user runs it (python -m compat).
COMPAT = [sys.executable, "-m", "compat"]
# Variables of the environment a test never inherits: GITHUB_WORKSPACE (set on CI) would make
# the reports' paths relative to the runner's checkout.
UNSET = ("GITHUB_WORKSPACE",)


def compat_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment compat runs in: this process's, without UNSET, plus env."""
    return {**{k: v for k, v in os.environ.items() if k not in UNSET}, **(env or {})}


def run_compat(
    *args: object, env: Mapping[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 3000
) -> subprocess.CompletedProcess[str]:
    """Run `compat ARGS...` to its end: its status, stdout and stderr (text)."""
    return subprocess.run([*COMPAT, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=compat_env(env), cwd=cwd)  # fmt: skip


def start_compat(*args: object, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                 **popen: object) -> subprocess.Popen[str]:  # fmt: skip
    """Start `compat ARGS...` in the background (stdout and stderr piped unless popen says
    otherwise), for tests that stop, kill or race it."""
    kwargs: dict = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([*COMPAT, *map(str, args)], env=compat_env(env), cwd=cwd, **kwargs)


@pytest.fixture(scope="session")
def real_cache() -> Cache:
    return Cache()


@pytest.fixture(scope="session")
def default_specs():
    return load_matrix().kernels


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """Objects whose line info names host files, and the project they were built in (bpf_sources)."""
    return build_hostile(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def legacy_object(tmp_path_factory) -> Path:
    """An object with legacy struct bpf_map_def maps (bpf_sources.LEGACY)."""
    from bpf_build import build_source

    return build_source(LEGACY, tmp_path_factory.mktemp("legacy"), "legacy_maps")


@pytest.fixture(scope="module")
def configured(tmp_path_factory) -> Path:
    """An object whose loader's configuration decides its verdict (bpf_sources.CONFIGURED)."""
    from bpf_build import build_source

    return build_source(CONFIGURED, tmp_path_factory.mktemp("globals"), "configured")


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory) -> Path:
    """Programs with placeholder attach targets (bpf_sources.PLACEHOLDERS)."""
    from bpf_build import build_source

    return build_source(PLACEHOLDERS, tmp_path_factory.mktemp("targets"), "placeholders")


@pytest.fixture(scope="session")
def built_programs(tmp_path_factory):
    """The programs/ objects, built with clang once per test session: {name: path}."""
    from bpf_build import build_programs

    return build_programs(tmp_path_factory.mktemp("programs"))


UNIT, VM = Path(__file__).parent / "unit", Path(__file__).parent / "vm"


def pytest_collection_modifyitems(config, items):
    """The tiers follow the directories: a test in tests/vm is marked vm (network too) whatever
    its file says, so `-m "not vm"` never boots a guest; a test in tests/unit that is marked vm or
    network is in the wrong tier and fails at once."""
    for item in items:
        path = Path(str(item.path))
        if VM in path.parents:
            if not any(item.iter_markers("network")):
                item.add_marker(pytest.mark.network)
            if not any(item.iter_markers("vm")) and path.name != "test_install.py":  # the wheel: network only
                item.add_marker(pytest.mark.vm)
        elif UNIT in path.parents and any(m.name in ("vm", "network") for m in item.iter_markers()):
            raise pytest.UsageError(f"{item.nodeid}: a vm or network test in tests/unit (move it to tests/vm)")
