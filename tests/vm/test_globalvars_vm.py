"""--set-global: values parsed, encoded and placed in the objects that define the variable, and
the verdict a loader's configuration changes on a real kernel."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat


@pytest.mark.vm
@pytest.mark.network
def test_the_loader_s_configuration_decides_the_verdict(configured):
    def check(*extra):
        proc = run_compat("check", str(configured), "--kernel", "6.1", *extra, "--format", "json", "--output", "-",
                          timeout=3000)  # fmt: skip
        return proc, json.loads(proc.stdout) if proc.stdout else {}

    _, default = check()
    assert default["results"][0]["verdict"] == "accepted"  # the unchecked read is dead code
    _, unsafe = check("--set-global", "unsafe_mode=1")
    r = unsafe["results"][0]
    assert (r["verdict"], r["reason"]) == ("rejected", "verifier_rejection"), r
    assert "[compat: global variable 'unsafe_mode' (.rodata) set to 1 (--set-global)]" in r["libbpf_log"]
    assert unsafe["options"]["set_global"] == ["unsafe_mode=1"]
    proc, _ = check("--set-global", "unsafe_mod=1")
    assert proc.returncode == 2 and "no object defines a global variable 'unsafe_mod'" in proc.stderr
