"""The wire contract (compat_agent.wire): typed messages that validate untrusted JSON (the host's
compat/guest/guestmsg.py validates with them), the table of verifier statistics, and what is
derived from them."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from compat_agent.wire import messages as wire
from compat_agent.wire import stats
from compat_agent.wire.validate import WireError

from compat.results import compare
from tests.unit.test_guestmsg import check_result, probe_result, program

HELLO = {"type": "hello", "release": "6.1.0-40-amd64", "btf": True, "agent": "0.1", "uptime": 1.5,
         "mem_total_kb": 1 << 20, "schema": "compat-agent/v1"}  # fmt: skip
BAD_VALUES: list[Any] = [None, True, 0, -(1 << 63), 1 << 63, 1.5, math.inf, math.nan, "", "x" * 4097, "\ud800",
                         [], [1], {}, {"k": 1}, "accepted"]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return doc


def _drop(doc: Any, path: tuple[Any, ...]) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for p in path[:-1]:
        target = target[p]
    del target[path[-1]]
    return doc


REPLIES = [
    ("check_result", check_result(programs=[program(), program(program="b", verdict="rejected", stage="load",
                                                               errno=22, message="R1 !read_ok")])),
    ("check_result", check_result(maps=[{"name": "ops", "type": "struct_ops", "ok": False, "errno": -22,
                                         "struct_ops": {"type": "tcp_congestion_ops", "link": True}}])),
    ("probe_result", {**probe_result(), "features": {"struct_ops_link": True}}),
    ("hello", HELLO),
    ("error", {"type": "error", "error": "the agent failed"}),
    ("error", {"type": "error", "error": "out of files", "code": "resource_exhausted", "resource": "open_files",
               "errno": 24, "stage": "map", "name": "m", "limit": 1024, "needs": 2000}),
]  # fmt: skip


@pytest.mark.parametrize("kind,reply", REPLIES, ids=[k for k, _ in REPLIES])
def test_every_field_is_checked(kind, reply):
    # Each field of a well-formed reply replaced by each bad value, and each field dropped: the
    # typed definitions answer every variant with a problem or None, never an exception; a
    # message that is not an object never passes, and most bad values are refused.
    assert wire.problem(reply, kind) is None
    for not_an_object in ("not an object", None, [], 1):
        assert isinstance(wire.problem(not_an_object, kind), str)
    variants = []
    for path in _paths(reply):
        variants.append(_drop(reply, path))
        variants += [_set(reply, path, bad) for bad in BAD_VALUES]
    problems = [wire.problem(v, kind) for v in variants]
    assert all(p is None or isinstance(p, str) for p in problems)
    assert len(variants) > 30 and sum(p is not None for p in problems) > len(variants) // 2


def test_from_json_builds_typed_records_and_to_json_gives_the_same_shape():
    reply = check_result(programs=[program(facts=[{"code": "missing_extern", "name": "bpf_x", "kind": "kcfg"}])])
    result = wire.CheckResult.from_json(reply)
    p = result.programs[0]
    assert isinstance(p, wire.ProgramRecord) and isinstance(p.stats, wire.StatsRecord)
    assert p.stats.stack_depth == [8] and p.attach is not None and p.attach.status == "ok"
    assert result.maps is not None and result.maps[0].name == "counts"
    assert wire.facts_of(p) == [{"code": "missing_extern", "name": "bpf_x", "kind": "kcfg"}]
    out = result.to_json()
    # The same fields (a field the agent leaves out is null: the host reads both alike); unknown
    # extra fields are dropped.
    known = {k: v for k, v in reply.items() if k != "timing"}
    assert _no_nulls(out) == _no_nulls(known)
    assert wire.ProbeResult.from_json(probe_result()).helper_names == {"1": "map_lookup_elem"}


def test_facts_from_the_guest_are_checked_with_a_path():
    bad = check_result(programs=[program(), program(facts=[{"code": "no_argument", "func": "f", "n": "4"}])])
    with pytest.raises(WireError) as e:
        wire.CheckResult.from_json(bad)
    assert str(e.value) == "programs[1].facts[0].n: expected an integer, got str"
    with pytest.raises(WireError, match=r"^facts\[0\]\.code: unknown fact code 'made_up'"):
        wire.CheckResult.from_json(check_result(facts=[{"code": "made_up"}]))
    with pytest.raises(WireError, match=r"^programs\[0\]\.facts: expected a list, got null"):
        wire.CheckResult.from_json(check_result(programs=[program(facts=None)]))


def test_the_protocol_version_is_checked():
    wire.check_protocol(wire.Hello.from_json({**HELLO, "protocol": wire.PROTOCOL_VERSION}))
    with pytest.raises(WireError, match="speaks protocol 1, this host 2"):
        wire.check_protocol(wire.Hello.from_json(HELLO))
    with pytest.raises(WireError, match=r"^protocol: expected an integer, got str"):
        wire.Hello.from_json({**HELLO, "protocol": "2"})


def test_check_request_round_trip():
    request = {"type": "check", "object": "a.o", "attach": True, "elf": {"externs": []}, "program_timeout": 30,
               "program_types": [["lb*", "tc"]], "globals": [], "attach_targets": [["f*", "vfs_read"]]}  # fmt: skip
    knobs = {"prog_flags": [], "inner_maps": [], "map_sizes": [], "privileges": [], "tests": []}  # loader knobs, unset
    assert wire.CheckRequest.from_json(request).to_json() == {**request, **knobs, "id": None}
    with pytest.raises(WireError, match=r"^program_types\[0\]: list of 3 items \(at most 2\)"):
        wire.CheckRequest.from_json({**request, "program_types": [["a", "b", "c"]]})


LOGS = [
    "",
    "processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0\n",
    "func#0 @0\n0: R1=ctx() R10=fp0\nprocessed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 "
    "peak_states 0 mark_read 0\nverification time 61 usec\nstack depth 16+8+0\n",
    "BPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns (limit 1000000)",
    "BPF program is too large. Processed 1000001 insn\n",  # only the older wording: the fallback
    "insns processed 5\nstack depth 512\nverification time 7 usec\nverification time 9 usec\n",  # last wins
    "processed 5 insns\nprocessed 6 insns\ntotal_states 2 total_states 3",
]

# What the agent's parser (compat_agent/verifierlog.py before the table) returned for each log,
# as (insns_processed, states_total, states_peak, verification_time_us, stack_depth).
EXPECTED_STATS = [
    (None, None, None, None, None),
    (12, 1, 1, None, None),
    (3, 0, 0, 61, [16, 8, 0]),
    (1000001, None, None, None, None),
    (1000001, None, None, None, None),
    (None, None, None, 9, [512]),
    (6, 3, None, None, None),
]


@pytest.mark.parametrize(("log", "expected"), list(zip(LOGS, EXPECTED_STATS, strict=True)))
def test_stats_table_parses_as_the_agent_did(log, expected):
    keys = ("insns_processed", "states_total", "states_peak", "verification_time_us", "stack_depth")
    parsed = stats.parse_stats(log)  # and the rows added since (max_states_per_insn, mark_read)
    assert {k: parsed[k] for k in keys} == dict(zip(keys, expected, strict=True))


def test_what_the_stats_table_drives_matches_what_is_written_out_today():
    assert stats.compared() == compare.STAT_KEYS
    assert stats.labels() == compare.STAT_LABELS
    schema = json.loads((Path(compare.__file__).parent / "schema" / "result-v1.json").read_text())
    found = _find(schema, "insns_processed")
    assert found == stats.schema_properties()
    assert [f for f in wire.StatsRecord.__dataclass_fields__] == [s.json for s in stats.STATS]


def _no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value]
    return value


def _find(schema: Any, key: str) -> Any:
    """The properties object of the schema that names key."""
    if isinstance(schema, dict):
        if key in schema and isinstance(schema[key], dict) and len(schema) > 1:
            return schema
        for v in schema.values():
            if (got := _find(v, key)) is not None:
                return got
    if isinstance(schema, list):
        for v in schema:
            if (got := _find(v, key)) is not None:
                return got
    return None


def test_the_contract_is_pure_python_the_host_can_import():
    # No libbpf bindings and no ctypes: the host imports the contract without the guest's machinery.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import compat_agent.wire.messages, compat_agent.wire.textfacts, compat_agent.wire.stats\n"
        "import compat_agent.wire.features, compat.results.classify\n"
        "print(sorted(m for m in sys.modules if m == 'ctypes' or m.startswith('compat_agent.') and 'wire' not in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # verifierlog is part of wire now
