"""compat check on real third-party objects from Debian (bench/corpus.py) on 6.12 and 7.2.

What real loaders do at run time, and what the guest must do for them: systemd sizes its maps
(max_entries 0 in the object), xdp-tools' flowtable program calls a kfunc of the nf_flow_table
module (loaded first, with its dependencies and libcrc32c's crc32c soft dependency), opensnitch's
loader reads legacy map sections libbpf 1.x refuses (compat's legacy-map loader does what it
does), libbpf-tools' loaders choose the stack depth of their stack trace maps (value_size 0
in the object); and what compat cannot do must be said plainly (an inner map the loader supplies, a
section name libbpf does not know). The flowtable program is a real regression: 6.12 accepts
it, 7.2's verifier refuses it; so is biostacks' fentry on blk_account_io_done, a function 7.2
no longer has.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from conftest import run_compat
from corpus import corpus

pytestmark = [pytest.mark.vm, pytest.mark.network]

WANTED = (
    "libsystemd-shared-socket-bind.o",
    "libsystemd-shared-restrict-fs.o",
    "systemd-container-userns-restrict.o",
    "xdp-tools-xdp_flowtable.o",
    "lb.bpf",
    "opensnitch.o",
    "libbpf-tools-profile.o",
    "libbpf-tools-biostacks.o",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    objects = {p.name: p for p in corpus(warn=lambda message: None)}
    missing = [n for n in WANTED if n not in objects]
    assert not missing, f"not in the corpus: {missing}"
    out = tmp_path_factory.mktemp("real") / "result.json"
    proc = run_compat("check", *(str(objects[n]) for n in WANTED), "--kernel", "6.12", "--kernel", "sid", "--no-cache",
                      "--format", "json", "--output", str(out), timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    return proc, {(r["object"], r["program"], r["kernel"]): r for r in results}


def cells(results, obj):
    return [r for (o, _, _), r in results.items() if o == obj]


def test_maps_sized_at_run_time_are_sized_and_said(run):
    _, results = run
    for r in cells(results, "libsystemd-shared-socket-bind.o"):
        assert r["verdict"] == "accepted", r["message"]
        assert "map 'sd_bind_allow' has max_entries 0 in the object" in r["libbpf_log"]
    assert all(r["verdict"] == "accepted" for r in cells(results, "systemd-container-userns-restrict.o"))


def test_stack_trace_maps_get_the_default_stack_depth(run):
    _, results = run
    found = cells(results, "libbpf-tools-profile.o")
    assert found
    for r in found:
        assert r["verdict"] == "accepted", r["message"]
        assert "map 'stackmap' has max_entries 0" in r["libbpf_log"]
        assert "checked with value_size 1016 (127 frames" in r["libbpf_log"]
        assert r["attach"]["reason"] == "attached to a software cpu-clock sampling event", r["attach"]


def test_a_kernel_function_gone_in_a_newer_kernel(run):
    _, results = run
    done = ("libbpf-tools-biostacks.o", "blk_account_io_done")
    assert results[(*done, "6.12")]["verdict"] == "accepted"
    new = results[(*done, "sid")]
    assert new["verdict"] == "rejected" and new["reason"] == "missing_attach_target", new["message"]
    assert "blk_account_io_done does not exist on this kernel" in new["message"]


def test_a_module_kfunc_loads_and_a_newer_kernel_rejects_it(run):
    proc, results = run
    full = ("xdp-tools-xdp_flowtable.o", "xdp_fwd_flow_full")
    old, new = results[(*full, "6.12")], results[(*full, "sid")]
    assert old["verdict"] == "accepted", old["message"]
    assert "module nf_flow_table loaded first: it defines bpf_xdp_flow_lookup" in old["libbpf_log"]
    assert new["verdict"] == "rejected" and new["reason"] == "verifier_rejection"
    assert "flow_offload_tuple" in new["message"]
    assert "rejected on a newer kernel after an older one accepted" in proc.stderr


def test_legacy_map_sections_are_loaded_as_their_loader_does(run):
    _, results = run
    found = cells(results, "opensnitch.o")  # gobpf's struct bpf_map_def in maps/NAME sections
    assert len(found) == 18  # 9 kprobes, 2 kernels
    for r in found:
        assert r["verdict"] == "accepted", r["message"]
        assert "legacy 'maps' sections (struct bpf_map_def)" in r["libbpf_log"]
        assert r["attach"]["status"] == "ok", r["attach"]  # a kprobe perf event on the program's fd


def test_what_compat_cannot_do_is_said_plainly(run):
    _, results = run
    messages = {
        "libsystemd-shared-restrict-fs.o": "inner map its loader must supply at run time",
        "lb.bpf": "its loader sets it (bpf_program__set_type)",
    }
    for obj, words in messages.items():
        found = cells(results, obj)
        assert found
        for r in found:
            assert r["verdict"] == "rejected" and r["reason"] == "object_error", r
            assert words in r["message"], r["message"]
