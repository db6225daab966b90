"""compat check on the project's own programs over the real default kernels: the verdicts,
reasons and attach outcomes of programs/expected.yaml, a schema-valid result file, and bad
input handled one line per file while the good objects are still checked."""

import json
import re
import subprocess

import jsonschema
import pytest
from bpf_build import build_source, compile_command, embedding_binary, expected_mismatches, find_clang
from conftest import run_compat

from compat.results.model import SCHEMA_FILE, RunResult

pytestmark = [pytest.mark.vm, pytest.mark.network]


@pytest.fixture(scope="module")
def full_run(built_programs, tmp_path_factory):
    out = tmp_path_factory.mktemp("check") / "result.json"
    objects = [str(p) for _, p in sorted(built_programs.items())]
    # --no-cache: the expected verdicts must come from the guests, not from an earlier run's result cache.
    proc = run_compat("check", *objects, "--no-cache", "--format", "table", "--format", "json", "--output", "-",
                  "--output", str(out))  # fmt: skip
    return proc, json.loads(out.read_text())


def test_result_file_matches_the_schema(full_run):
    proc, doc = full_run
    assert proc.returncode == 0, proc.stderr
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    assert [k["id"] for k in doc["kernels"]] == ["5.10", "6.1", "6.12", "sid"]
    assert all(k["release"] and k["libbpf"] and k["accel"] in ("kvm", "tcg") for k in doc["kernels"])


def test_every_program_gets_its_expected_verdict_on_every_kernel(full_run):
    _, doc = full_run
    problems = expected_mismatches(RunResult.from_json(doc).results)
    assert not problems, "\n".join(problems)


def test_accepted_programs_carry_stats_and_rejections_carry_logs(full_run):
    _, doc = full_run
    for r in doc["results"]:
        if r["verdict"] == "accepted":
            assert r["stats"].get("insns_processed"), r
        elif r["reason"] == "verifier_rejection":
            assert r["log"] and r["message"].startswith("the verifier rejected the program: "), r


def test_table_names_the_real_cause_in_words(full_run):
    proc, _ = full_run
    assert "helper bpf_loop (181) is not available on this kernel" in proc.stdout
    assert "kfuncs bpf_iter_num_new, bpf_iter_num_next, bpf_iter_num_destroy are not available" in proc.stdout
    assert "REJECTED missing_helper" in proc.stdout
    summary = proc.stdout.rstrip().splitlines()[-1]
    pattern = r"\d+ object\(s\), \d+ program\(s\), 4 kernel\(s\): \d+ accepted, \d+ rejected, 0 error\(s\)"
    assert re.fullmatch(pattern, summary), summary


def test_bad_inputs_are_reported_and_the_rest_still_checked(built_programs, tmp_path):
    empty = tmp_path / "empty.o"
    empty.write_bytes(b"")
    # -q: progress lines (one per stage in CI) aside, stderr holds the errors alone.
    proc = run_compat("-q", "check", "/bin/ls", str(built_programs["counter"]), str(empty),
                      str(tmp_path / "missing.o"), str(tmp_path), "--kernel", "6.12")  # fmt: skip
    assert proc.returncode == 2
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith("compat: error: ") for e in errors), proc.stderr
    # (a directory's inputs are listed first: it stands for the BPF objects under it, here none)
    assert errors[0].endswith(f"{tmp_path}: no BPF object file under this directory")
    assert "/bin/ls: an ELF file for EM_X86_64, not a BPF object" in errors[1]
    assert "empty file" in errors[2] and "no such file" in errors[3]
    assert "count_getpid" in proc.stdout and "Traceback" not in proc.stderr


SLOW_AND_QUICK = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp") int quick_before(struct xdp_md *ctx) { return XDP_PASS; }

SEC("xdp") int slow(struct xdp_md *ctx)
{
	__u64 hash = ctx->data_end - ctx->data;

#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < (1 << 16); i++) {
#pragma unroll
		for (__u32 k = 0; k < 32; k++)
			hash = (hash ^ (hash >> 7)) * 31 + k;
		hash += i;
	}
	return hash & 1 ? XDP_PASS : XDP_DROP;
}

