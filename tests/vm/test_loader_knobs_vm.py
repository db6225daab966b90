"""Loader knobs (issue 16, deliverable 5) on a real kernel: --prog-flags makes a program that reads
the packet unaligned be rejected under BPF_F_STRICT_ALIGNMENT, --inner-map lets a map of maps
whose loader supplies the inner map (systemd's restrict-fs declares one so) be created, and both
are recorded in the result's options."""

from __future__ import annotations

import json

import pytest
from bpf_build import build_source
from conftest import run_compat

UNALIGNED = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int unaligned(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 5 > end)
        return XDP_PASS;
    return *(volatile __u32 *)(data + 1) ? XDP_PASS : XDP_DROP;  /* 4 bytes at offset 1 */
}

char LICENSE[] SEC("license") = "GPL";
"""

# As systemd's restrict-fs declares cgroup_hash: no inner map and no max_entries in the object
# (its loader gives both; compat sizes the map as for any map sized at run time).
MAP_OF_MAPS = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
    __type(key, __u64);
    __type(value, __u32);
} outer SEC(".maps");

SEC("xdp")
int lookup(struct xdp_md *ctx)
{
    __u64 key = 0;
    return bpf_map_lookup_elem(&outer, &key) ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.vm
@pytest.mark.network
def test_prog_flags_and_inner_map_change_the_verdicts(tmp_path):
    objs = [build_source(UNALIGNED, tmp_path, "unaligned"), build_source(MAP_OF_MAPS, tmp_path, "map_of_maps")]

    def check(*extra):
        proc = run_compat("check", *objs, "--kernel", "6.1", "--no-attach", *extra, "--format", "json",
                          "--output", "-", timeout=3000)  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        doc = json.loads(proc.stdout)
        return doc, {r["program"]: r for r in doc["results"]}

    _, plain = check()
    assert plain["unaligned"]["verdict"] == "accepted", plain["unaligned"]
    assert plain["lookup"]["verdict"] == "rejected", plain["lookup"]
    doc, knobs = check("--prog-flags", "unaligned=BPF_F_STRICT_ALIGNMENT", "--inner-map", "outer=hash:4:4:1")
    r = knobs["unaligned"]
    assert r["verdict"] == "rejected" and "misaligned" in (r["log"] + (r["message"] or "")), r
    assert knobs["lookup"]["verdict"] == "accepted", knobs["lookup"]
    assert knobs["lookup"]["object_load"] == {"loads": True}
    assert "given an inner map hash:4:4:1 (--inner-map)" in knobs["lookup"]["libbpf_log"]
    assert doc["options"]["prog_flags"] == ["unaligned=BPF_F_STRICT_ALIGNMENT"]
    assert doc["options"]["inner_maps"] == ["outer=hash:4:4:1"]
