"""The host never uses a guest reply it has not checked, and retries only infrastructure failures:
malformed replies become `error` cells, verdicts are never retried into other verdicts."""

from __future__ import annotations

import copy
import hashlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compat.cache import Cache
from compat.guest import guestmsg
from compat.guest.fleet import Outcome
from compat.guest.vm import GuestError
from compat.kernels.matrix import KernelSpec
from compat.objects.objfile import BpfObject, ObjectProgram
from compat.run.checker import Checker, CheckOptions, KernelWork


def program(**over) -> dict:
    record = {
        "program": "count_getpid", "section": "tracepoint/syscalls/sys_enter_getpid", "prog_type": "tracepoint",
        "attach_type": None, "attach_target": "syscalls/sys_enter_getpid", "verdict": "accepted", "stage": None,
        "errno": None, "message": None, "libbpf_log": "", "log": "processed 12 insns", "log_level": 4,
        "stats": {"insns_processed": 12, "states_total": 1, "states_peak": 1, "verification_time_us": 30,
                  "stack_depth": [8], "insn_cnt": 12},
        "helpers": [14, 1], "kfuncs": [], "load_ms": 9.5,
        "attach": {"status": "ok", "errno": None, "reason": "attached"},
    }  # fmt: skip
    record.update(over)
    return record


def check_result(**over) -> dict:
    reply = {
        "type": "check_result", "id": 3, "object": "counter.o", "duration_ms": 40.1, "libbpf": "1.5",
        "externs": [{"name": "bpf_iter_num_new", "kind": "kfunc", "weak": False}],
        "maps": [{"name": "counts", "type": "hash", "ok": True, "errno": None}],
        "open": {"ok": True, "errno": None, "message": None, "libbpf_log": ""},
        "programs": [program()], "timing": {"anything": ["extra fields are allowed"]},
    }  # fmt: skip
    reply.update(over)
    return reply


def probe_result() -> dict:
    return {
        "type": "probe_result", "id": 1, "duration_ms": 100.0,
        "prog_types": {"xdp": True, "lsm": False}, "map_types": {"hash": True},
        "helpers": {"xdp": [1, 2, 3]}, "helper_names": {"1": "map_lookup_elem"},
        "kfuncs_btf": ["bpf_iter_num_new"], "kfuncs_source": "decl_tag",
        "kfunc_allowed": {"bpf_iter_num_new": {"xdp": True}}, "timings": {"types_ms": 3.5, "helper_probes": 9},
    }  # fmt: skip


def test_well_formed_replies_pass():
    for kind, reply in (("check_result", check_result()), ("probe_result", probe_result())):
        assert guestmsg.validate(reply, kind) is reply
    hello = {"type": "hello", "release": "6.12.0-1-amd64", "btf": True, "libbpf": "1.5", "uptime": 1.2}
    assert guestmsg.problem(hello, "hello") is None


BAD_CHECK_RESULTS = {
    "not an object": ["check_result"],
    "missing programs": {k: v for k, v in check_result().items() if k != "programs"},
    "missing open": {k: v for k, v in check_result().items() if k != "open"},
    "programs not a list": check_result(programs={"count_getpid": program()}),
    "program not an object": check_result(programs=["count_getpid"]),
    "program name not a string": check_result(programs=[program(program=7)]),
    "no verdict": check_result(programs=[{k: v for k, v in program().items() if k != "verdict"}]),
    "unknown verdict": check_result(programs=[program(verdict="error")]),
    "bool as errno": check_result(programs=[program(errno=True)]),
    "float as errno": check_result(programs=[program(errno=1.0)]),
    "huge int": check_result(programs=[program(errno=1 << 70)]),
    "nan time": check_result(programs=[program(load_ms=math.nan)]),
    "infinite time": check_result(duration_ms=math.inf),
    "log not a string": check_result(programs=[program(log=["a", "b"])]),
    "lone surrogate": check_result(programs=[program(message="bad \udc80 text")]),
    "name too long": check_result(programs=[program(section="s" * (guestmsg.NAME_MAX + 1))]),
    "helper ids not ints": check_result(programs=[program(helpers=["bpf_loop"])]),
    "too many helpers": check_result(programs=[program(helpers=[1] * (guestmsg.ITEMS_MAX + 1))]),
    "stats not an object": check_result(programs=[program(stats=[1, 2])]),
    "stack depth strings": check_result(programs=[program(stats={"stack_depth": ["8"]})]),
    "attach without status": check_result(programs=[program(attach={"errno": 1})]),
    "open.ok not a bool": check_result(open={"ok": "yes"}),
    "extern weak not a bool": check_result(externs=[{"name": "x", "kind": "kfunc", "weak": "no"}]),
    "map name missing": check_result(maps=[{"type": "hash"}]),
    "wrong type": check_result(type="probe_result"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECK_RESULTS))
