"""The object as shipped (issue 16, deliverable 1): an object whose skeleton load fails on a kernel
because of a map no program uses is said so, per kernel, in the table, markdown and JSON; the
per-program verdicts stay as they are."""

from __future__ import annotations

import json

import pytest
from bpf_build import build_source
from conftest import run_compat

# A BPF arena map (BPF_MAP_TYPE_ARENA = 33, Linux 6.9; the host's uapi headers may predate it)
# that the only program does not use: every program verifies on 6.1, the skeleton's load fails.
ARENA = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, 33);
    __uint(map_flags, 1024); /* BPF_F_MMAPABLE */
    __uint(max_entries, 1);
} arena SEC(".maps");

SEC("xdp")
int pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""


# A program its loader loads only on demand (SEC("?xdp"): autoload off) that every kernel rejects,
# beside one that loads: the skeleton's load does not load the first, so the object loads; the
# agent's first load (every program) is not that load, so its verdict takes one more load.
ON_DEMAND = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("?xdp")
int unchecked(struct xdp_md *ctx)
{
    return *(volatile unsigned int *)(long)ctx->data ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.vm
@pytest.mark.network
def test_an_arena_map_makes_the_object_not_load_on_6_1_only(tmp_path):
    obj = build_source(ARENA, tmp_path, "arena_unused")
    on_demand = build_source(ON_DEMAND, tmp_path, "on_demand")
    out = {fmt: tmp_path / f"out.{fmt}" for fmt in ("json", "table", "markdown")}
    args = [a for fmt, path in out.items() for a in ("--format", fmt, "--output", path)]
    proc = run_compat("check", obj, on_demand, "--kernel", "6.1", "--kernel", "6.12", "--no-attach", *args,
                      timeout=3000)  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(out["json"].read_text())
    for r in (r for r in doc["results"] if r["object"] == "on_demand.o"):
        assert r["object_load"] == {"loads": True}, r  # per-program: 'unchecked' rejected, 'pass' accepted
        assert r["verdict"] == ("rejected" if r["program"] == "unchecked" else "accepted")
    by_kernel = {r["kernel"]: r for r in doc["results"] if r["object"] == "arena_unused.o"}
    old, new = by_kernel["6.1"], by_kernel["6.12"]
    assert old["verdict"] == new["verdict"] == "accepted"  # the program itself verifies on both
    assert new["object_load"] == {"loads": True}
    shipped = old["object_load"]
    assert (shipped["loads"], shipped["stage"], shipped["name"]) == (False, "map", "arena"), shipped
    assert shipped["maps"] == [{"name": "arena", "type": "arena", "since": "6.9", "errno": shipped["errno"]}]
    words = "object does not load: map arena (arena, Linux 6.9): EINVAL"
    assert shipped["reason"] == words.removeprefix("object does not load: ")
    assert words in out["table"].read_text()
    assert words in out["markdown"].read_text()
