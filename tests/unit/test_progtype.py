"""Programs whose sections name no program type: the context each program takes (host only),
the type compat chooses for it, and --program-type on a real kernel (the default run's verdicts
of programs/untyped_sections.bpf.c are in programs/expected.yaml, checked by test_check.py)."""

from __future__ import annotations

import json

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