def test_malformed_check_results_are_refused_with_where_and_why(case):
    with pytest.raises(guestmsg.MalformedReply) as e:
        guestmsg.validate(BAD_CHECK_RESULTS[case], "check_result", "6.12", "console tail")
    assert isinstance(e.value, GuestError) and e.value.console_tail == "console tail"
    text = str(e.value)
    assert text.startswith("6.12: malformed reply (check_result): ") and "\n" not in text and len(text) < 400


def test_malformed_probe_results_are_refused():
    for key, value in (("prog_types", {"xdp": "yes"}), ("helpers", {"xdp": "1,2"}), ("helper_names", {"x1": "a"}),
                       ("kfuncs_btf", "bpf_iter_num_new"), ("kfunc_allowed", {"k": {"xdp": 1}})):  # fmt: skip
        reply = probe_result()
        reply[key] = value
        assert guestmsg.problem(reply, "probe_result"), key
    reply = probe_result()
    del reply["helpers"]
    assert guestmsg.problem(reply, "probe_result") == "helpers: missing"


def test_agent_error_text_is_bounded_and_one_line():
    assert guestmsg.describe_error({"type": "error", "error": "check failed:\n" + "x" * 10000}).count("\n") == 0
    assert len(guestmsg.describe_error({"type": "error", "error": "y" * 10000})) == 300
    assert guestmsg.describe_error({"type": "error", "error": ["not", "text"]}) == "unexpected reply 'error'"
    assert guestmsg.describe_error({"type": "bye"}) == "bye"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON, kind=st.sampled_from(sorted(guestmsg.KINDS)))
def test_any_json_is_either_accepted_or_refused_in_one_line(value, kind):
    found = guestmsg.problem(value, kind)
    assert found is None or (isinstance(found, str) and "\n" not in found[:400])


