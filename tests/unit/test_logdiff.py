"""Verifier-log normalization, unified diff and first divergent instruction."""

from synthetic_run import LOG_FILTER_170, LOG_FILTER_176, STATS_LOG

from compat.results.logdiff import diff_logs, first_divergence, instructions, normalize


def test_normalize_removes_ids_addresses_and_timing():
    log = (
        "0: R1=ctx(id=0,off=0,imm=0) R10=fp0\n"
        "2: (18) r1 = 0xffff888004a1c000\n"
        "5: R0_w=map_value_or_null(id=3,ref_obj_id=2,off=0,ks=4,vs=8,imm=0) map_ptr=ffff88800e1a2b00\n"
        "6: (b7) r2 = 0xffffffff\n"
        "\n"
        "verification time 1234 usec\n"
        "[compat: log truncated at 4194304 bytes]\n"
    )
    assert normalize(log) == [
        "0: R1=ctx(id=#,off=0,imm=0) R10=fp0",
        "2: (18) r1 = ADDR",
        "5: R0_w=map_value_or_null(id=#,ref_obj_id=#,off=0,ks=4,vs=8,imm=0) map_ptr=ADDR",
        "6: (b7) r2 = 0xffffffff",  # an immediate, not an address
    ]


def test_logs_that_differ_only_in_ids_and_timing_do_not_differ():
    other = LOG_FILTER_170.replace("id=0", "id=7").replace("31 usec", "99 usec")
    d = diff_logs(LOG_FILTER_170, other, "a", "b")
    assert d.diff == [] and d.divergence is None and d.note == "the instruction traces are the same"


def test_unified_diff_and_divergence():
    d = diff_logs(LOG_FILTER_170, LOG_FILTER_176, "on 6.1.170", "on 6.1.176")
    assert d.diff[:2] == ["--- on 6.1.170", "+++ on 6.1.176"]
    assert "+R2 offset is outside of the packet" in d.diff
    assert not any("verification time" in line for line in d.diff)
    div = d.divergence
    assert (div.last_insn, div.old_insn, div.new_insn) == (5, 6, None)
    assert div.describe().startswith("the new log stops at insn 5 ((61) r0 = *(u32 *)(r2 +0))")


def test_divergence_on_a_different_instruction():
    old = ["0: (b7) r0 = 0", "1: (95) exit"]
    new = ["0: (b7) r0 = 0", "1: (61) r1 = *(u32 *)(r1 +0)    ; R1_w=scalar()", "R1 invalid mem access"]
    div = first_divergence(old, new)
    assert (div.old_insn, div.new_insn, div.old, div.new) == (1, 1, "(95) exit", "(61) r1 = *(u32 *)(r1 +0)")
    assert instructions(["11: <invalid CO-RE relocation>", "x"]) == [(11, "<invalid CO-RE relocation>")]


def test_no_trace_on_one_side_is_said_in_words():
    d = diff_logs(STATS_LOG.format(insns=5, states=1, us=3), LOG_FILTER_176, "old", "new")
    assert d.divergence is None and "no instruction trace in the log of old" in d.note


def test_long_diffs_are_bounded():
    old = "\n".join(f"{i}: (b7) r1 = {i}" for i in range(5000))
    new = "\n".join(f"{i}: (b7) r2 = {i}" for i in range(5000))
    d = diff_logs(old, new, "a", "b", max_lines=100)
    assert len(d.diff) == 100 and d.left_off > 9000
