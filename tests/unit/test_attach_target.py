"""--attach-target: programs whose section names a placeholder target (SEC("fentry/dummy_fn"),
which their loader points at the function of the moment) are loaded and attached against the
target the option names, on a real kernel."""

from __future__ import annotations

import json

import pytest
from bpf_build import build_source
from compat_agent.elf.sections import first_match
from conftest import run_compat

from compat.kernels.modsyms import retargeted_section

PLACEHOLDERS = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("fentry/dummy_fn") int fe(unsigned long long *ctx) { return 0; }
SEC("kprobe/dummy_fn") int kp(void *ctx) { return 0; }
SEC("uprobe") int up(void *ctx) { return 0; }  /* the loader names binary and function */

char LICENSE[] SEC("license") = "GPL";
"""


def test_the_first_rule_matching_a_name_or_section_gives_the_target():
    rules = [("fe", "nosuch_fn"), ("*/dummy_fn", "vfs_read")]
    assert first_match("fe", "fentry/dummy_fn", rules) == "nosuch_fn"
    assert first_match("kp", "kprobe/dummy_fn", rules) == "vfs_read"
    assert first_match("other", "xdp", rules) is None
    # The host loads the module that defines the target the program will have.
    assert retargeted_section("kp", "kprobe/dummy_fn", tuple(rules)) == "kprobe/vfs_read"
    assert retargeted_section("x", "tp/syscalls/sys_enter_read", ()) == "tp/syscalls/sys_enter_read"


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory):
    return build_source(PLACEHOLDERS, tmp_path_factory.mktemp("targets"), "placeholders")


def check(obj, *extra):
    proc = run_compat("check", str(obj), "--kernel", "6.1", "--no-cache", *extra, "--format", "json", "--output", "-",
                      timeout=3000)  # fmt: skip
    doc = json.loads(proc.stdout) if proc.stdout else {}
    return proc, {r["program"]: r for r in doc.get("results", [])}, doc
