"""The architecture in results: kernels[].arch in the result file (amd64 when absent), the result
cache's key per architecture (amd64's unchanged), the agent's syscall numbers per guest machine."""

from __future__ import annotations

import json

from compat_agent.attach.perfevent import sys_perf_event_open

from compat.cache import Cache, sha256_json
from compat.results.model import KernelInfo, RunResult
from compat.run.resultcache import SCHEMA, ResultCache


def test_kernel_arch_in_result_file():
    run = RunResult(
        kernels=[KernelInfo(id="6.12", label="6.12", version="6.12.43"),
                 KernelInfo(id="6.12-arm64", label="6.12 arm64", version="6.12.43", arch="arm64")],
        objects=[], results=[],
    )  # fmt: skip
    doc = json.loads(run.dumps())
    assert [k["arch"] for k in doc["kernels"]] == ["amd64", "arm64"]
    # A file from before arm64 has no arch: its kernels are amd64.
    for k in doc["kernels"]:
        k.pop("arch")
    assert [k.arch for k in RunResult.from_json(doc).kernels] == ["amd64", "amd64"]


def test_result_cache_key_per_arch(tmp_path):
    from compat_agent import AGENT_VERSION
    from compat_agent.wire.framing import PROTOCOL_VERSION

    rc = ResultCache(Cache(tmp_path), "image-amd64", {"attach": True}, images={"arm64": "image-arm64"})
    # amd64's key is the formula of every release before arm64: its cached results stay valid.
    assert rc.key("sha", "a.o", "kernel") == sha256_json({
        "schema": SCHEMA, "object": "sha", "name": "a.o", "kernel": "kernel", "image": "image-amd64",
        "agent": AGENT_VERSION, "protocol": PROTOCOL_VERSION, "options": {"attach": True},
    })  # fmt: skip
    assert rc.key("sha", "a.o", "kernel", "arm64") != rc.key("sha", "a.o", "kernel")
    assert rc.key("sha", "a.o", "kernel", "arm64") == sha256_json({
        "schema": SCHEMA, "object": "sha", "name": "a.o", "kernel": "kernel", "image": "image-arm64",
        "agent": AGENT_VERSION, "protocol": PROTOCOL_VERSION, "options": {"attach": True}, "arch": "arm64",
    })  # fmt: skip


def test_perf_event_open_number_per_machine():
    # 298 is x86-64's; on arm64 it is another syscall (the generic table says 241).
    assert sys_perf_event_open("x86_64") == 298
    assert sys_perf_event_open("aarch64") == 241


def _mixed() -> RunResult:
    """6.1 and 6.12 on amd64 and arm64 (matrix order interleaved); a program that arm64's 6.1
    rejects and every other kernel accepts."""
    from compat.results.model import ObjectInfo, ProgramResult

    specs = [("6.12", "6.12.43", "amd64"), ("6.12-arm64", "6.12.43", "arm64"), ("6.1", "6.1.176", "amd64"),
             ("6.1-arm64", "6.1.176", "arm64")]  # fmt: skip
    kernels = [KernelInfo(id=i, label=i, version=v, arch=a, order=n) for n, (i, v, a) in enumerate(specs)]
    results = [
        ProgramResult(object="a.o", object_sha256="0" * 64, program="p", section="fentry/f", prog_type="tracing",
                      kernel=k.id, verdict="rejected" if k.id == "6.1-arm64" else "accepted",
                      reason="verifier_rejection" if k.id == "6.1-arm64" else None)
        for k in kernels
    ]  # fmt: skip
    return RunResult(kernels=kernels, objects=[ObjectInfo("a.o", "a.o")], results=results)


def test_mixed_matrix_has_a_kernel_axis_per_arch():
    from compat.results.compare import compare

    comp = compare(_mixed())
    # amd64's kernels by version, then arm64's: side by side, never interleaved.
    assert comp.kernel_order == ["6.1", "6.12", "6.1-arm64", "6.12-arm64"]
    assert compare(_mixed(), axis="matrix").kernel_order == ["6.12", "6.1", "6.12-arm64", "6.1-arm64"]
    # The floor runs along one architecture: arm64's 6.1 rejection after amd64's 6.12 acceptance
    # is no backport regression.
    axis = comp.program_axis("a.o", "p")
    assert axis.floor == "6.1" and axis.rejected_from is None


def test_every_format_shows_both_arches():
    from compat.reports import render
    from compat.results.compare import compare

    run = _mixed()
    comp = compare(run)
    for fmt in ("table", "markdown", "json", "junit", "csv", "github", "sarif"):
        text = render(fmt, run, comp)
        if fmt in ("github", "sarif"):  # problems only: the arm64 rejection names its kernel
            assert "6.1-arm64" in text, fmt
            continue
        assert "6.12-arm64" in text and "6.1-arm64" in text, fmt
        assert text.index("6.12") < text.index("6.1-arm64"), fmt


