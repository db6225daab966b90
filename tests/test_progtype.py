"""Programs whose sections name no program type: the context each program takes (host only),
the type compat chooses for it, and --program-type on a real kernel (the default run's verdicts
of programs/untyped_sections.bpf.c are in programs/expected.yaml, checked by test_check.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from compat_agent.elf.analysis import analyze_elf, elf_from_json, elf_to_json
from compat_agent.elf.sections import CONTEXT, OPTION, choose, parse_rules


def test_each_program_s_context_type_is_read_from_btf(built_programs):
    info = analyze_elf(built_programs["untyped_sections"].read_bytes())
    sk_buff = ["__sk_buff"]
    want = {"tc_mark": sk_buff, "xdp_first_byte": ["xdp_md"], "lwt_push": sk_buff, "cgroup_only": sk_buff}
    assert info.contexts == want
    assert elf_from_json(json.loads(json.dumps(elf_to_json(info)))).contexts == info.contexts
    # Typed sections need no guess, but their context is read all the same.
    assert analyze_elf(built_programs["mixed_verdicts"].read_bytes()).contexts["checked_read"] == ["xdp_md"]


def test_the_type_comes_from_the_option_then_the_context_and_never_replaces_a_section_s():
    sk_buff = ["__sk_buff"]
    assert choose("f", "encap", "unspec", sk_buff, []) == choose("f", "encap", "ext", sk_buff, [])
    guess = choose("f", "encap", "unspec", sk_buff, [])
    assert (guess.section, guess.source, guess.context) == ("tc", CONTEXT, "__sk_buff")
    assert choose("f", "kprobe/x", "kprobe", ["pt_regs"], []) is None  # the section said it
    assert choose("f", "untyped", "unspec", None, []) is None  # nothing to tell it by
    typedef = choose("f", "probe", "unspec", ["bpf_user_pt_regs_t", "pt_regs"], [])
    assert typedef.section == "kprobe"
    # __sk_buff fits many types: a helper only some of them may call narrows it, on every kernel alike.
    assert choose("f", "encap", "unspec", sk_buff, [], helpers=[1, 73]).section == "lwt_xmit"
    assert choose("f", "verdict", "unspec", sk_buff, [], helpers=[52]).section == "sk_skb"
    assert choose("f", "acct", "unspec", sk_buff, [], helpers=[128]).section == "cgroup_skb/ingress"
    assert choose("f", "fast", "unspec", ["xdp_md"], [], helpers=[52]).section == "xdp"  # only for __sk_buff
    rules = parse_rules([["encap*", "lwt_xmit"], ["*", "xdp"], ["bad"], "x", [1, 2]])
    assert rules == [("encap*", "lwt_xmit"), ("*", "xdp")]
    by_section = choose("f", "encap_gre", "unspec", sk_buff, rules)
    assert (by_section.section, by_section.source) == ("lwt_xmit", OPTION)
    assert choose("g", "tc", "sched_cls", sk_buff, rules).section == "xdp"  # the user's word goes for any program


@pytest.mark.vm
@pytest.mark.network
def test_program_type_option_checks_a_program_as_its_loader_does(built_programs):
    proc = subprocess.run(
        [sys.executable, "-m", "compat", "check", str(built_programs["untyped_sections"]), "--kernel", "6.1",
         "--program-type", "lwt_*=lwt_in", "--program-type", "no_context=xdp",
         "--format", "json", "--output", "-"],
        capture_output=True, text=True, timeout=3000, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["options"]["program_types"] == ["lwt_*=lwt_in", "no_context=xdp"]
    cells = {r["program"]: r for r in doc["results"]}
    lwt = cells["lwt_push"]  # the option wins over the guess (lwt_xmit)
    assert (lwt["verdict"], lwt["prog_type"], lwt["prog_type_from"]) == ("accepted", "lwt_in", "option"), lwt
    assert "[compat: program loaded as lwt_in" in lwt["libbpf_log"]
    assert (cells["no_context"]["verdict"], cells["no_context"]["prog_type"]) == ("accepted", "xdp")
    guessed = cells["xdp_first_byte"]
    assert (guessed["prog_type"], guessed["prog_type_from"]) == ("xdp", "context")
    assert "guessed from its context argument (struct xdp_md *)" in guessed["libbpf_log"]
    # A section name libbpf does not know is a usage error before any guest boots, not a verdict.
    typo = subprocess.run(
        [sys.executable, "-m", "compat", "check", str(built_programs["untyped_sections"]), "--kernel", "6.1",
         "--program-type", "tc_mark=tc_typo"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "tc_typo" in typo.stderr, typo.stderr
