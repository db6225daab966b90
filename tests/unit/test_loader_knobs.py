"""Loader knobs (issue 16, deliverable 5) without a guest: parsing, bad input, the table's rows
(request, result cache key, recorded options) and the agent's reading of a request."""

from __future__ import annotations

import pytest
from compat_agent.checker.check import Knobs
from conftest import run_compat

from compat.errors import UserError
from compat.run.checker import CheckOptions
from compat.run.options import (
    MAP_TYPES,
    PROG_FLAGS,
    RequestContext,
    cache_key,
    inner_map,
    map_size,
    prog_flags,
    recorded,
    request_fields,
)


def test_flags_come_from_the_uapi_table():
    assert prog_flags("*=BPF_F_STRICT_ALIGNMENT") == ("*", 1)
    assert prog_flags("xdp_*=xdp_has_frags,BPF_F_TEST_STATE_FREQ") == ("xdp_*", 32 | 8)
    assert PROG_FLAGS["BPF_F_TEST_REG_INVARIANTS"] == 128 and PROG_FLAGS["BPF_F_SLEEPABLE"] == 16
    with pytest.raises(UserError, match="unknown program flag 'BPF_F_STRICT'"):
        prog_flags("*=BPF_F_STRICT")
    with pytest.raises(UserError, match="GLOB=FLAG"):
        prog_flags("BPF_F_SLEEPABLE")


def test_inner_map_and_map_size_parse_and_refuse():
    assert MAP_TYPES[33] == "arena" and MAP_TYPES[13] == "hash_of_maps"
    assert inner_map("cgroup_hash=hash:8:4:1") == ("cgroup_hash", 1, 8, 4, 1)
    assert inner_map("m=BPF_MAP_TYPE_ARRAY:4:4:0x10")[1:] == (2, 4, 4, 16)
    for bad, said in (("m=hash:4:4", "TYPE:KEY_SIZE"), ("m=nosuch:4:4:1", "unknown map type"),
                      ("m=hash:4:4:0", "ENTRIES must be"), ("m=hash:x:4:1", "KEY_SIZE must be")):  # fmt: skip
        with pytest.raises(UserError, match=said):
            inner_map(bad)
    assert map_size("events=4096") == ("events", 4096)
    with pytest.raises(UserError, match="ENTRIES must be"):
        map_size("events=4294967296")


def test_the_rows_reach_the_request_the_cache_key_and_the_file():
    options = CheckOptions(prog_flags=(prog_flags("p*=strict_alignment"),), inner_maps=(inner_map("o=array:4:4:1"),),
                           map_sizes=(map_size("events=64"),))  # fmt: skip
    values = options.values()
    request = request_fields(values, RequestContext("a.o", {}))
    assert request["prog_flags"] == [{"glob": "p*", "flags": 1}]
    assert request["inner_maps"] == [{"map": "o", "type": 2, "key_size": 4, "value_size": 4, "max_entries": 1}]
    assert request["map_sizes"] == [{"map": "events", "max_entries": 64}]
    key = cache_key(values)
    assert key["prog_flags"] == ["p*=BPF_F_STRICT_ALIGNMENT"] and key != cache_key(CheckOptions().values())
    assert recorded(values, always=False) == {"prog_flags": ["p*=BPF_F_STRICT_ALIGNMENT"],
                                              "inner_maps": ["o=array:4:4:1"], "map_sizes": ["events=64"]}  # fmt: skip
    assert recorded(CheckOptions().values(), always=False) == {}
    knobs = Knobs.from_request(request)
    assert knobs.prog_flags == [("p*", 1)] and knobs.inner_maps == {"o": (2, 4, 4, 1)}
    assert knobs.map_sizes == {"events": 64}
    unset = CheckOptions().values()  # not given: neither in the request nor in the cache key (old keys stay)
    assert "prog_flags" not in request_fields(unset, RequestContext("a.o", {})) and "map_sizes" not in cache_key(unset)
    assert Knobs.from_request({"prog_flags": [{"glob": "x", "flags": -1}], "map_sizes": ["junk"]}) == Knobs()


def test_a_bad_flag_is_one_line_and_exit_2_before_anything_boots(tmp_path):
    obj = tmp_path / "x.o"
    obj.write_bytes(b"\x7fELF")
    proc = run_compat("check", obj, "--kernel", "6.1", "--prog-flags", "*=BPF_F_NOPE", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line for line in proc.stderr.strip().splitlines() if line]
    assert "compat: error: --prog-flags '*=BPF_F_NOPE': unknown program flag 'BPF_F_NOPE'" in proc.stderr
    assert "Traceback" not in proc.stderr