def test_pt_regs_finding_in_every_format():
    from compat.reports import render
    from compat.results.compare import compare

    run = _mixed()
    words = "built for x86 pt_regs (rdi, rsi): on arm64 it would load and read garbage"
    for r in run.results:
        if r.kernel.endswith("-arm64"):
            r.pt_regs = words + " (rebuild with __TARGET_ARCH_arm64)"
    doc = json.loads(run.dumps())
    assert [("pt_regs" in r) for r in doc["results"]] == [False, True, False, True]  # absent when none
    assert RunResult.from_json(doc).results[1].pt_regs == run.results[1].pt_regs
    comp = compare(run)
    for fmt in ("table", "markdown", "junit", "github", "sarif", "json"):
        text = render(fmt, run, comp)
        assert "built for x86 pt_regs" in text, fmt
    sarif = json.loads(render("sarif", run, comp))
    rules = [r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]]
    assert "object/pt-regs-arch" in rules


def test_expected_arm64_differences_are_well_formed():
    import yaml
    from bpf_build import EXPECTED_FILE

    doc = yaml.safe_load(EXPECTED_FILE.read_text())
    for obj, programs in doc["arm64"].items():
        for prog, spec in programs.items():
            assert spec["why"] and prog in doc["objects"][obj]["programs"], (obj, prog)
            for kernel, cell in spec["kernels"].items():
                amd64 = doc["objects"][obj]["programs"][prog]["kernels"][kernel]
                assert cell != amd64, f"{obj}:{prog} on {kernel}: the same as amd64, not a difference"
                assert cell["verdict"] in ("accepted", "rejected"), (obj, prog, kernel)


def _as_aarch64(data: bytes, types: dict[int, int]) -> bytes:
    """An x86-64 shared library relabelled as aarch64 (e_machine 183) with its .dynsym
    relocations' types mapped through types: the layout an arm64 libbpf's GOT has."""
    import struct

    from compat_agent.elf.reader import section_headers

    out = bytearray(data)
    struct.pack_into("<H", out, 18, 183)
    secs = section_headers(data)
    for sec in secs:
        if sec[1] != 4 or secs[sec[6]][1] != 11:  # SHT_RELA against SHT_DYNSYM
            continue
        for pos in range(sec[4], sec[4] + sec[5] - 23, 24):
            (info,) = struct.unpack_from("<Q", out, pos + 8)
            kind = info & 0xFFFFFFFF
            struct.pack_into("<Q", out, pos + 8, (info & ~0xFFFFFFFF) | types.get(kind, kind))
    return bytes(out)


def test_kernel_btf_got_slots_of_an_arm64_libbpf(tmp_path):
    """arm64's GLOB_DAT and JUMP_SLOT are 1025 and 1026: with x86-64's numbers the agent found no
    GOT entry in the guest's arm64 libbpf and every load re-parsed the kernel's BTF."""
    import ctypes.util
    from pathlib import Path

    import pytest
    from compat_agent.bpf.kernelbtf import FREE, LOAD, got_slots

    name = ctypes.util.find_library("bpf")
    dirs = (Path("/usr/lib/x86_64-linux-gnu"), Path("/lib/x86_64-linux-gnu"))
    found = [d for d in dirs if name and (d / name).exists()]
    if not found:
        pytest.skip("needs the host's x86-64 libbpf")
    path = str(found[0] / str(name))
    data = Path(path).read_bytes()
    want = got_slots(path, {LOAD, FREE})
    assert want.get(LOAD) and want.get(FREE)
    arm64 = tmp_path / "libbpf-aarch64.so"
    arm64.write_bytes(_as_aarch64(data, {6: 1025, 7: 1026}))
    assert got_slots(str(arm64), {LOAD, FREE}) == want
    unmapped = tmp_path / "libbpf-aarch64-x86-types.so"
    unmapped.write_bytes(_as_aarch64(data, {}))  # x86-64's numbers mean other relocations on arm64
    assert got_slots(str(unmapped), {LOAD, FREE}) == {}


def test_attach_hints_per_machine():
    from compat_agent.attach.archhints import hint

    said = hint("kprobe", "kprobe/__x64_sys_cachestat", None, 2, "aarch64")
    assert said and "__arm64_sys_cachestat where it has the syscall" in said and 'SEC("ksyscall/cachestat")' in said
    assert "__x64_sys_getpid" in (hint("kprobe", "kretprobe/__arm64_sys_getpid", None, 2, "x86_64") or "")
    assert hint("kprobe", "kprobe/__x64_sys_getpid", None, 2, "x86_64") is None  # its own wrapper: not why
    assert "from Linux 6.4" in (hint("tracing", "fentry/do_nanosleep", None, 524, "aarch64") or "")
    assert hint("tracing", "fentry/do_nanosleep", None, 524, "x86_64") is None
    assert hint("kprobe", "kprobe/do_nanosleep", None, 2, "aarch64") is None


def test_series_of_both_architectures_are_told_apart():
    from compat.reports import common

    kernels = [KernelInfo(id=f"6.12.{v}{s}", label="x", version=f"6.12.{v}", series="debian:6.12.*", arch=a)
               for a, s in (("amd64", ""), ("arm64", "-arm64")) for v in (43, 118)]  # fmt: skip
    heads = common.series_headings(kernels)
    assert heads["6.12.43"][0] == "debian:6.12.* series" and heads["6.12.43-arm64"][0] == "debian:6.12.* series (arm64)"
    axis = common.axis_order(kernels, [k.id for k in kernels], " < ", str)
    assert axis == ("debian:6.12.* [6.12.43 … 6.12.118: 2 point releases] < "
                    "debian:6.12.* (arm64) [6.12.43 … 6.12.118: 2 point releases]")  # fmt: skip
