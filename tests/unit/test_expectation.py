"""Selftest expectations without a VM: test_loader's tag rules (objects/expectations.py), the judge
on crafted records (results/expectation.py), the gate's --fail-on expectation, the result schema
and the reports' marks. The parser on real selftest objects and the judge on real verdicts are
in tests/vm/test_expectations_vm.py (they build the kernel's selftests)."""

from __future__ import annotations

import copy
import json

import jsonschema
from synthetic_run import current

from compat.errors import EXIT_FAILED, EXIT_OK
from compat.objects.expectations import ACCEPTED, REJECTED, parse_tags, read_specs
from compat.reports import render
from compat.results.compare import compare
from compat.results.expectation import judge, match_in_order
from compat.results.gate import exit_status
from compat.results.model import SCHEMA_FILE, ProgramResult

FAIL = "comment:test_expect_failure"
OK = "comment:test_expect_success"


def msg(i: int, text: str) -> str:
    return f"comment:test_expect_msg={i}={text}"


def record(verdict: str, log: str = "", **kw) -> ProgramResult:
    return ProgramResult(object="t.o", object_sha256="0" * 64, program="p", section="socket", prog_type="socket_filter",
                         kernel="6.12", verdict=verdict, log=log, **kw)  # fmt: skip


# -- parse_test_spec ---------------------------------------------------------------------------


def test_tags_as_test_loader_reads_them():
    spec = parse_tags("p", ["comment:test_description=bounds", FAIL, msg(0, "R0 invalid"), msg(1, "processed"),
                            "comment:test_log_level=2", "comment:test_prog_flags=BPF_F_STRICT_ALIGNMENT"])  # fmt: skip
    assert spec.priv is not None and spec.priv.expect == REJECTED
    assert spec.priv.messages == ["R0 invalid", "processed"]
    assert spec.unpriv is None and spec.description == "bounds" and spec.log_level == 2
    assert spec.needed_flags == ["BPF_F_STRICT_ALIGNMENT"]


def test_defaults_and_unpriv_inheritance():
    spec = parse_tags("p", ["comment:test_retval=0"])
    assert (
        spec.priv is not None and spec.priv.expect == ACCEPTED and spec.unjudged == ["the return value of a test run"]
    )
    spec = parse_tags("p", [FAIL, msg(0, "x"), "comment:test_expect_success_unpriv"])
    assert spec.unpriv is not None and spec.unpriv.expect == ACCEPTED and spec.unpriv.messages == ["x"]
    spec = parse_tags("p", ["comment:test_expect_failure_unpriv", "comment:test_expect_msg_unpriv=0=y"])
    assert spec.priv is None and spec.unpriv is not None and spec.unpriv.messages == ["y"]


def test_flags_cleared_numbers_and_testing_flags():
    spec = parse_tags("p", ["comment:test_prog_flags=0x1", "comment:test_prog_flags=!BPF_F_TEST_RND_HI32"])
    assert spec.needed_flags == ["BPF_F_STRICT_ALIGNMENT"]
    assert parse_tags("p", ["comment:test_prog_flags=BPF_F_TEST_REG_INVARIANTS"]).needed_flags == []


def test_malformed_annotations_are_said_not_raised():
    assert "log level" in (parse_tags("p", ["comment:test_log_level=two"]).malformed or "")
    assert "program flags" in (parse_tags("p", ["comment:test_prog_flags=BPF_F_NOPE"]).malformed or "")
    assert "regular expression" in (parse_tags("p", [msg(0, "a {{(}} b")]).malformed or "")
    assert "regular expression" in (parse_tags("p", [msg(0, "open {{ only")]).malformed or "")


def test_objects_without_tags_and_garbage():
    assert not read_specs(b"").annotated
    assert not read_specs(b"\x7fELF" + b"\0" * 100).annotated
    # Bytes that show test tags but are no readable object are malformed, not a traceback.
    garbage = b"\x7fELF\x02\x01\x01" + b"\xff" * 200 + b"comment:test_expect_failure"
    assert "annotation malformed" in (read_specs(garbage).malformed or "")


# -- the judge ---------------------------------------------------------------------------------


def spec_of(*tags: str) -> dict:
    return parse_tags("p", list(tags)).to_json()


def test_met_by_verdict_and_messages_in_order():
    log = "0: R1=ctx\n1: (b7) r0 = 0\nR0 invalid mem access 'scalar'\nprocessed 2 insns\n"
    e = judge(spec_of(FAIL, msg(0, "R0 invalid mem access"), msg(1, "processed {{[0-9]+}} insns")),
              record("rejected", log, log_level=1))  # fmt: skip
    assert e == {"expected": "rejected", "met": True, "why": None}


def test_not_met_by_verdict():
    e = judge(spec_of(FAIL), record("accepted"))
    assert e is not None and e["met"] is False and e["why"].startswith("expected rejected, accepted")
    e = judge(spec_of(OK), record("rejected", "x", message="helper bpf_loop is not available"))
    assert e is not None and e["met"] is False and "bpf_loop" in e["why"]


