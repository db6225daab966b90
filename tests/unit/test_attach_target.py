"""--attach-target: programs whose section names a placeholder target (SEC("fentry/dummy_fn"),
which their loader points at the function of the moment) are loaded and attached against the
target the option names, on a real kernel."""

from __future__ import annotations

from compat_agent.elf.sections import first_match

from compat.kernels.modsyms import retargeted_section


def test_the_first_rule_matching_a_name_or_section_gives_the_target():
    rules = [("fe", "nosuch_fn"), ("*/dummy_fn", "vfs_read")]
    assert first_match("fe", "fentry/dummy_fn", rules) == "nosuch_fn"
    assert first_match("kp", "kprobe/dummy_fn", rules) == "vfs_read"
    assert first_match("other", "xdp", rules) is None
    # The host loads the module that defines the target the program will have.
    assert retargeted_section("kp", "kprobe/dummy_fn", tuple(rules)) == "kprobe/vfs_read"
    assert retargeted_section("x", "tp/syscalls/sys_enter_read", ()) == "tp/syscalls/sys_enter_read"

