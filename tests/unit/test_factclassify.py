"""The classifier reads facts, not text: every case of test_classify.py again, with the texts
blanked once the facts are made (the same reason and message), and the fact table itself (it
validates the facts an untrusted guest sends).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from compat_agent.wire.facts import FACTS, check_fact, check_facts, fact
from compat_agent.wire.features import FEATURES, struct_ops_types
from compat_agent.wire.textfacts import program_facts
from compat_agent.wire.validate import WireError

import tests.unit.test_classify as cases
from compat.results import classify as factclassify
from compat.results.inventory import Inventory

AGENT_SECTION_CLAUSE = " (a section name such as tc, xdp or lwt_xmit)"  # check.py's words
CASES = [f for name, f in inspect.getmembers(cases, inspect.isfunction) if name.startswith("test_")]
CLASSIFY = cases.classify


def _blank(record: dict[str, Any]) -> dict[str, Any]:
    """The record without any text the classifier could read (facts and structured fields stay)."""
    return {**record, "libbpf_log": "", "log": ""}


def _both(program: dict, obj: dict, inventory: Inventory | None, names: dict[int, str],
          modules: Mapping[str, str] | None = None, **kw: Any):  # fmt: skip
    found = CLASSIFY(program, obj, inventory, names, modules, **kw)
    record = cases.with_facts(program, obj)
    siblings = [cases.with_facts(p, obj) for p in obj.get("programs") or []]
    # No text is read: the same facts with the texts blanked (the message stays: it is what the
    # record says when nothing else does) classify the same.
    blank = factclassify.classify(
        _blank(record), {**obj, "programs": [_blank(p) for p in siblings]}, inventory, names, modules, **kw
    )
    assert (blank.reason, blank.message) == (found.reason, found.message)
    return found


@pytest.mark.parametrize("case", CASES, ids=[f.__name__ for f in CASES])
def test_classifies_from_facts_alone(case, monkeypatch):
    monkeypatch.setattr(cases, "classify", _both)
    case()


def test_agent_wording_of_the_program_type_option():
    # The agent's own sentence (check.py): the host words it again from the agent's fact, word for word.
    words = "--program-type names section 'tcx_nope', which libbpf 1.5 does not know" + AGENT_SECTION_CLAUSE
    option = fact("unknown_type_option", section="tcx_nope", libbpf="1.5")
    r = cases.rec(prog_type="unspec", stage="prepare", message=words, facts=[option])
    assert _both(r, {}, cases.INV_510, cases.NAMES).message == words
    assert program_facts(words, "", "") == []  # the sentence itself makes no fact


def test_module_btf_comes_from_the_hosts_knowledge_not_its_note():
    program = {"prog_type": "tracing", "stage": "prepare", "errno": 3, "message": None, "log": "",
               "libbpf_log": "prog 'r': failed to find kernel BTF type ID of 'ext4_file_read_iter': -3"}  # fmt: skip
    program["facts"] = program_facts(program["message"], program["libbpf_log"], program["log"])
    c = factclassify.classify(program, {}, None, {}, {"ext4_file_read_iter": "ext4"})
    assert c.message.startswith("attach target ext4_file_read_iter is in module ext4")
    assert "module BTF: Linux 5.11 and later, CONFIG_DEBUG_INFO_BTF_MODULES" in c.message
    assert factclassify.classify(program, {}, None, {}).message == (
        "attach target ext4_file_read_iter does not exist on this kernel"
    )


def test_every_fact_textfacts_makes_is_in_the_table_and_valid():
    texts = [
        ("bad map relo against 'e' in section 'maps/e' (compat's legacy-map loader cannot load it either: x)", "", ""),
        ("", "extern (func ksym) 'k': not found in kernel or module BTFs\nmap 'm.inner': failed to create: "
         "Invalid argument(-22)\nmap 'm': failed to create inner map: -22",
         "kfunc 'w' is referenced but wasn't resolved"),
        ("", "struct_ops init_kern ops: Error in size of member name: 32 != 16(kernel)",
         "BPF_STX uses reserved fields"),
        ("", "", "func 'f' doesn't have 4-th argument\nfoo is not sleepable\nprocessed 1000001 insns\n"),
    ]  # fmt: skip
    seen = set()
    for message, libbpf_log, log in texts:
        for f in program_facts(message, libbpf_log, log, map_names=["m"]):
            check_fact(f)
            seen.add(f["code"])
    assert {"legacy_maps", "missing_extern", "kfunc_unresolved", "map_create_failed",
            "inner_map_failed", "struct_ops_mismatch", "unknown_insn", "no_argument", "not_sleepable",
            "too_complex", "verifier_error", "map_mentioned"} <= seen  # fmt: skip
    assert seen <= set(FACTS)


def test_facts_from_an_untrusted_guest_are_checked_against_the_table():
    assert fact("missing_extern", name="bpf_x", kind="func ksym") == {"code": "missing_extern", "name": "bpf_x",
                                                                       "kind": "func ksym"}  # fmt: skip
    check_fact({"code": "core_relocation_failed"})  # an optional parameter may be absent
    check_fact({"code": "no_btf", "extra": [1]})  # extra fields are ignored
    for bad, problem in (
        ({"code": "no_such_code"}, "f.code: unknown fact code 'no_such_code'"),
        ({"code": "no_argument", "func": "f", "n": True}, "f.n: expected an integer, got bool"),
        ({"code": "no_argument", "func": "f"}, "f.n: missing"),
        ({"code": "map_create_failed", "map": "\ud800", "detail": None}, "f.map: string is not valid Unicode"),
        ({"code": "too_complex", "processed": 1 << 63}, "f.processed: integer out of range"),
        (["no_btf"], "f: expected an object, got list"),
    ):
        with pytest.raises(WireError) as e:
            check_fact(bad, "f")
        assert str(e.value).startswith(problem)
    with pytest.raises(WireError, match="at most 256"):
        check_facts([{"code": "no_btf"}] * 257, "programs[0].facts")


def test_feature_table_words_the_struct_ops_types_as_before():
    assert struct_ops_types() == {  # the words of the text classifier this one replaced
        "tcp_congestion_ops": "TCP congestion control in BPF needs Linux 5.6 or later",
        "hid_bpf_ops": "HID-BPF needs Linux 6.11 or later, built with CONFIG_HID_BPF",
        "sched_ext_ops": "sched_ext needs Linux 6.12 or later, built with CONFIG_SCHED_CLASS_EXT",
        "Qdisc_ops": "BPF qdiscs need Linux 6.16 or later, built with CONFIG_NET_SCH_BPF",
    }
    assert {n: f.since for n, f in FEATURES.items() if f.kind == "map_type"} == {
        "inode_storage": "5.10", "ringbuf": "5.8", "task_storage": "5.11", "bloom_filter": "5.16",
        "user_ringbuf": "6.1", "cgrp_storage": "6.2", "arena": "6.9",
    }  # fmt: skip


def test_the_classifier_has_no_regular_expression():
    # Issue 15: the host classifies from codes; the kernel's and libbpf's text is read in the guest.
    source = Path(factclassify.__file__).read_text()
    assert "import re" not in source and "re.compile" not in source


def test_only_kernel_and_libbpf_words_make_facts():
    # Every sentence the agent writes itself (check.py, state.py, legacy.py): none makes a fact;
    # the agent sends those facts directly. Only libbpf's words it quotes do.
    texts = (
        "not verified: its struct_ops map 'm' could not be created (calls a kfunc this kernel does not have)\n"
        "not verified: its struct_ops map 'm' cannot be created without program 'q', which was rejected\n"
        "libbpf did not load this program (a struct_ops program no struct_ops map uses)\n"
        "--program-type names section 'x', which libbpf 1.5 does not know (a section name such as tc)\n"
        "(compat's legacy-map loader cannot load it either: it also has CO-RE relocations)",
        "[compat: bpf_program__set_attach_target: failed to find kernel BTF type ID of 'f': -3]\n"
        "calls kfunc 'k', which this kernel does not have (a __weak extern: guard the call with bpf_ksym_exists())\n"
        "calls a kfunc this kernel does not have (weak extern 'k'): guard the call with bpf_ksym_exists()",
        "",
    )
    facts = program_facts(*texts)
    assert all(FACTS[f["code"]].origin != "agent" for f in facts)
    assert facts == [fact("attach_target_missing", target="f")]  # libbpf's words, quoted in the agent's line
    assert "agent_prose" not in inspect.signature(program_facts).parameters
    source = Path(inspect.getfile(program_facts)).read_text()
    assert "AGENT" not in source and "does not have" not in source


def test_e2big_without_the_words_quotes_the_first_processed_count():
    # E2BIG alone (no complexity words): the count is the texts' first "processed N insns", as before.
    r = cases.rec(errno=7, message="processed 5 insns", log="R0 !read_ok\nprocessed 9 insns (limit 1000000)\n")
    c = _both(r, {}, cases.INV_510, cases.NAMES)
    assert c.message == "the verifier gave up: the program is too complex (processed 5 insns)"
