"""Objects with legacy map definitions (struct bpf_map_def in 'maps' sections), which libbpf 1.x
refuses to open: compat's own legacy-map loader (guest-agent/compat_agent/checker/legacy.py) parses them
on the host here, and gives their programs the kernel's verdicts in a real guest."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat


def check(obj, *extra) -> dict:
    proc = run_compat("check", str(obj), "--kernel", "6.1", "--no-cache", *extra, "--format", "json", "--output", "-",
                      timeout=3000)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {r["program"]: r for r in json.loads(proc.stdout)["results"]}


@pytest.mark.vm
@pytest.mark.network
def test_a_legacy_object_gets_the_kernel_s_verdicts(legacy_object):
    cells = check(legacy_object)
    assert cells["count_packets"]["verdict"] == cells["send_event"]["verdict"] == "accepted"
    assert cells["count_packets"]["stats"]["insns_processed"]
    rejected = cells["read_unchecked"]
    assert (rejected["verdict"], rejected["reason"]) == ("rejected", "verifier_rejection"), rejected
    assert "outside of the packet" in rejected["message"] and rejected["log_level"] == 1
    assert "legacy 'maps' sections (struct bpf_map_def)" in cells["send_event"]["libbpf_log"]
    # Attached by fd, as loaders of that era did (perf events, a link, SO_ATTACH_BPF).
    attach = {name: (c["attach"]["status"], c["attach"]["reason"]) for name, c in cells.items()}
    assert attach["count_packets"] == ("ok", "attached to dummy interface compat0 (generic XDP)")
    assert attach["send_event"] == ("ok", "attached to do_nanosleep")
    assert attach["on_getpid"] == ("ok", "attached to syscalls/sys_enter_getpid")
    assert attach["keep_all"] == ("ok", "attached to a UDP socket with SO_ATTACH_BPF")
    assert attach["sample"] == ("ok", "attached to a software cpu-clock sampling event")
    assert attach["gone"] == (
        "failed",
        "failed to create kretprobe 'compat_no_such_function' perf event: No such file or directory",
    )
    # --attach-target points a kprobe whose function this kernel lacks at one it has.
    gone = check(legacy_object, "--attach-target", "gone=do_nanosleep")["gone"]
    assert gone["attach"]["status"] == "ok" and gone["attach"]["reason"] == "attached to do_nanosleep"
    note = "attach target do_nanosleep (--attach-target; its section names compat_no_such_function)"
    assert note in gone["libbpf_log"]
