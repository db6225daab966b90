"""The agent's facts (issue 15): what it knows itself goes out as codes with parameters, what the
kernel and libbpf said is read once from their texts (textfacts), and the reply carries both
within the contract's bounds. Pure Python: no libbpf is loaded."""

from __future__ import annotations

from compat_agent.checker.check import add_facts
from compat_agent.checker.state import ProgState
from compat_agent.wire.facts import FACTS_MAX, check_facts
from compat_agent.wire.messages import CheckResult
from compat_agent.wire.verifierlog import error_line

from compat.results.classify import classify


def _state(**kw: object) -> ProgState:
    base = dict(name="p", section="lsm/x", prog_type=29, type_name="lsm", eat=0, attach_type=None,
                attach_target=None, insn_cnt=8, helpers=[], kfuncs=["bpf_rdonly_cast"],
                initial_autoload=True)  # fmt: skip
    return ProgState(**{**base, **kw})  # type: ignore[arg-type]


def _result(*records: dict, opened: dict | None = None, maps: list[dict] | None = None) -> dict:
    return {"type": "check_result", "open": opened or {"ok": True, "libbpf_log": ""}, "maps": maps or [],
            "programs": list(records)}  # fmt: skip


def test_reworded_message_goes_out_as_its_fact():
    # explain() rewords libbpf's "kfunc '...' is referenced but wasn't resolved" for display; the
    # host classifies from the fact it adds, not from the new words.
    p = _state()
    message = p.explain("kfunc 'bpf_rdonly_cast' is referenced but wasn't resolved", [])
    p.reject("load", 22, message, [])
    result = _result(p.record())
    add_facts(result)
    CheckResult.check(result)
    record = result["programs"][0]
    assert record["facts"][0] == {"code": "kfunc_unresolved", "name": "bpf_rdonly_cast"}
    c = classify(record, result, None, {})
    assert (c.reason, c.message) == (
        "missing_kfunc",
        "kfunc bpf_rdonly_cast is not available on this kernel and the call is not guarded by bpf_ksym_exists()",
    )
    # A later message that is not reworded (the full log's line) takes none of them along.
    p.message = p.explain("R1 invalid mem access 'scalar'", []) or p.message
    assert p.record()["facts"] == []


def test_open_failure_facts_are_the_objects():
    opened = {"ok": False, "errno": 22, "message": "bad map relo against 'e' in section 'maps/e' (compat's legacy-map "
              "loader cannot load it either: it also has CO-RE relocations, which need libbpf 1.x)",
              "libbpf_log": "libbpf: elf: bad map relo against 'e' in section 'maps/e'"}  # fmt: skip
    result = _result(opened=opened)
    result["facts"] = [{"code": "legacy_unsupported", "kind": "core_relocations"}]
    add_facts(result)
    assert [f["code"] for f in result["facts"]] == ["legacy_maps", "legacy_maps", "legacy_unsupported"]
    gp = {"program": "p", "verdict": "rejected", "stage": "open", "errno": 22, "message": opened["message"]}
    assert classify(gp, result, None, {}).message.endswith(
        "(compat's legacy-map loader cannot load it either: it also has CO-RE relocations, which need libbpf 1.x)"
    )


def test_agent_prose_makes_no_fact():
    # The agent's own sentences are not read back (its facts say it): only accepted programs lack facts.
    p = _state()
    p.reject("prepare", None, "not verified: its struct_ops map 'm' could not be created", [])
    result = _result(p.record(), _state(name="q", verdict="accepted").record())
    add_facts(result)
    assert result["programs"][0]["facts"] == []
    assert "facts" not in result["programs"][1]


def test_facts_stay_within_the_contracts_bound():
    # An object with thousands of maps that a text names: map_mentioned gives way, the rest stays.
    maps = [{"name": f"m{i}"} for i in range(400)]
    log = "\n".join(f"map 'm{i}': used here" for i in range(400)) + "\nR0 !read_ok"
    p = _state()
    p.reject("load", 13, "R0 !read_ok", [])
    p.log = log
    result = _result(p.record(), maps=maps)
    add_facts(result)
    facts = result["programs"][0]["facts"]
    check_facts(facts, "facts")
    assert len(facts) == FACTS_MAX and facts[-1] == {"code": "verifier_error", "line": "R0 !read_ok"}


def test_error_line_ends_where_the_kernel_glued_its_statistics():
    # Some kernels print "invalid type id N in func info" without a newline (issue 14's fuzzing).
    log = "func#0 @0\ninvalid type id 5 in func infoprocessed 0 insns (limit 1000000) max_states_per_insn 0\n"
    assert error_line(log) == "invalid type id 5 in func info"
    assert error_line("R0 !read_ok\nprocessed 3 insns (limit 1000000)\n") == "R0 !read_ok"