SEC("xdp") int quick_after(struct xdp_md *ctx) { return XDP_DROP; }

char LICENSE[] SEC("license") = "GPL";
"""


def test_a_program_over_the_time_limit_gets_no_verdict_and_the_rest_of_its_object_do(tmp_path):
    source, obj = tmp_path / "slow.bpf.c", tmp_path / "slow.o"
    source.write_text(SLOW_AND_QUICK)
    subprocess.run(compile_command(find_clang(), source, obj), check=True, timeout=300)
    # The slow program takes seconds of verification under emulation (1M insns), the limit 0.3 s.
    proc = run_compat("check", str(obj), "--kernel", "6.12", "--no-cache", "--program-timeout", "0.3",
                  "--format", "json", "--output", "-")  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # a cell without a verdict
    cells = {r["program"]: r for r in json.loads(proc.stdout)["results"]}
    assert cells["slow"]["verdict"] == "error" and cells["slow"]["reason"] == "verifier_timeout", cells["slow"]
    assert "program time limit (0.3 s)" in cells["slow"]["message"]
    assert cells["quick_before"]["verdict"] == cells["quick_after"]["verdict"] == "accepted"


def test_a_binary_is_checked_for_the_objects_it_embeds(built_programs, tmp_path):
    # A tool built with a libbpf skeleton (or Go's bpf2go) carries its objects inside.
    tool = embedding_binary(tmp_path / "tool", [built_programs["counter"], built_programs["xdp_no_bounds_check"]])
    proc = run_compat("check", str(tool), "--kernel", "6.12", "--format", "json", "--output", "-")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [o["object"] for o in doc["objects"]] == ["tool:counter.o", "tool:xdp_no_bounds_check.o"]
    assert {r["object"]: r["verdict"] for r in doc["results"]}["tool:counter.o"] == "accepted"


PINNED = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_%s);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shared SEC(".maps");

SEC("xdp") int lookup(struct xdp_md *ctx) { __u32 k = 0; return bpf_map_lookup_elem(&shared, &k) ? XDP_PASS : 1; }

char LICENSE[] SEC("license") = "GPL";
"""


def test_a_map_pinned_by_an_earlier_check_does_not_stand_in_for_the_next_one_s(tmp_path):
    # Both objects pin a map named "shared", of different types, and are checked in one guest: the
    # second must not find the first's map in bpffs (libbpf would refuse to reuse it: EINVAL).
    objects = [str(build_source(PINNED % kind, tmp_path, f"pin_{kind.lower()}")) for kind in ("HASH", "ARRAY")]
    proc = run_compat("check", *objects, "--kernel", "6.1", "--jobs", "1", "--no-cache", "--format", "json",
                  "--output", "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [r["verdict"] for r in json.loads(proc.stdout)["results"]] == ["accepted", "accepted"]


FETCH_ADD = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 counter;

SEC("xdp") int fetch_add(struct xdp_md *ctx) { return __sync_fetch_and_add(&counter, 1) & 1 ? XDP_PASS : XDP_DROP; }

char LICENSE[] SEC("license") = "GPL";
"""


def test_an_instruction_the_kernel_does_not_know_is_named(tmp_path):
    # clang -mcpu=v3 turns an atomic add whose old value is used into BPF_ATOMIC|BPF_FETCH: Linux 5.12.
    source, obj = tmp_path / "atomics.bpf.c", tmp_path / "atomics.o"
    source.write_text(FETCH_ADD)
    subprocess.run([*compile_command(find_clang(), source, obj), "-mcpu=v3"], check=True, timeout=300)
    proc = run_compat("check", str(obj), "--kernel", "5.10", "--kernel", "6.1", "--format", "json", "--output", "-")
    cells = {r["kernel"]: r for r in json.loads(proc.stdout)["results"]}
    assert cells["6.1"]["verdict"] == "accepted", cells["6.1"]
    assert cells["5.10"]["reason"] == "unsupported_instruction" and "Linux 5.12" in cells["5.10"]["message"]
