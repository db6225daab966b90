"""The feature tables of compat_agent/wire/features.py: helpers, program types and map types with
their first upstream release (bcc's docs/kernel-versions.md), their lookups, and the requirements
view naming the release of what an older kernel lacks. No VM: the cached probe results of the
kernel cache are read when present, else that test is skipped.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from compat_agent.wire import features
from compat_agent.wire.features import (
    FEATURES,
    HELPER_SINCE,
    MAP_TYPE_SINCE,
    PROG_TYPE_SINCE,
    helper_since,
    map_type_since,
    prog_type_since,
    requirement,
)
from synthetic_run import current

from compat.reports import render
from compat.results.compare import compare

# Well-known helpers with their release as bcc's table gives it (checked against the table when
# it was extracted, not written from memory).
KNOWN_HELPERS = {
    "bpf_map_lookup_elem": "3.19", "bpf_probe_read": "4.1", "bpf_trace_printk": "4.1", "bpf_tail_call": "4.2",
    "bpf_get_current_pid_tgid": "4.2", "bpf_perf_event_output": "4.4", "bpf_redirect_map": "4.14",
    "bpf_get_stack": "4.18", "bpf_xdp_adjust_tail": "4.18", "bpf_spin_lock": "5.1", "bpf_sk_storage_get": "5.2",
    "bpf_send_signal": "5.3", "bpf_probe_read_kernel": "5.5", "bpf_probe_read_user_str": "5.5",
    "bpf_ringbuf_output": "5.8", "bpf_ktime_get_boot_ns": "5.8", "bpf_d_path": "5.10", "bpf_for_each_map_elem": "5.13",
    "bpf_snprintf": "5.13", "bpf_get_func_ip": "5.15", "bpf_timer_init": "5.15", "bpf_loop": "5.17",
    "bpf_find_vma": "5.17", "bpf_kptr_xchg": "5.19", "bpf_dynptr_from_mem": "5.19", "bpf_user_ringbuf_drain": "6.1",
    "bpf_ktime_get_tai_ns": "6.1", "bpf_cgrp_storage_get": "6.2",
}  # fmt: skip
KNOWN_PROG_TYPES = {
    "socket_filter": "3.19", "kprobe": "4.1", "sched_cls": "4.1", "tracepoint": "4.7", "xdp": "4.8",
    "cgroup_skb": "4.10", "raw_tracepoint": "4.17", "tracing": "5.5", "struct_ops": "5.6", "ext": "5.6", "lsm": "5.7",
    "sk_lookup": "5.9", "syscall": "5.15", "netfilter": "6.4",
}  # fmt: skip
KNOWN_MAP_TYPES = {
    "hash": "3.19", "array": "3.19", "prog_array": "4.2", "perf_event_array": "4.3", "lru_hash": "4.10",
    "lpm_trie": "4.11", "sockhash": "4.18", "sk_storage": "5.2", "devmap_hash": "5.4", "struct_ops": "5.6",
    "ringbuf": "5.8", "task_storage": "5.11", "user_ringbuf": "6.1", "cgrp_storage": "6.2", "arena": "6.9",
}  # fmt: skip


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def test_well_known_helpers_have_their_release():
    assert {h: helper_since(h) for h in KNOWN_HELPERS} == KNOWN_HELPERS


def test_helper_names_are_taken_with_or_without_their_prefix():
    assert helper_since("bpf_loop") == helper_since("loop") == helper_since("BPF_FUNC_loop") == "5.17"
    assert helper_since("bpf_no_such_helper") is None
    assert helper_since("bpf_skc_to_mptcp_sock") == "5.19"  # bcc's row misspells it skc_to_mctcp_sock


def test_program_and_map_types_have_their_release():
    assert {t: prog_type_since(t) for t in KNOWN_PROG_TYPES} == KNOWN_PROG_TYPES
    assert {t: map_type_since(t) for t in KNOWN_MAP_TYPES} == KNOWN_MAP_TYPES
    assert prog_type_since("no_such_type") is None and map_type_since("no_such_type") is None


def test_tables_are_well_formed():
    for table in (HELPER_SINCE, PROG_TYPE_SINCE, MAP_TYPE_SINCE):
        assert table and all(re.fullmatch(r"[a-z0-9_]+", n) for n in table)
        assert all(re.fullmatch(r"\d+\.\d+", v) and _version(v) >= (3, 15) for v in table.values())
    # every entry names its source: a commit id as bcc cites it, or a commit's subject
    for table in (features.HELPERS, features.PROG_TYPES, features.MAP_TYPES):
        assert all(re.fullmatch(r"[0-9a-f]{11,12}", s.source) or " " in s.source for s in table.values())
    assert len(HELPER_SINCE) >= 211  # every helper up to bpf_user_ringbuf_drain's neighbours (id 211)


def test_map_types_of_the_feature_table_are_merged_once():
    mapped = {n: f.since for n, f in FEATURES.items() if f.kind == "map_type"}
    assert mapped and all(MAP_TYPE_SINCE[n] == v for n, v in mapped.items())
    assert not set(mapped) & set(features._MAP_TYPES)  # one entry per name
    assert requirement("map_type", "arena") is FEATURES["arena"]  # keeps the table's words


def test_requirement_words():
    f = requirement("helper", "loop")
    assert f is not None and (f.name, f.what, f.since, f.source) == ("bpf_loop", "bpf_loop", "5.17", "e6f2dd0f8067")
    p = requirement("prog_type", "syscall")
    assert p is not None and (p.what, p.since, p.need) == ("syscall programs", "5.15", "need")
    assert requirement("helper", "bpf_nothing") is None and requirement("prog_type", "nothing") is None


def _cached_probes() -> list[dict]:
    root = Path(os.environ.get("COMPAT_CACHE") or Path.home() / ".cache" / "compat") / "probes"
    out = []
    for manifest in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        try:
            probe = (json.loads(manifest.read_text()).get("meta") or {}).get("probe") or {}
        except (OSError, ValueError):
            continue
        if isinstance(probe.get("helper_names"), dict):
            out.append(probe)
    return out


def test_tables_cover_what_the_cached_probes_report():
    probes = _cached_probes()
    if not probes:
        pytest.skip("no cached probe results (~/.cache/compat/probes): run compat check once")
    helpers = {str(n) for p in probes for n in p["helper_names"].values()}
    prog_types = {str(n) for p in probes for n in (p.get("prog_types") or {})}
    map_types = {str(n) for p in probes for n in (p.get("map_types") or {})}
    assert sorted(h for h in helpers if helper_since(h) is None) == []
    assert sorted(t for t in prog_types if prog_type_since(t) is None) == []
    assert sorted(t for t in map_types if map_type_since(t) is None) == []


def test_requirements_view_names_the_release_of_a_missing_helper_type_and_map_type():
    run = current()
    for r in run.results:
        if r.program == "xdp_pass" and r.kernel == "5.10":
            r.verdict, r.reason = "rejected", "missing_helper"
            r.message = "helpers bpf_ringbuf_output (130), bpf_get_func_ip (173) are not available on this kernel"
        if r.program == "xdp_filter" and r.kernel == "5.10":
            r.verdict, r.reason, r.prog_type = "rejected", "unsupported_prog_type", "syscall"
            r.message = "program type syscall is not supported by this kernel"
        if r.program == "count_new" and r.kernel == "5.10":
            r.verdict, r.reason = "rejected", "unsupported_map_type"
            r.message = "map type sk_storage (map socks) is not supported by this kernel"
            r.object_load = {"loads": False, "maps": [{"name": "socks", "type": "sk_storage", "since": None}]}
    doc = json.loads(render("requirements-json", run, compare(run)))
    by = {p["program"]: p for p in doc["programs"]}
    assert by["xdp_pass"]["older"][0]["needs"] == [
        {"feature": "bpf_ringbuf_output", "what": "bpf_ringbuf_output", "since": "5.8"},
        {"feature": "bpf_get_func_ip", "what": "bpf_get_func_ip", "since": "5.15"},
    ]
    syscall = {"feature": "syscall", "what": "syscall programs", "since": "5.15"}
    assert by["xdp_filter"]["older"][0]["needs"] == [syscall]
    sk_storage = {"feature": "sk_storage", "what": "sk_storage maps", "since": "5.2"}
    assert by["count_new"]["older"][0]["needs"] == [sk_storage]
    md = render("requirements", run, compare(run))
    assert "needs Linux 5.8 (bpf_ringbuf_output); needs Linux 5.15 (bpf_get_func_ip); missing helper" in md
    assert "needs Linux 5.15 (syscall programs); unsupported program type" in md
    assert "needs Linux 5.2 (sk_storage maps); unsupported map type" in md


def test_a_map_the_kernel_did_not_create_names_no_old_map_type():
    # an uncreated hash map (EINVAL on its size) lacked no feature: no "needs Linux 3.19 (hash maps)"
    run = current()
    for r in run.results:
        if r.program == "count_new" and r.kernel == "5.10":
            r.verdict, r.reason = "rejected", "object_error"
            r.message = "map counts: EINVAL"
            r.object_load = {"loads": False, "maps": [{"name": "counts", "type": "hash", "since": None}]}
    doc = json.loads(render("requirements-json", run, compare(run)))
    by = {p["program"]: p for p in doc["programs"]}
    assert by["count_new"]["older"][0]["needs"] == []
