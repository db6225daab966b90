"""Selftest expectations on real objects: three verifier selftests of Debian's linux-source-6.12,
built as the selftests Makefile does (bench/selftests.py's recipe), their annotations read by
compat/objects/expectations.py and their verdicts on a real 6.12 guest judged against them.

Needs the network (the source package, once into the cache) and clang, bpftool."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import run_compat

from compat.objects.expectations import REJECTED, read_specs

ROOT = Path(__file__).resolve().parents[2]
FILES = ("verifier_cgroup_inv_retcode.c", "verifier_bounds_deduction.c", "verifier_precision.c")


@pytest.fixture(scope="module")
def selftest_objects(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (apt-get install bpftool)")
    sys.path.insert(0, str(ROOT / "bench"))
    import selftests as st  # bench/selftests.py: the source, the headers and the Makefile's recipe

    dest = st.default_dest()
    st.build(dest, limit=1, warn=lambda line: None)  # the source tree and the headers, once
    src = next(p for p in (dest / "src").iterdir() if (p / ".complete").is_file())
    include = next(p for p in (dest / "include").iterdir() if (p / ".complete").is_file())
    recipe = st._recipe(src, include, st.newest_clang())
    out = tmp_path_factory.mktemp("selftests")
    built = {}
    for name in FILES:
        b = st._compile(recipe, src / st.SELFTESTS / "progs" / name, out, out, 300)
        assert b.status == "ok", b.error
        built[name] = out / (b.object or "")
    return built


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
    # BPF_F_ANY_ALIGNMENT: compat cannot set program flags, so it says so.
    flagged = records["deducing_bounds_from_const_7"]["expectation"]
    assert flagged["met"] is None and "BPF_F_ANY_ALIGNMENT" in flagged["why"]
    assert records["deducing_bounds_from_const_1"]["expectation"]["unpriv"]["why"].endswith("(no unprivileged mode)")
    assert all(r["expectation"]["met"] is not False for r in records.values() if "expectation" in r)
