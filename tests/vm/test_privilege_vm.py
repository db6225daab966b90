"""--privilege on a real guest (one kernel, 6.1; one run of two small objects for every test):
each mode is its own column, all from one guest; the unprivileged verifier rejects a pointer
leak that root and caps accept; a kprobe loads with caps and is not permitted unprivileged; a
selftest-style program's unprivileged expectation is judged in the unprivileged column and its
privileged one in root's."""

from __future__ import annotations

import json

import pytest
from bpf_build import build_source
from conftest import run_compat

PROGRAMS = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} leak SEC(".maps");

SEC("socket")
int leak_pointer(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&leak, &key);

	if (value)
		*value = (__u64)(unsigned long)value; /* a kernel address into a map value */
	return 0;
}

SEC("socket")
int plain_filter(struct __sk_buff *skb)
{
	return skb->len;
}

SEC("kprobe/do_nanosleep")
int trace_sleep(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

# bpf_misc.h's spelling: __success __failure_unpriv __msg_unpriv("leaks addr into map")
SELFTEST = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("socket")
__attribute__((btf_decl_tag("comment:test_expect_success")))
__attribute__((btf_decl_tag("comment:test_expect_failure_unpriv")))
__attribute__((btf_decl_tag("comment:test_expect_msg_unpriv=0=leaks addr into map")))
int leak_unpriv(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&values, &key);

	if (value)
		*value = (__u64)(unsigned long)value;
	return 0;
}

SEC("socket")
__attribute__((btf_decl_tag("comment:test_expect_success")))
int fine_both(struct __sk_buff *skb)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One check of both objects under the three privileges on 6.1: (exit status, JSON, markdown)."""
    d = tmp_path_factory.mktemp("privilege")
    objs = [build_source(PROGRAMS, d, "priv"), build_source(SELFTEST, d, "unpriv_test")]
    out, md = d / "r.json", d / "r.md"
    proc = run_compat("check", *objs, "--kernel", "6.1", "--privilege", "root", "--privilege", "caps",
                      "--privilege", "unprivileged", "--fail-on", "expectation", "--format", "json", "--output", out,
                      "--format", "markdown", "--output", md, "--jobs", "1", "--no-cache")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return proc, json.loads(out.read_text()), md.read_text()


def cells(doc: dict) -> dict[tuple[str, str], dict]:
    return {(r["program"], r["kernel"]): r for r in doc["results"]}


def test_each_privilege_is_a_column_of_the_one_guest(checked):
    proc, doc, md = checked
    assert [k["id"] for k in doc["kernels"]] == ["6.1", "6.1 (caps)", "6.1 (unprivileged)"]
    assert [k.get("privilege") for k in doc["kernels"]] == [None, "caps", "unprivileged"]
    assert doc["options"]["privileges"] == ["root", "caps", "unprivileged"]
    assert proc.stderr.count("restored 6.1") + proc.stderr.count("booted 6.1") == 1  # one guest (--jobs 1)
    assert "| program | 6.1<br><sub>" in md and "6.1 (caps)<br>" in md and "6.1 (unprivileged)<br>" in md
    assert {r["privilege"] for r in doc["results"]} == {"root", "caps", "unprivileged"}


def test_the_unprivileged_verifier_refuses_a_pointer_leak_that_root_and_caps_accept(checked):
    c = cells(checked[1])
    assert c[("leak_pointer", "6.1")]["verdict"] == "accepted"
    assert c[("leak_pointer", "6.1 (caps)")]["verdict"] == "accepted"
    unpriv = c[("leak_pointer", "6.1 (unprivileged)")]
    assert unpriv["verdict"] == "rejected" and unpriv["reason"] == "verifier_rejection"
    assert "leaks addr into map" in unpriv["message"]
    assert all(c[("plain_filter", k)]["verdict"] == "accepted" for k in ("6.1", "6.1 (caps)", "6.1 (unprivileged)"))


def test_a_kprobe_loads_with_caps_and_is_not_permitted_unprivileged(checked):
    c = cells(checked[1])
    assert c[("trace_sleep", "6.1 (caps)")]["verdict"] == "accepted"
    unpriv = c[("trace_sleep", "6.1 (unprivileged)")]
    assert unpriv["verdict"] == "rejected" and unpriv["reason"] == "not_permitted" and unpriv["errno"] == 1
    assert "program type kprobe cannot be loaded with --privilege unprivileged" in unpriv["message"]
    assert "CAP_PERFMON" in unpriv["message"]


def test_selftest_expectations_are_judged_per_mode(checked):
    proc, doc, _ = checked
    c = cells(doc)
    root, unpriv = c[("leak_unpriv", "6.1")], c[("leak_unpriv", "6.1 (unprivileged)")]
    assert root["verdict"] == "accepted" and root["expectation"]["met"] is True
    assert unpriv["verdict"] == "rejected" and unpriv["expectation"]["met"] is True
    assert unpriv["expectation"]["expected"] == "rejected" and unpriv["expectation"]["mode"] == "unprivileged"
    assert c[("fine_both", "6.1 (unprivileged)")]["expectation"]["met"] is None  # no unprivileged mode
    assert c[("leak_unpriv", "6.1 (caps)")]["expectation"]["met"] is None  # test_loader has no caps mode
    # No expectation is missed, and an unprivileged rejection is no backport regression: exit 0.
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_not_permitted_rejection_points_at_no_source_line(checked):
    """The program's type is what the mode lacks, not a line (before: 'at priv.bpf.c:31: return 0;')."""
    c = cells(checked[1])
    assert c[("trace_sleep", "6.1 (unprivileged)")]["source"] is None
    assert c[("leak_pointer", "6.1 (unprivileged)")]["source"] is not None  # the verifier's line is one


def test_caps_cannot_find_an_attach_target_in_a_module(built_programs, tmp_path):
    """libbpf finds module BTF through BPF_BTF_GET_NEXT_ID, which needs CAP_SYS_ADMIN: with caps an
    fentry program on ext4_file_read_iter (module ext4) is refused for that, which the cell says
    (before: 'this kernel has no BTF for module functions', untrue on 6.1); as root it loads."""
    out = tmp_path / "r.json"
    proc = run_compat("check", built_programs["module_targets"], "--kernel", "6.1", "--privilege", "root",
                      "--privilege", "caps", "--no-cache", "--format", "json", "--output", out)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    c = cells(json.loads(out.read_text()))
    assert c[("ext4_read_entry", "6.1")]["verdict"] == "accepted"
    caps = c[("ext4_read_entry", "6.1 (caps)")]
    assert caps["verdict"] == "rejected" and caps["reason"] == "not_permitted", caps["message"]
    assert "is in module ext4" in caps["message"] and "CAP_SYS_ADMIN" in caps["message"]
