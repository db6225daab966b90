"""--privilege (issue 16, deliverable 4) without a guest: the option's row, columns and their
names, the kernel axis and baseline keys, the judge of unprivileged expectations, the wire parts,
the words of a not_permitted rejection, and the agent's capability drop in a forked child on this
(root) host. On real guests: tests/vm/test_privilege_vm.py."""

from __future__ import annotations

import errno
import json
import os

import jsonschema
import pytest
from compat_agent.checker import privilege as agent_priv
from compat_agent.wire import messages
from conftest import run_compat

from compat.errors import UserError
from compat.guest.guestmsg import MalformedReply
from compat.objects.expectations import parse_tags
from compat.reports import render
from compat.results.classify import classify
from compat.results.compare import compare, kernel_name
from compat.results.expectation import judge
from compat.results.model import SCHEMA_FILE, KernelInfo, ProgramResult, RunResult
from compat.results.privilege import CAPS, ROOT, UNPRIVILEGED, axis_kernels, column, columns
from compat.run.checker import CheckOptions
from compat.run.options import RequestContext, cache_key, privileges, recorded, request_fields
from compat.run.privileges import privilege_parts, privilege_reply

CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN = 39, 38, 12, 21


def result(kernel: str, verdict: str, privilege: str = ROOT, program: str = "p", **kw) -> ProgramResult:
    return ProgramResult(object="t.o", object_sha256="0" * 64, program=program, section="socket",
                         prog_type="socket_filter", kernel=column(kernel, privilege), verdict=verdict,
                         privilege=privilege, **kw)  # fmt: skip


def run(results: list[ProgramResult], privs=(ROOT, UNPRIVILEGED), kernels=("6.1", "6.12")) -> RunResult:
    infos = [c for i, k in enumerate(kernels) for c in columns(KernelInfo(k, k, f"{k}.5", order=i), privs)]
    return RunResult(kernels=infos, objects=[], results=results)


# -- the option ------------------------------------------------------------------------------------


def test_modes_in_order_once_and_root_alone_is_the_default():
    assert privileges(None) == () and privileges(["root"]) == () and privileges(["root", "root"]) == ()
    assert privileges(["unprivileged", "root", "caps", "root"]) == ("unprivileged", "root", "caps")
    with pytest.raises(UserError, match="--privilege 'admin': no such privilege"):  # the Python API's check
        privileges(["caps", "admin"])


def test_the_row_reaches_the_request_the_cache_key_and_the_file_only_when_given():
    given = CheckOptions(privileges=("root", "unprivileged")).values()
    assert request_fields(given, RequestContext("a.o", {}))["privileges"] == ["root", "unprivileged"]
    assert cache_key(given)["privileges"] == ["root", "unprivileged"]
    assert recorded(given, always=False) == {"privileges": ["root", "unprivileged"]}
    default = CheckOptions().values()  # without --privilege: requests, cache keys and files as before
    assert "privileges" not in request_fields(default, RequestContext("a.o", {}))
    assert "privileges" not in cache_key(default) and recorded(default, always=False) == {}
    assert messages.problem({"type": "check", "object": "a.o", "attach": True, "privileges": ["root", "caps"]},
                            "check_result") is not None  # a request is no reply  # fmt: skip


