"""--attach-target: programs whose section names a placeholder target (SEC("fentry/dummy_fn"),
which their loader points at the function of the moment) are loaded and attached against the
target the option names, on a real kernel."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat


def check(obj, *extra):
    proc = run_compat("check", str(obj), "--kernel", "6.1", "--no-cache", *extra, "--format", "json", "--output", "-",
                      timeout=3000)  # fmt: skip
    doc = json.loads(proc.stdout) if proc.stdout else {}
    return proc, {r["program"]: r for r in doc.get("results", [])}, doc


@pytest.mark.vm
@pytest.mark.network
def test_a_placeholder_target_is_replaced_as_the_loader_does(placeholders):
    _, plain, _ = check(placeholders)
    assert (plain["fe"]["verdict"], plain["fe"]["reason"]) == ("rejected", "missing_attach_target")
    assert "dummy_fn does not exist" in plain["fe"]["message"]
    assert plain["kp"]["verdict"] == "accepted" and plain["kp"]["attach"]["status"] == "failed"

    assert plain["up"]["attach"]["reason"] == "no uprobe target"

    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6:getpid"  # the guest's own libc
    _, real, doc = check(placeholders, "--attach-target", "*/dummy_fn=vfs_read", "--attach-target", f"up={libc}")
    assert doc["options"]["attach_targets"] == ["*/dummy_fn=vfs_read", f"up={libc}"]
    assert real["up"]["attach"] == {"status": "ok", "errno": None, "reason": f"attached to {libc}"}
    for name in ("fe", "kp"):
        r = real[name]
        assert r["verdict"] == "accepted", r["message"]
        assert r["attach"] == {"status": "ok", "errno": None, "reason": "attached to vfs_read"}
        assert "(--attach-target; its section names dummy_fn)" in r["libbpf_log"]

    _, missing, _ = check(placeholders, "--attach-target", "fe=nosuch_fn", "--attach-target", "*=vfs_read")
    r = missing["fe"]  # the first rule that matches wins
    assert (r["verdict"], r["reason"]) == ("rejected", "missing_attach_target")
    assert "attach target nosuch_fn does not exist on this kernel" in r["message"]
    assert missing["kp"]["attach"]["status"] == "ok"

    proc, _, _ = check(placeholders, "--attach-target", "fe")
    assert proc.returncode == 2 and "--attach-target 'fe': give GLOB=TARGET" in proc.stderr