def _mutations(reply: dict):
    """Every field of a good reply replaced, in turn, by values of other types."""
    others = [None, True, -1, 1.5, "x", [], {}, [None], {"a": None}]

    def walk(node, path):
        if isinstance(node, dict):
            for k in list(node):
                yield [*path, k]
                yield from walk(node[k], [*path, k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield [*path, i]
                yield from walk(v, [*path, i])

    for path in walk(reply, []):
        for other in others:
            mutated = copy.deepcopy(reply)
            node = mutated
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = other
            yield mutated


def test_every_accepted_mutation_is_still_safe_to_use():
    """A mutated reply the validator lets through must still turn into results without an exception."""
    checker, obj = _checker(), _object()
    for reply in _mutations(check_result()):
        if guestmsg.problem(reply, "check_result") is None:
            kw = KernelWork(replies={obj.sha256: reply})
            results = checker._results(obj, Outcome(spec=KernelSpec(id="6.12", label="6.12")), kw, {})
            json.dumps([r.__dict__ for r in results], allow_nan=False)


# -- retries: what Checker does with the replies of a (fake) guest ------------------------------------
class FakeSession:
    """A guest that answers check requests from a script: dicts are replies, exceptions are raised."""

    def __init__(self, script: list):
        self.script = list(script)
        self.requests = 0
        self.reboots = 0
        self.kernel = type("K", (), {"id": "6.12", "modules": None})()
        self.vm = type("V", (), {"console_tail": staticmethod(lambda: "[ 1.0] console")})()

    def request(self, message, payload=b"", timeout=60.0):
        self.requests += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step, b""

    def reboot(self):
        self.reboots += 1


def _object() -> BpfObject:
    data = b"\x7fELF fake object"
    programs = (ObjectProgram("count_getpid", "tracepoint/syscalls/sys_enter_getpid"),)
    return BpfObject(path=None, name="counter.o", data=data, sha256=hashlib.sha256(data).hexdigest(),
                     programs=programs)  # fmt: skip


def _checker(tmp_path=None) -> Checker:
    return Checker(Cache(tmp_path) if tmp_path else Cache(), [], CheckOptions())


def _cell(checker: Checker, session: FakeSession, obj: BpfObject):
    kw = KernelWork()
    reply = checker._check_one(session, obj, kw)
    if reply:
        kw.replies[obj.sha256] = reply
    [result] = checker._results(obj, Outcome(spec=KernelSpec(id="6.12", label="6.12")), kw, {})
    return result


@pytest.mark.parametrize("verdict", ["accepted", "rejected"])
def test_a_verdict_is_never_retried(tmp_path, verdict):
    extra = {"stage": "load", "errno": 13, "message": "R1 invalid mem access"} if verdict == "rejected" else {}
    session = FakeSession([check_result(programs=[program(verdict=verdict, **extra)]), check_result()])
    cell = _cell(_checker(tmp_path), session, _object())
    assert cell.verdict == verdict and session.requests == 1 and session.reboots == 0


def test_an_infrastructure_failure_is_retried_once_on_a_fresh_guest(tmp_path):
    session = FakeSession([GuestError("6.12: the guest stopped (QEMU status -9)"), check_result()])
    cell = _cell(_checker(tmp_path), session, _object())
    assert cell.verdict == "accepted" and session.requests == 2 and session.reboots == 1


@pytest.mark.parametrize(
    "first",
    [
        check_result(programs=[program(verdict="maybe")]),  # malformed
        {"type": "error", "error": "check failed: MemoryError"},  # the agent's own failure
        GuestError("6.12: timed out waiting for the reply to check", "compat-fault: hang"),
    ],
    ids=["malformed", "agent-error", "timeout"],
)
def test_twice_failed_object_becomes_an_error_cell_never_a_verdict(tmp_path, first):
    session = FakeSession([first, first])
    cell = _cell(_checker(tmp_path), session, _object())
    assert cell.verdict == "error" and cell.reason == "infrastructure_error"
    assert session.requests == 2 and session.reboots == 2  # each failure leaves a fresh guest behind
    assert cell.message.startswith("6.12: ")


def test_a_hello_in_another_protocol_is_an_infrastructure_error():
    # The agent of another compat (protocol 1 sent no facts and no "protocol"): refused, naming both.
    from compat_agent.wire.messages import PROTOCOL_VERSION

    hello = {"type": "hello", "release": "6.1.0-40-amd64", "btf": True}
    with pytest.raises(guestmsg.MalformedReply) as e:
        guestmsg.validate(hello, "hello", "6.1")
    assert str(e.value).startswith(f"6.1: the guest agent speaks protocol 1, this host {PROTOCOL_VERSION}")
    assert guestmsg.validate({**hello, "protocol": PROTOCOL_VERSION}, "hello") is not None


def test_facts_are_checked_against_the_fact_table():
    bad = check_result(programs=[program(verdict="rejected", facts=[{"code": "no_such_code"}])])
    with pytest.raises(guestmsg.MalformedReply, match=r"programs\[0\]\.facts\[0\]\.code: unknown fact code"):
        guestmsg.validate(bad, "check_result")
