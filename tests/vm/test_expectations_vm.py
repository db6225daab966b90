"""Selftest expectations on real objects: three verifier selftests of Debian's linux-source-6.12,
built as the selftests Makefile does (compat/objects/selftests.py), their annotations read by
compat/objects/expectations.py and their verdicts on a real 6.12 guest judged against them.

Needs the network (the source package, once into the cache) and clang, bpftool."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_compat

from compat.objects.expectations import REJECTED, read_specs
from compat.objects.selftests import build, default_dest

FILES = ("verifier_cgroup_inv_retcode.c", "verifier_bounds_deduction.c", "verifier_precision.c")


@pytest.fixture(scope="module")
def selftest_objects() -> dict[str, Path]:
    """The three files, built into the cache's selftests folder (compiled once; later runs reuse them)."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (apt-get install bpftool)")
    dest = default_dest()
    builds = build(dest, names=list(FILES), warn=lambda line: None)
    assert all(b.status == "ok" for b in builds), [b.error for b in builds]
    return {name: dest / (b.object or "") for name, b in zip(FILES, builds, strict=False)}


def test_annotations_of_real_selftests(selftest_objects):
    specs = read_specs(selftest_objects["verifier_cgroup_inv_retcode.c"].read_bytes())
    assert specs.malformed is None and len(specs.specs) == 7
    test1 = specs.specs["with_invalid_return_code_test1"]
    assert test1.priv is not None and test1.priv.expect == REJECTED
    assert test1.priv.messages == ["smin=0 smax=4294967295 should have been in [0, 1]"]
    assert test1.description == "bpf_exit with invalid return code. test1"
    bounds = read_specs(selftest_objects["verifier_bounds_deduction.c"].read_bytes()).specs
    assert bounds["deducing_bounds_from_const_1"].unpriv is not None  # __failure_unpriv
    assert "BPF_F_ANY_ALIGNMENT" in bounds["deducing_bounds_from_const_7"].needed_flags
    precision = read_specs(selftest_objects["verifier_precision.c"].read_bytes()).specs
    assert precision["bpf_neg"].log_level == 2 and len(precision["bpf_neg"].priv.messages) == 4


def test_real_verdicts_meet_the_kernels_own_annotations(selftest_objects, tmp_path):
    out = tmp_path / "r.json"
    objs = [selftest_objects[n] for n in FILES[:2]]
    proc = run_compat("check", *objs, "--kernel", "6.12", "--format", "json", "--output", out,
                      "--fail-on", "expectation")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = {r["program"]: r for r in json.loads(out.read_text())["results"]}
    cell = records["with_invalid_return_code_test1"]
    assert cell["verdict"] == "rejected"
    assert cell["expectation"] == {"expected": "rejected", "met": True, "why": None,
                                   "description": "bpf_exit with invalid return code. test1"}  # fmt: skip
    assert records["with_invalid_return_code_test2"]["expectation"]["met"] is True  # accepted, as expected
    # __flag(BPF_F_ANY_ALIGNMENT): loaded with the flag, as test_loader does, and judged.
    assert records["deducing_bounds_from_const_7"]["expectation"]["met"] is True
    assert records["deducing_bounds_from_const_1"]["expectation"]["unpriv"]["why"].endswith("(no unprivileged mode)")
    assert all(r["expectation"]["met"] is not False for r in records.values() if "expectation" in r)


def test_expected_messages_of_accepted_programs_are_judged_in_the_tests_own_log(selftest_objects, tmp_path):
    """bpf_neg is accepted and expects four messages in a level-2 log (__log_level(2)): the agent
    keeps that log, at that level, and the messages are found in it."""
    out = tmp_path / "r.json"
    proc = run_compat("check", selftest_objects["verifier_precision.c"], "--kernel", "6.12",
                      "--format", "json", "--output", out, "--fail-on", "expectation")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = {r["program"]: r for r in json.loads(out.read_text())["results"]}
    neg = records["bpf_neg"]
    assert neg["verdict"] == "accepted" and neg["log_level"] == 2
    assert neg["expectation"]["met"] is True, neg["expectation"]
    judged = [r["expectation"] for r in records.values() if "expectation" in r]
    assert judged and all(e["met"] is True for e in judged), judged


def test_selftests_command_over_two_releases(tmp_path):
    """compat selftests on the two newest 6.12 releases with a small sample: per release counts,
    every annotated program judged on both, a JSON document; a second run boots nothing."""
    out = tmp_path / "s.json"
    args = ("selftests", "--series", "6.12", "--from", "6.12.117", "--to", "6.12.118", "--limit", "40",
            "--format", "json", "--output", out)  # fmt: skip
    proc = run_compat(*args)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["releases"] == ["6.12.117", "6.12.118"] and doc["source"].startswith("linux-source-6.12=")
    assert doc["programs"] and all(len(p["outcomes"]) == 2 for p in doc["programs"])
    per = {r["version"]: r for r in doc["per_release"]}
    assert all(per[v]["met"] > 0 for v in doc["releases"])
    # Every expectation not met says why (the verdict, or which expected message is missing).
    failing = {f["program"]: f for f in per["6.12.118"]["failing"]}
    for f in failing.values():
        assert f["met"] is False and f["why"]
    again = run_compat(*args)
    assert again.returncode == 0 and json.loads(out.read_text())["per_release"] == doc["per_release"]
