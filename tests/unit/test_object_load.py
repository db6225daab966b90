"""The object as shipped (issue 16, deliverable 1) without a guest: the agent's reading of a failed
load as declared, the wire record, the host's words, the schema and the report cells."""

from __future__ import annotations

import json

import jsonschema
import pytest
from compat_agent.checker.check import first_failure
from compat_agent.wire.messages import CheckResult, WireError

from compat.reports import markdown, table
from compat.results.classify import object_load, object_load_words
from compat.results.compare import compare
from compat.results.model import SCHEMA_FILE, KernelInfo, ObjectInfo, ProgramResult, RunResult

# libbpf 1.5's own lines for an arena map on 6.1 (as the guest captured them).
ARENA_LINES = [
    "map 'arena': failed to create: Invalid argument(-22)",
    "failed to load object 'arena_unused.o'",
]


def test_a_map_that_cannot_be_created_fails_the_load_as_declared():
    assert first_failure(-22, ARENA_LINES, {}) == {"ok": False, "stage": "map", "name": "arena", "errno": 22}


def test_a_refused_program_fails_it_before_any_map_line():
    lines = ["prog 'slow': BPF program load failed: Permission denied", "prog 'slow': failed to load: -13"]
    assert first_failure(-13, lines, {}) == {"ok": False, "stage": "program", "name": "slow", "errno": 13}


def test_an_object_failure_says_libbpf_s_line():
    lines = ["failed to find BTF for extern 'bpf_iter_num_new': -3", "failed to load object 'x.o'"]
    found = first_failure(-3, lines, {})
    assert found == {"ok": False, "stage": "object", "errno": 3, "message": lines[0]}
    assert first_failure(0, [], {}) == {"ok": True}


def _reply(record):
    return {"type": "check_result", "open": {"ok": True}, "programs": [], "object_load": record,
            "maps": [{"name": "arena", "type": "arena", "ok": False, "errno": -22},
                     {"name": "counts", "type": "hash", "ok": True, "errno": None}]}  # fmt: skip


def test_the_wire_takes_the_record_and_refuses_a_bad_one():
    CheckResult.from_json(_reply({"ok": False, "stage": "map", "name": "arena", "errno": 22}))
    CheckResult.from_json({k: v for k, v in _reply({}).items() if k != "object_load"})  # older agents
    for bad in ({"ok": "no"}, {"ok": False, "stage": "kernel"}, None):
        with pytest.raises(WireError):
            CheckResult.from_json(_reply(bad))


def test_the_host_words_the_map_with_its_type_s_release():
    said = object_load(_reply({"ok": False, "stage": "map", "name": "arena", "errno": 22}), {})
    assert said is not None and said["reason"] == "map arena (arena, Linux 6.9): EINVAL"
    assert said["maps"] == [{"name": "arena", "type": "arena", "since": "6.9", "errno": -22}]
    assert object_load_words(said) == "object does not load: map arena (arena, Linux 6.9): EINVAL"
    prog = object_load(_reply({"ok": False, "stage": "program", "name": "p", "errno": 13}), {"p": "helper x\nmore"})
    assert prog is not None and prog["reason"] == "program p: helper x"
    loads = object_load({**_reply({"ok": True}), "maps": []}, {})
    assert loads == {"loads": True} and object_load_words(loads) is None
    assert object_load({"programs": []}, {}) is None


def _run(shipped):
    r = ProgramResult(object="a.o", object_sha256="0" * 64, program="pass", section="xdp", prog_type="xdp",
                      kernel="6.1", verdict="accepted", object_load=shipped)  # fmt: skip
    k = KernelInfo(id="6.1", label="6.1", version="6.1.170")
    return RunResult(kernels=[k], objects=[ObjectInfo(object="a.o", path="a.o", programs=["pass"])], results=[r])


def test_every_format_shows_it_and_the_schema_takes_it():
    shipped = object_load(_reply({"ok": False, "stage": "map", "name": "arena", "errno": 22}), {})
    run = _run(shipped)
    doc = run.to_json()
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
    assert RunResult.from_json(doc).results[0].object_load == shipped
    words = "object does not load: map arena (arena, Linux 6.9): EINVAL"
    comparison = compare(run, None)
    assert words in table.render(run, comparison)
    assert words in markdown.render(run, comparison)
    assert "object_load" not in _run(None).to_json()["results"][0]  # absent when not known: old files unchanged


def test_a_program_that_failed_its_object_is_not_told_so_twice():
    """When a program's rejection is what failed the object, its own cell says the rejection; the
    object-level words are for its other programs, and the object has no finding of its own."""
    from types import SimpleNamespace

    from compat.results.classify import object_findings, object_load_words

    load = {"loads": False, "stage": "program", "name": "prog_a", "reason": "program prog_a: helper bpf_loop (181) …"}
    assert object_load_words(load, "prog_a") is None
    assert object_load_words(load, "prog_b") == "object does not load: program prog_a: helper bpf_loop (181) …"
    cells = [SimpleNamespace(object="o.o", kernel="5.10", program=p, object_load=load, kernel_warnings=None)
             for p in ("prog_a", "prog_b")]  # fmt: skip
    assert object_findings(cells) == []
    by_map = {"loads": False, "stage": "map", "name": "arena", "reason": "map arena (arena, Linux 6.9): EINVAL"}
    assert object_load_words(by_map, "prog_a") == object_load_words(by_map) is not None
    assert [f[2] for f in object_findings([SimpleNamespace(**{**vars(cells[0]), "object_load": by_map})])] == [
        "object_load"
    ]
