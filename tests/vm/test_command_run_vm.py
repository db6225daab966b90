"""compat run on real guests: a statically linked libbpf loader (built here from the host's
libbpf.a) on 5.10 and 6.12, the same loader linked dynamically (its libraries brought from the
host), a skeleton-style loader that embeds its object (the fidelity diff), a command that never
exits (--timeout, --running-ok), and loaders that fork, flood and fill memory. Each on as few
kernels as it needs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from command_loaders import bpf_object, build_loader
from conftest import run_compat

import compat.results.command as command

pytestmark = pytest.mark.vm
SCHEMA = json.loads((Path(command.__file__).parent / "schema" / "run-v1.json").read_text())
BOTH = ["count_getppid", "sum_with_loop"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("loaders")
    obj = bpf_object(d)
    return {
        "object": obj,
        "static": build_loader(d / "static", "loader"),
        "dynamic": build_loader(d / "dynamic", "loader", static=False),
        "embedding": build_loader(d / "embedding", "skeleton_loader", embed=obj),
    }


def _run(tmp_path: Path, *args: object) -> tuple[int, dict, str]:
    out = tmp_path / "run.json"
    done = run_compat("run", "--format", "json", "--output", out, *args, timeout=900)
    assert done.returncode in (0, 1), done.stderr  # never 3 here: every kernel must answer
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    return done.returncode, doc, done.stderr


def _kernel(doc: dict, kid: str) -> dict:
    return next(k for k in doc["kernels"] if k["kernel"] == kid)


def test_static_loader_fails_on_5_10_only(built, tmp_path):
    """The object's load fails on 5.10 (bpf_loop): exit status 1 there, 0 on 6.12 with both
    programs named; the object given with --with is also checked the generic way, which accepts
    count_getppid on 5.10 where the loader failed."""
    md = tmp_path / "run.md"
    status, doc, stderr = _run(tmp_path, "--format", "markdown", "--output", md, "--kernel", "5.10", "--kernel", "6.12",
                               "--with", built["object"], "--", built["static"], "two_programs.o")  # fmt: skip
    assert status == 1, stderr
    old, new = _kernel(doc, "5.10"), _kernel(doc, "6.12")
    assert old["exit_status"] == 1 and old["ok"] is False and "load failed" in old["stderr"]
    assert new["exit_status"] == 0 and new["ok"] is True and new["programs"] == BOTH
    assert "loaded sum_with_loop" in new["stdout"]
    assert all(isinstance(p["verified_insns"], int) for p in new["program_details"])  # 6.12 says it
    assert any(m["name"] == "sums" and m["type"] == "array" for m in new["maps"])
    assert doc["kind"] == "static" and doc["embedded"] == ["two_programs.o"]
    assert [(f["kind"], f["program"]) for f in old["fidelity"]] == [("loader_failed", "count_getppid")]
    assert new["fidelity"] == []
    text = md.read_text()
    assert "| 5.10 | ❌ failed (exit 1)" in text and "`count_getppid`, `sum_with_loop`" in text


def test_skeleton_loader_handles_5_10(built, tmp_path):
    """A loader that embeds its object and switches sum_with_loop off when the load fails: it
    succeeds on 5.10, and the fidelity diff says the generic load rejects what it left out."""
    status, doc, stderr = _run(tmp_path, "--kernel", "5.10", "--", built["embedding"], "--fallback", "sum_with_loop")
    assert status == 0, stderr
    k = _kernel(doc, "5.10")
    assert k["programs"] == ["count_getppid"]
    assert k["program_details"][0]["verified_insns"] is None  # 5.10 does not say
    assert doc["embedded"] and doc["embedded"][0].startswith("skeleton_loader:")
    assert [(f["kind"], f["program"]) for f in k["fidelity"]] == [("loader_handles", "sum_with_loop")]
    assert "your loader: succeeded, it did not load program sum_with_loop" in k["fidelity"][0]["message"]
    assert doc["generic"]["schema"] == "compat/v1"


def test_dynamic_loader_brings_its_libraries(built, tmp_path):
    status, doc, stderr = _run(tmp_path, "--kernel", "6.12", "--no-fidelity", "--with", built["object"], "--",
                               built["dynamic"], "two_programs.o")  # fmt: skip
    assert status == 0, stderr
    assert doc["kind"] == "dynamic" and "libbpf.so.1" in doc["libraries"]
    assert _kernel(doc, "6.12")["programs"] == BOTH


def test_never_exits(tmp_path):
    """Still running at --timeout: stopped, and failed unless --running-ok."""
    script = tmp_path / "daemon.sh"
    script.write_text("#!/bin/sh\necho started\nexec busybox sleep 1000\n")
    script.chmod(0o755)
    status, doc, _ = _run(tmp_path, "--kernel", "6.1", "--timeout", "3", "--", script)
    k = _kernel(doc, "6.1")
    assert status == 1 and k["timed_out"] and k["exit_status"] is None and k["ok"] is False
    assert k["stdout"] == "started\n" and 3 <= k["duration"] < 30
    status, doc, _ = _run(tmp_path, "--kernel", "6.1", "--timeout", "3", "--running-ok", "--", script)
    assert status == 0 and _kernel(doc, "6.1")["ok"] is True


def test_hostile_loaders(tmp_path):
    """A fork bomb that floods stdout, then a memory filler: each a failed cell with what it did,
    never an error, and the guest's agent answers both (the cgroup bounds them)."""
    bomb = tmp_path / "bomb.sh"
    bomb.write_text("#!/bin/sh\nwhile :; do echo floodfloodflood; done &\nb() { b | b & }\nb\nwait\n")
    bomb.chmod(0o755)
    status, doc, _ = _run(tmp_path, "--kernel", "6.1", "--timeout", "4", "--", bomb)
    k = _kernel(doc, "6.1")
    assert status == 1 and k["error"] is None and k["timed_out"]
    assert k["stdout"].startswith("floodfloodflood") and len(k["stdout"]) <= 64 << 10
    hog = tmp_path / "hog.py"
    hog.write_text("#!/usr/bin/python3\nx = []\nwhile True:\n    x.append(bytearray(1 << 20))\n")
    hog.chmod(0o755)
    status, doc, _ = _run(tmp_path, "--kernel", "6.1", "--timeout", "60", "--", hog)
    k = _kernel(doc, "6.1")
    assert status == 1 and k["error"] is None and k["signal"] == 9, k
    assert any("oom" in line.lower() for line in k["kernel_log"])