def test_an_unknown_mode_is_one_usage_line_and_exit_2(tmp_path):
    obj = tmp_path / "x.o"
    obj.write_bytes(b"\x7fELF")
    proc = run_compat("check", obj, "--kernel", "6.1", "--privilege", "admin", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("compat: error:") and "'admin'" in lines[0], lines
    assert "root" in lines[0] and "unprivileged" in lines[0] and "Traceback" not in proc.stderr


# -- columns ---------------------------------------------------------------------------------------


def test_columns_keep_roots_id_and_name_the_others():
    k = KernelInfo("6.1", "Debian 12", "6.1.192", order=3)
    cols = columns(k, ("root", "caps", "unprivileged"))
    assert [c.id for c in cols] == ["6.1", "6.1 (caps)", "6.1 (unprivileged)"]
    assert cols[0] is k and cols[1].privilege == "caps" and cols[2].label == "Debian 12 (unprivileged)"
    assert [kernel_name(c) for c in cols] == ["6.1 (6.1.192)", "6.1 (6.1.192, caps)", "6.1 (6.1.192, unprivileged)"]
    assert columns(k, ()) == [k] and column("6.1", None) == "6.1"
    assert [c.id for c in axis_kernels(cols)] == ["6.1"]
    assert [c.id for c in axis_kernels(columns(k, ("caps", "unprivileged")))] == ["6.1 (caps)"]


def test_a_rejection_under_less_privilege_is_no_backport_regression():
    """Before the axis ran along one privilege, 'accepted on 6.1, rejected on 6.1 (unprivileged)'
    read as a regression from 6.1.5 to 6.1.5."""
    results = [result("6.1", "accepted"), result("6.1", "rejected", UNPRIVILEGED, reason="verifier_rejection"),
               result("6.12", "accepted"), result("6.12", "rejected", UNPRIVILEGED, reason="verifier_rejection")]
    comp = compare(run(results))
    (axis,) = comp.programs
    assert axis.floor == "6.1" and axis.rejected_from is None and not comp.backport_regressions()
    assert comp.kernel_order == ["6.1", "6.1 (unprivileged)", "6.12", "6.12 (unprivileged)"]


def test_a_baseline_compares_each_privilege_with_its_own():
    before = run([result("6.1", "accepted"), result("6.1", "accepted", UNPRIVILEGED)], kernels=("6.1",))
    now = run([result("6.1", "accepted"), result("6.1", "rejected", UNPRIVILEGED, reason="verifier_rejection")],
              kernels=("6.1",))  # fmt: skip
    comp = compare(now, before)
    changed = {c.kernel: c.transition for c in comp.cells}
    assert changed == {"6.1": "still_accepted", "6.1 (unprivileged)": "newly_rejected"}
    only_root = run([result("6.1", "accepted")], privs=(ROOT,), kernels=("6.1",))
    assert {c.kernel: c.transition for c in compare(now, only_root).cells}["6.1 (unprivileged)"] == "added"


def test_every_format_shows_the_columns_and_json_keeps_privilege(tmp_path):
    results = [result("6.1", "accepted"), result("6.1", "accepted", CAPS),
               result("6.1", "rejected", UNPRIVILEGED, reason="not_permitted", message="program type x ...")]
    doc = run(results, privs=(ROOT, CAPS, UNPRIVILEGED), kernels=("6.1",))
    comp = compare(doc)
    assert "6.1 (caps)" in render("markdown", doc, comp) and "6.1 (6.1.5, unprivileged)" in render("table", doc, comp)
    data = json.loads(render("json", doc, comp))
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    assert [r["privilege"] for r in data["results"]] == ["root", "caps", "unprivileged"]
    assert [k.get("privilege") for k in data["kernels"]] == [None, "caps", "unprivileged"]
    again = RunResult.from_json(data)
    assert again.cell("t.o", "p", "6.1 (caps)").privilege == "caps"
    for fmt in ("junit", "sarif", "github", "csv"):  # the column's name, or its id
        out = render(fmt, doc, comp)
        assert "6.1 (6.1.5, unprivileged)" in out or "6.1 (unprivileged)" in out, fmt


# -- expectations ----------------------------------------------------------------------------------

LEAK = ["comment:test_expect_success", "comment:test_expect_failure_unpriv",
        "comment:test_expect_msg_unpriv=0=leaks addr into map"]  # fmt: skip


def test_unprivileged_columns_are_judged_against_the_unpriv_mode():
    spec = parse_tags("p", LEAK).to_json()
    root = judge(spec, result("6.1", "accepted"))
    assert root is not None and root["met"] is True and root["unpriv"]["met"] is None
    rejected = result("6.1", "rejected", UNPRIVILEGED, log="0: R0 leaks addr into map\n", log_level=1)
    unpriv = judge(spec, rejected)
    assert unpriv is not None and unpriv["met"] is True and unpriv["expected"] == "rejected"
    assert unpriv["mode"] == "unprivileged"
    wrong = judge(spec, result("6.1", "accepted", UNPRIVILEGED))
    assert wrong is not None and wrong["met"] is False and "expected rejected, accepted" in wrong["why"]
    caps = judge(spec, result("6.1", "accepted", CAPS))
    assert caps is not None and caps["met"] is None and "caps" in caps["why"]


def test_unpriv_defaults_to_priv_and_priv_only_tests_are_not_judged_unprivileged():
    both = parse_tags("p", ["comment:test_expect_failure", "comment:test_expect_success_unpriv"]).to_json()
    assert judge(both, result("6.1", "accepted", UNPRIVILEGED))["met"] is True  # type: ignore[index]
    # An explicit unprivileged mode without its own verdict takes the privileged one (test_loader).
    inherited = parse_tags("p", ["comment:test_expect_failure", "comment:test_expect_msg_unpriv=0=x"]).to_json()
    got = judge(inherited, result("6.1", "rejected", UNPRIVILEGED, log="x", log_level=1))
    assert got is not None and got["expected"] == "rejected" and got["met"] is True
    priv_only = parse_tags("p", ["comment:test_expect_failure"]).to_json()
    got = judge(priv_only, result("6.1", "rejected", UNPRIVILEGED))
    assert got is not None and got["met"] is None and "no unprivileged mode" in got["why"]


# -- the wire --------------------------------------------------------------------------------------

OPEN = {"ok": True, "errno": None, "message": None, "libbpf_log": ""}


def check_result(**kw) -> dict:
    return {"type": "check_result", "open": dict(OPEN), "programs": [], **kw}


def test_the_other_modes_replies_are_validated_and_found_by_mode():
    refused = {"type": "error", "error": "--privilege unprivileged: ...", "code": "privilege_unavailable",
               "privilege": "unprivileged"}  # fmt: skip
    reply = check_result(privileges={"caps": check_result(privilege="caps"), "unprivileged": refused})
    assert messages.problem(reply, "check_result") is None
    assert len(privilege_parts(reply, "6.1")) == 2
    assert privilege_reply(reply, ROOT) is reply and privilege_reply(reply, UNPRIVILEGED) is refused
    assert privilege_reply(reply, CAPS)["privilege"] == "caps"  # type: ignore[index]
    assert privilege_reply(check_result(privilege="caps"), ROOT) is None
    for bad in ({"admin": check_result()}, {"caps": {"type": "check_result"}}, {"caps": "x"}, ["caps"]):
        with pytest.raises(MalformedReply):
            privilege_parts(check_result(privileges=bad), "6.1")


def test_not_permitted_is_worded_from_the_fact_and_the_type():
    program = {"program": "p", "prog_type": "kprobe", "verdict": "rejected", "stage": "load", "errno": 1,
               "facts": [{"code": "not_permitted", "privilege": "unprivileged"}]}  # fmt: skip
    c = classify(program, {}, None, {})
    assert c.reason == "not_permitted"
    assert "program type kprobe" in c.message and "CAP_PERFMON" in c.message and "--privilege unprivileged" in c.message
    program["facts"] = [{"code": "not_permitted", "privilege": "caps", "map": "socks", "map_type": "sockmap"}]
    assert "map 'socks' (sockmap)" in classify(program, {}, None, {}).message
    program.update(prog_type="tracing", facts=[{"code": "not_permitted", "privilege": "caps",
                                                "target": "ext4_file_read_iter", "module": "ext4"}])  # fmt: skip
    said = classify(program, {}, None, {}).message
    assert "attach target ext4_file_read_iter is in module ext4" in said and "CAP_SYS_ADMIN" in said
    program["facts"][0]["privilege"] = "unprivileged"  # the type fails first
    assert "program type tracing cannot be loaded" in classify(program, {}, None, {}).message


def test_the_agent_says_which_rejections_are_eperm_for_the_mode():
    reply = {"maps": [{"name": "m", "type": "lru_hash", "ok": False, "errno": errno.EPERM}],
             "programs": [{"verdict": "rejected", "errno": errno.EPERM},
                          {"verdict": "rejected", "errno": errno.EINVAL, "facts": [{"code": "map_create_failed",
                                                                                   "map": "m", "detail": None}]},
                          {"verdict": "rejected", "errno": errno.EACCES}, {"verdict": "accepted"}]}  # fmt: skip
    agent_priv.add_permission_facts(reply, UNPRIVILEGED)
    facts = [p.get("facts", [None])[0] for p in reply["programs"]]
    assert facts[0] == {"code": "not_permitted", "privilege": "unprivileged"}
    assert facts[1] == {"code": "not_permitted", "privilege": "unprivileged", "map": "m", "map_type": "lru_hash"}
    assert facts[2] is None and facts[3] is None


# -- the agent's capability drop (a forked child of this root process) --------------------------------


def _capabilities() -> dict:
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].strip(), 16) for k in ("CapEff", "CapPrm")} | {"uid": os.getuid()}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the agent drops capabilities it holds")
def test_a_child_keeps_only_the_modes_capabilities_and_the_agent_keeps_all():
    before = _capabilities()
    caps = agent_priv._in_child(CAPS, _capabilities)
    assert caps["CapEff"] == caps["CapPrm"] == (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN)
    assert not caps["CapEff"] & (1 << CAP_SYS_ADMIN) and caps["uid"] == 0
    none = agent_priv._in_child(UNPRIVILEGED, _capabilities)
    assert none["CapEff"] == none["CapPrm"] == 0
    assert _capabilities() == before  # the agent itself never loses one
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        agent_priv._in_child(CAPS, lambda: {"x": 1 // 0})
    assert agent_priv.run_as(ROOT, lambda: {"root": True}) == {"root": True}


def test_a_kernel_that_refuses_the_setting_makes_the_mode_unavailable(monkeypatch):
    """A sysctl that cannot be set to 0 (as kernel.unprivileged_bpf_disabled=1 cannot): a read-only
    sysctl of this host's kernel, which refuses root's write too, stands in for it."""
    monkeypatch.setattr(agent_priv, "UNPRIV_SYSCTL", "/proc/sys/fs/file-nr")  # "N 0 MAX", read-only
    with pytest.raises(agent_priv.Unavailable, match=r"the kernel refuses kernel\.unprivileged_bpf_disabled=0: it is"):
        agent_priv.run_as(UNPRIVILEGED, lambda: {})
    monkeypatch.setattr(agent_priv, "UNPRIV_SYSCTL", "/proc/sys/no/such")
    with pytest.raises(agent_priv.Unavailable, match="cannot be read"):
        agent_priv.run_as(UNPRIVILEGED, lambda: {})
    reply = agent_priv.unavailable_reply(UNPRIVILEGED, "why", 7)
    assert messages.problem(reply, "error") is None and reply["code"] == agent_priv.UNAVAILABLE


def test_a_bisection_follows_one_privileges_columns_by_release():
    """Before, `compat bisect --privilege unprivileged` found no verdict on any release: its
    results named the columns ('6.12.43 (unprivileged)'), not the releases it asked for."""
    from compat.run.bisect import one_privilege

    doc = run([result("6.1", "accepted"), result("6.1", "rejected", UNPRIVILEGED)], kernels=("6.1",))
    kernels, results = one_privilege(doc, UNPRIVILEGED)
    assert [k.id for k in kernels] == ["6.1"] and [(r.kernel, r.verdict) for r in results] == [("6.1", "rejected")]
    kernels, results = one_privilege(doc, ROOT)
    assert [k.id for k in kernels] == ["6.1"] and [(r.kernel, r.verdict) for r in results] == [("6.1", "accepted")]


def test_the_agent_finds_the_module_whose_btf_names_a_target(tmp_path):
    (tmp_path / "vmlinux").write_bytes(b"\0vfs_read\0")
    (tmp_path / "ext4").write_bytes(b"\0ext4_file_read_iter\0ext4_x\0")
    assert agent_priv._module_defining("ext4_file_read_iter", str(tmp_path)) == "ext4"
    assert agent_priv._module_defining("ext4_file", str(tmp_path)) is None  # whole names only
    assert agent_priv._module_defining("vfs_read", str(tmp_path)) is None  # vmlinux is not a module
    assert agent_priv._module_defining("x", str(tmp_path / "none")) is None
