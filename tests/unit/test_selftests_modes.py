"""compat selftests --privilege and --arch without a VM: outcomes per release and privilege (a
change or a stale expectation stays within one mode), the reports name the mode, the JSON keeps
it; the arm64 build's pieces (its folder, its target, the BTF read out of an arm64 Image); bad
--privilege/--arch: one line, exit 2. The sweeps on real guests are in
tests/vm/test_selftests_modes_vm.py."""

from __future__ import annotations

import json
import struct

from conftest import run_compat

from compat.arch import ARCHES
from compat.objects.selftests import MIN_KERNEL_BTF, _recipe, btf_blob, default_dest
from compat.reports.selftests import render
from compat.results.model import ObjectInfo, ProgramResult, RunResult
from compat.results.privilege import ROOT, UNPRIVILEGED, column
from compat.run.selftests import BROKEN_LATER, SweepResult, outcomes_of, stales_of, transitions

RELEASES = ["6.12.43", "6.12.118"]
MODES = (ROOT, UNPRIVILEGED)


def result(release: str, privilege: str, verdict: str, met: bool | None) -> ProgramResult:
    why = None if met else "expected rejected, accepted"
    return ProgramResult(object="t.o", object_sha256="0" * 64, program="p", section="socket",
                         prog_type="socket_filter", kernel=column(release, privilege), verdict=verdict,
                         privilege=privilege, expectation={"expected": "rejected", "met": met, "why": why})  # fmt: skip


def results() -> list[ProgramResult]:
    """Root: met on both releases. Unprivileged: met on 6.12.43, not met on 6.12.118."""
    return [result("6.12.118", UNPRIVILEGED, "accepted", False), result("6.12.43", ROOT, "rejected", True),
            result("6.12.118", ROOT, "rejected", True), result("6.12.43", UNPRIVILEGED, "rejected", True)]  # fmt: skip


def test_outcomes_run_along_one_privilege():
    """Before: the unprivileged columns ('6.12.118 (unprivileged)') were no release, and dropped."""
    outs = outcomes_of(results(), RELEASES, MODES)[("t.o", "p")]
    assert [(o.version, o.privilege, o.met) for o in outs] == [
        ("6.12.43", ROOT, True), ("6.12.118", ROOT, True),
        ("6.12.43", UNPRIVILEGED, True), ("6.12.118", UNPRIVILEGED, False)]  # fmt: skip
    # root's 6.12.118 (met) next to unprivileged's 6.12.43 (met) is no change; the real one is within unprivileged
    flips = transitions(outs)
    assert [(a.version, b.version, b.privilege) for a, b in flips] == [("6.12.43", "6.12.118", UNPRIVILEGED)]
    (stale,) = stales_of(("t.o", "p"), outs)
    assert stale.kind == BROKEN_LATER and stale.privilege == UNPRIVILEGED
    # without --privilege the root columns alone, as before
    assert [o.version for o in outcomes_of(results(), RELEASES)[("t.o", "p")]] == RELEASES


def sweep_result() -> SweepResult:
    rs = results()
    outs = outcomes_of(rs, RELEASES, MODES)
    run = RunResult(kernels=[], objects=[ObjectInfo(object="t.o", path="/x/t.o")], results=rs)
    stale = [s for key, o in outs.items() for s in stales_of(key, o)]
    return SweepResult("6.12", "linux-source-6.12=6.12.118-1", RELEASES, run, outs, [], stale, {}, privileges=MODES)


def test_counts_and_reports_per_release_and_mode():
    res = sweep_result()
    assert res.counts("6.12.118", ROOT)["met"] == 1 and res.counts("6.12.118", UNPRIVILEGED)["not_met"] == 1
    assert res.counts("6.12.118") == {"met": 1, "not_met": 1, "not_judged": 0}  # every mode
    assert [o.privilege for _, o in res.not_met("6.12.118")] == [UNPRIVILEGED]
    table = render("table", res)
    assert "6.12.118: 1 / 0 / 0" in table and "6.12.118 (unprivileged): 0 / 1 / 0" in table
    assert "checked under root, unprivileged" in table and "t.o:p (unprivileged): met up to" in table
    markdown = render("markdown", res)
    assert "| 6.12.118 (unprivileged) | 0 | 1 | 0 |" in markdown and "| 6.12.43 | 1 | 0 | 0 |" in markdown
    doc = json.loads(render("json", res))
    assert doc["privileges"] == ["root", "unprivileged"]
    assert [(r["version"], r["privilege"], r["not_met"]) for r in doc["per_release"]] == [
        ("6.12.43", "root", 0), ("6.12.43", "unprivileged", 0), ("6.12.118", "root", 0),
        ("6.12.118", "unprivileged", 1)]  # fmt: skip
    assert doc["per_release"][3]["failing"][0]["privilege"] == "unprivileged"
    assert doc["stale"][0]["privilege"] == "unprivileged"


def test_one_mode_reads_as_before():
    rs = [r for r in results() if r.privilege == ROOT]
    outs = outcomes_of(rs, RELEASES)
    run = RunResult(kernels=[], objects=[], results=rs)
    res = SweepResult("6.12", "src", RELEASES, run, outs, [], [], {})
    table = render("table", res)
    assert "6.12.118: 1 / 0 / 0" in table and "(root)" not in table and "checked under" not in table


# -- arm64 ----------------------------------------------------------------------------------------


def test_arm64_builds_go_to_their_own_folder_for_arm64s_target(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPAT_CACHE", str(tmp_path / "c"))
    assert default_dest().name == "selftests" and default_dest("6.1").name == "selftests-6.1"
    assert default_dest("6.12", "arm64").name == "selftests-arm64"
    assert default_dest("6.1", "arm64").name == "selftests-6.1-arm64"
    src = tmp_path / "src"
    (src / "tools/testing/selftests/bpf").mkdir(parents=True)
    (src / "tools/testing/selftests/bpf/Makefile").write_text("progs/x.c-CFLAGS := -DX\n")
    assert "-D__TARGET_ARCH_x86" in _recipe(src, tmp_path, "clang").flags
    arm = _recipe(src, tmp_path, "clang", "arm64")
    assert "-D__TARGET_ARCH_arm64" in arm.flags and "-D__TARGET_ARCH_x86" not in arm.flags
    assert {name: a.srcarch for name, a in ARCHES.items()} == {"amd64": "x86", "arm64": "arm64"}


def test_the_kernels_btf_is_found_in_an_image_without_sections():
    strings = b"\0" + b"x" * (MIN_KERNEL_BTF + 10)
    types = b"\1" * 64

    def btf(types: bytes, strings: bytes) -> bytes:
        return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings)) + types + strings

    small = btf(types, b"\0abc\0")  # a module's (or a stray) BTF: too small for a kernel's
    kernel = btf(types, strings)
    image = b"MZ" + b"\0" * 100 + small + b"\xff" * 50 + kernel + b"tail"
    assert btf_blob(image) == kernel
    assert btf_blob(image[: -len("tail") - 10]) is None  # cut short: no whole blob
    assert btf_blob(b"no btf here") is None


def test_bad_privilege_or_arch_is_one_line_exit_2():
    for args, word in ((("--privilege", "admin"), "'admin'"), (("--arch", "sparc"), "sparc")):
        proc = run_compat("selftests", "--series", "6.12", *args, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("compat: error:"), proc.stderr
        assert word in lines[0] and "Traceback" not in proc.stderr
