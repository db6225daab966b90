"""The architecture in results: kernels[].arch in the result file (amd64 when absent), the result
cache's key per architecture (amd64's unchanged), the agent's syscall numbers per guest machine."""

from __future__ import annotations

import json

from compat_agent.attach.perfevent import sys_perf_event_open

from compat.cache import Cache, sha256_json
from compat.results.model import KernelInfo, RunResult
from compat.run.resultcache import SCHEMA, ResultCache


def test_kernel_arch_in_result_file():
    run = RunResult(
        kernels=[KernelInfo(id="6.12", label="6.12", version="6.12.43"),
                 KernelInfo(id="6.12-arm64", label="6.12 arm64", version="6.12.43", arch="arm64")],
        objects=[], results=[],
    )  # fmt: skip
    doc = json.loads(run.dumps())
    assert [k["arch"] for k in doc["kernels"]] == ["amd64", "arm64"]
    # A file from before arm64 has no arch: its kernels are amd64.
    for k in doc["kernels"]:
        k.pop("arch")
    assert [k.arch for k in RunResult.from_json(doc).kernels] == ["amd64", "amd64"]


def test_result_cache_key_per_arch(tmp_path):
    from compat_agent import AGENT_VERSION
    from compat_agent.wire.framing import PROTOCOL_VERSION

    rc = ResultCache(Cache(tmp_path), "image-amd64", {"attach": True}, images={"arm64": "image-arm64"})
    # amd64's key is the formula of every release before arm64: its cached results stay valid.
    assert rc.key("sha", "a.o", "kernel") == sha256_json({
        "schema": SCHEMA, "object": "sha", "name": "a.o", "kernel": "kernel", "image": "image-amd64",
        "agent": AGENT_VERSION, "protocol": PROTOCOL_VERSION, "options": {"attach": True},
    })  # fmt: skip
    assert rc.key("sha", "a.o", "kernel", "arm64") != rc.key("sha", "a.o", "kernel")
    assert rc.key("sha", "a.o", "kernel", "arm64") == sha256_json({
        "schema": SCHEMA, "object": "sha", "name": "a.o", "kernel": "kernel", "image": "image-arm64",
        "agent": AGENT_VERSION, "protocol": PROTOCOL_VERSION, "options": {"attach": True}, "arch": "arm64",
    })  # fmt: skip


def test_perf_event_open_number_per_machine():
    # 298 is x86-64's; on arm64 it is another syscall (the generic table says 241).
    assert sys_perf_event_open("x86_64") == 298
    assert sys_perf_event_open("aarch64") == 241
