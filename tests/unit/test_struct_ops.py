"""struct_ops objects: which maps an object declares and which programs each uses (host only), and
the kernel probe's struct_ops answers on the real default kernels (the verdicts and reasons of
programs/struct_ops.bpf.c are in programs/expected.yaml, checked by tests/vm/test_check.py)."""

from __future__ import annotations

import json
import subprocess

import pytest
from bpf_build import PROGRAMS_DIR, compile_command, find_clang
from compat_agent.elf.analysis import analyze_elf, elf_from_json, elf_to_json


@pytest.fixture(scope="module")
def struct_ops_object(tmp_path_factory) -> bytes:
    try:
        clang = find_clang()
    except RuntimeError as e:
        pytest.skip(str(e))
    obj = tmp_path_factory.mktemp("struct_ops") / "struct_ops.o"
    subprocess.run(compile_command(clang, PROGRAMS_DIR / "struct_ops.bpf.c", obj), check=True, timeout=300)
    return obj.read_bytes()


def test_struct_ops_maps_with_their_kernel_type_link_flag_and_programs(struct_ops_object):
    maps = analyze_elf(struct_ops_object).struct_ops
    assert maps == {
        "compat_cc": {
            "type": "tcp_congestion_ops",
            "link": False,
            "programs": ["cc_ssthresh", "cc_cong_avoid", "cc_undo_cwnd"],
        },
        "compat_cc_link": {
            "type": "tcp_congestion_ops",
            "link": True,
            "programs": ["cc_ssthresh", "link_cong_avoid", "cc_undo_cwnd"],
        },
        # the ___future flavor is the kernel's tcp_congestion_ops, as libbpf sees it
        "compat_cc_future": {"type": "tcp_congestion_ops", "link": False, "programs": ["future_op"]},
        "compat_nothing": {"type": "compat_no_such_ops", "link": False, "programs": ["no_such_op"]},
    }
    # The host sends its analysis with the check request: the guest reads the same back.
    again = elf_from_json(json.loads(json.dumps(elf_to_json(analyze_elf(struct_ops_object)))))
    assert again is not None and again.struct_ops == maps
    # A request of an older host (no struct_ops key) still reads, without struct_ops maps.
    older = elf_to_json(analyze_elf(struct_ops_object))
    del older["struct_ops"]
    assert elf_from_json(older).struct_ops == {}


def test_the_agent_tells_which_struct_ops_map_failed_and_why_its_programs_were_not_verified(struct_ops_object):
    from compat_agent.checker.check import Checker, ProgState

    checker = Checker(struct_ops_object, "struct_ops.o", attach=False)
    checker.struct_ops = analyze_elf(struct_ops_object).struct_ops
    # libbpf 1.5 names the missing type, 1.7 its value type: either fails the maps of that type only.
    for tname in ("compat_no_such_ops", "bpf_struct_ops_compat_no_such_ops"):
        line = f"struct_ops init_kern: struct {tname} is not found in kernel BTF"
        assert checker._struct_ops_failed(["libbpf line", line, "failed to load object 'struct_ops.o'"]) == {
            "compat_nothing": line
        }
    member = "struct_ops init_kern compat_cc_future: Cannot find member compat_future_op in kernel BTF"
    assert checker._struct_ops_failed([member]) == {"compat_cc_future": member}
    assert checker._struct_ops_failed(["struct_ops compat_cc: member x not found in kernel, skipping it"]) == {}

    def prog(name: str) -> ProgState:
        return ProgState(name, "struct_ops", 27, "struct_ops", 0, None, None, 1, [], [], True)

    checker.failed_maps = {"compat_cc_link"}
    assert checker._struct_ops_not_loaded(prog("cc_ssthresh"), ["cc_cong_avoid"]) == (
        "not verified: its struct_ops map 'compat_cc' cannot be created without program 'cc_cong_avoid', "
        "which was rejected"
    )
    assert checker._struct_ops_not_loaded(prog("link_cong_avoid"), ["cc_cong_avoid"]) == (
        "not verified: its struct_ops map 'compat_cc_link' could not be created"
    )
    checker.struct_ops = {"other": {"type": "tcp_congestion_ops", "link": False, "programs": []}}
    assert "no struct_ops map uses" in checker._struct_ops_not_loaded(prog("cc_ssthresh"), [])