def test_not_met_by_message_order():
    log = "second\nfirst\n"
    e = judge(spec_of(FAIL, msg(0, "first"), msg(1, "second")), record("rejected", log, log_level=1))
    assert e is not None and e["met"] is False and "message 2 of 2" in e["why"] and "after the previous" in e["why"]
    assert match_in_order("first\nsecond\n", ["first", "second"]) is None


def test_accepted_programs_stats_log_is_no_verifier_log():
    # An accepted program's record carries the level-4 statistics line as its log: its messages are
    # not judged (they were judged not met, on 37 real selftest programs, before).
    stats = "processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0\n"
    e = judge(spec_of(OK, msg(0, "mark_precise: frame0")), record("accepted", stats, log_level=4))
    assert e is not None and e["met"] is None and "the verifier log could not be collected" in e["why"]


def test_not_judged_cases():
    e = judge(spec_of(OK, msg(0, "mark_precise")), record("accepted", ""))
    assert e is not None and e["met"] is None and "the verifier log could not be collected" in e["why"]
    # A test's __flag()s are applied by the agent (the request's tests): its verdict is judged.
    e = judge(spec_of(FAIL, "comment:test_prog_flags=BPF_F_ANY_ALIGNMENT"), record("rejected", "x"))
    assert e is not None and e["met"] is True
    e = judge(
        spec_of(FAIL, msg(0, "only at level 2"), "comment:test_log_level=2"), record("rejected", "x", log_level=1)
    )
    assert e is not None and e["met"] is None and "level-2" in e["why"]
    e = judge(spec_of(FAIL), record("error", message="guest died"))
    assert e is not None and e["met"] is None and "no verdict" in e["why"]
    e = judge(spec_of("comment:test_expect_failure_unpriv"), record("accepted"))
    assert e is not None and e["met"] is None and "no unprivileged mode" in e["why"]
    e = judge(spec_of(FAIL, "comment:test_expect_success_unpriv"), record("rejected", "x"))
    assert e is not None and e["met"] is True and e["unpriv"]["met"] is None
    assert judge(spec_of("comment:test_auxiliary"), record("accepted")) is None
    e = judge(spec_of("comment:test_log_level=x"), record("accepted"))
    assert e is not None and e["met"] is None and e["why"].startswith("annotation malformed")


# -- gate, schema, reports ---------------------------------------------------------------------


def annotated_run(met: bool):
    run = copy.deepcopy(current())
    run.results[0].expectation = {
        "expected": "rejected",
        "met": met,
        "why": None if met else "expected rejected, accepted",
    }
    return run


def test_fail_on_expectation_gates_only_unmet():
    for met, status in ((True, EXIT_OK), (False, EXIT_FAILED)):
        run = annotated_run(met)
        run.results = [r for r in run.results if r.verdict != "error"]
        run.kernels = [k for k in run.kernels if not k.error]
        assert exit_status(run, compare(run), "expectation") == status


def test_schema_and_reports_carry_the_expectation():
    run = annotated_run(False)
    schema = json.loads(SCHEMA_FILE.read_text())
    doc = json.loads(render("json", run, compare(run)))
    jsonschema.validate(doc, schema)
    assert doc["results"][0]["expectation"]["met"] is False
    assert all("expectation" not in r for r in doc["results"][1:])  # other programs' records unchanged
    table = render("table", run, compare(run))
    assert "✗" in table and "1 not met" in table
    assert "✗ not met" in render("markdown", run, compare(run))
    assert 'type="expectation"' in render("junit", run, compare(run), fail_on="expectation")
    assert "expectation/not-met" in render("sarif", run, compare(run))
    assert "expectation not met" in render("github", run, compare(run))


# -- the kernel axis: point releases of an expanded series under their series ------------------


def test_series_point_releases_grouped_in_table_and_markdown():
    run = copy.deepcopy(current())
    for k in run.kernels:
        if k.id.startswith("6.1."):
            k.series = "6.1"  # as a 6.1 series expansion (debian:6.1.*) records it
    table = render("table", run, compare(run))
    head = table.splitlines()[:2]
    assert "6.1 series" in head[0] and "6.1.170" in head[1] and "6.1.176" in head[1]
    assert "Kernel axis (5.10 < 6.1 [6.1.170 … 6.1.176: 2 point releases] < sid)" in table
    assert "accepted on 6.1.170, rejected from 6.1.176" in table
    markdown = render("markdown", run, compare(run))
    assert "| 6.1 series<br><sub>6.1.170</sub> | ·<br><sub>6.1.176</sub> |" in markdown
    doc = json.loads(render("json", run, compare(run)))
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    assert [k.get("series") for k in doc["kernels"] if k["id"].startswith("6.1.")] == ["6.1", "6.1"]
    # Without the series mark (two releases named one by one, the default matrix) nothing changes.
    plain = render("table", current(), compare(current()))
    assert "series" not in plain.splitlines()[0] and all("series" not in k for k in current().to_json()["kernels"])
