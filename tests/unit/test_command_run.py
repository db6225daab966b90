"""compat run on the host: the command's checks before any guest boots (one line, exit 2), the
libraries a dynamically linked loader brings, the wire messages, the fidelity comparison, the
reports and the result file's schema. The guests' side is tests/vm/test_command_run_vm.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from command_loaders import build_loader
from compat_agent.wire import messages as wire
from conftest import run_compat

from compat.errors import UserError
from compat.objects import loader
from compat.objects.loader import prepare
from compat.reports.command import render
from compat.results import command as results_command
from compat.results.command import CommandResult, KernelRun, compare
from compat.results.model import ProgramResult
from compat.run import command

SCHEMA = json.loads((Path(results_command.__file__).parent / "schema" / "run-v1.json").read_text())
HAVE_LIBBPF = os.path.exists("/usr/lib/x86_64-linux-gnu/libbpf.a") and shutil.which("clang") is not None


def _exe(path: Path, text: str | bytes, mode: int = 0o755) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _exe(d / "data.bin", b"\x00\x01binary", 0o644), "not executable"),
        (lambda d: _exe(d / "data.bin", b"\x00\x01binary"), "neither an ELF executable nor a script"),
        (lambda d: _exe(d / "b.sh", "#!/bin/bash\necho hi\n"), "interpreter /bin/bash is not in the guest image"),
        (lambda d: _exe(d / "e.sh", "#!\n"), "names no interpreter"),
        (lambda d: _exe(d / "bad", b"\x7fELF\x02\x01\x01" + bytes(9)), "not a readable ELF file"),
    ],
)
def test_bad_commands_exit_2_before_booting(tmp_path, make, words):
    """Each is one line and exit 2, before any guest boots (a bogus cache: nothing may be fetched)."""
    path = make(tmp_path)
    done = run_compat("--cache", tmp_path / "cache", "run", "--kernel", "6.1", "--", path, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compat: error: ") and words in lines[0], done.stderr
    assert "booted" not in done.stderr and "restored" not in done.stderr


def test_an_x86_loader_is_refused_for_arm64_guests_before_booting(tmp_path):
    """--arch arm64 makes the kernels arm64 builds: a host (x86-64) binary cannot run there."""
    done = run_compat("--cache", tmp_path / "cache", "run", "--arch", "arm64", "--kernel", "6.12", "--",
                      "/bin/true", timeout=120)  # fmt: skip
    assert done.returncode == 2 and "built for x86-64, the arm64 guests cannot run it" in done.stderr, done.stderr
    assert "booted" not in done.stderr


def test_no_command_and_bad_timeout(tmp_path):
    done = run_compat("--cache", tmp_path / "c", "run", "--kernel", "6.1", timeout=120)
    assert done.returncode == 2 and "needs a command" in done.stderr
    done = run_compat("--cache", tmp_path / "c", "run", "--timeout", "inf", "--", "/bin/true", timeout=120)
    assert done.returncode == 2 and "--timeout" in done.stderr


def test_scripts_run_with_the_guests_interpreters(tmp_path):
    sh = _exe(tmp_path / "a.sh", "#!/bin/sh\necho hi\n")
    assert prepare(str(sh), ["x"], [], {"amd64"}).argv == ["/tmp/compat-run/a.sh", "x"]
    py = _exe(tmp_path / "b.py", "#!/usr/bin/env python3\nprint(1)\n")
    prepared = prepare(str(py), [], [], {"amd64"})
    assert prepared.argv == ["python3", "/tmp/compat-run/b.py"] and prepared.kind == "script"


def test_with_paths(tmp_path):
    sh = _exe(tmp_path / "a.sh", "#!/bin/sh\n")
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "f.o").write_bytes(b"x")
    (tmp_path / "one.txt").write_text("1")
    prepared = prepare(str(sh), [], [str(tmp_path / "dir"), str(tmp_path / "one.txt")], {"amd64"})
    assert sorted(f.path for f in prepared.files) == ["a.sh", "dir/sub/f.o", "one.txt"]
    message, payload = prepared.request(5, False, command.OUTPUT_MAX)
    request = wire.RunRequest.from_json(message)
    assert sum(f.size for f in request.files) == len(payload) == 1 + 1 + len(sh.read_bytes())
    with pytest.raises(UserError, match="no such file"):
        prepare(str(sh), [], [str(tmp_path / "nope")], {"amd64"})
    (tmp_path / "dir" / "sub" / "loop").symlink_to("..")
    with pytest.raises(UserError, match="directory loop"):
        prepare(str(sh), [], [str(tmp_path / "dir")], {"amd64"})
    (tmp_path / "dir" / "sub" / "loop").unlink()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "one.txt").write_text("2")
    with pytest.raises(UserError, match="given twice"):
        prepare(str(sh), [], [str(tmp_path / "one.txt"), str(tmp_path / "other" / "one.txt")], {"amd64"})


def test_size_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "FILES_MAX_BYTES", 1000)
    sh = _exe(tmp_path / "a.sh", "#!/bin/sh\n")
    (tmp_path / "big").write_bytes(bytes(2000))
    with pytest.raises(UserError, match="more than"):
        prepare(str(sh), [], [str(tmp_path / "big")], {"amd64"})


@pytest.mark.skipif(not HAVE_LIBBPF, reason="needs cc and libbpf-dev")
def test_elf_loaders(tmp_path):
    """A static loader runs as it is; a dynamic one brings its DT_NEEDED libraries (recursively:
    libbpf's libelf and libz, libc) and the ELF interpreter that runs it, nothing else; another
    machine's ELF file is refused."""
    static = build_loader(tmp_path / "s", "loader")
    p = prepare(str(static), ["x.o"], [], {"amd64"})
    assert p.kind == "static" and p.argv == ["/tmp/compat-run/loader", "x.o"]
    assert [f.path for f in p.files] == ["loader"]
    dynamic = build_loader(tmp_path / "d", "loader")
    dynamic.unlink()
    dynamic = build_loader(tmp_path / "d", "loader", static=False)
    p = prepare(str(dynamic), [], [], {"amd64"})
    assert p.kind == "dynamic"
    assert {"libbpf.so.1", "libelf.so.1", "libz.so.1", "libc.so.6"} <= set(p.libraries), p.libraries
    libs = [f.path for f in p.files if f.path.startswith(".compat-lib/")]
    assert ".compat-lib/ld-linux-x86-64.so.2" in libs and len(libs) <= len(p.libraries) + 1
    assert p.argv[:3] == ["/tmp/compat-run/.compat-lib/ld-linux-x86-64.so.2", "--library-path",
                          "/tmp/compat-run/.compat-lib"]  # fmt: skip
    arm = bytearray(static.read_bytes())
    arm[18:20] = (183).to_bytes(2, "little")  # e_machine: EM_AARCH64
    other = _exe(tmp_path / "arm", bytes(arm))
    with pytest.raises(UserError, match="built for arm64"):
        prepare(str(other), [], [], {"amd64"})
    assert prepare(str(other), [], [], {"arm64"}).kind == "static"
    obj = tmp_path / "obj.o"
    subprocess.run(["clang", "-c", "-x", "c", "-", "-o", str(obj)], input=b"int x;", check=True)
    obj.chmod(0o755)
    with pytest.raises(UserError, match="not an executable"):
        prepare(str(obj), [], [], {"amd64"})


def test_missing_library(tmp_path):
    with pytest.raises(UserError, match=r"libnothere\.so\.9"):
        loader.resolve_libraries("x", ["libnothere.so.9"], [])


def _reply(**over):
    reply = {"type": "run_result", "exit_status": 0, "timed_out": False, "duration_ms": 1200.5, "stdout": "o\n",
             "stderr": "", "programs": [{"id": 7, "name": "count_getppid", "type": "tracepoint",
                                         "verified_insns": 9, "loaded_at_end": True}],
             "maps": [{"id": 3, "name": "sums", "type": "array", "key_size": 4, "value_size": 8, "max_entries": 1}],
             "kernel_log": ["a line"], "stdout_bytes": 2, "stderr_bytes": 0, "kernel_log_lines": 1}  # fmt: skip
    return {**reply, **over}


def test_wire_run_reply():
    assert wire.RunReply.from_json(_reply()).programs[0].name == "count_getppid"
    assert wire.problem(_reply(), "run_result") is None
    assert "timed_out" in (wire.problem(_reply(timed_out="no"), "run_result") or "")
    assert wire.problem(_reply(programs=[{"id": "x", "name": "a", "type": "b"}]), "run_result")


def _run(**over) -> KernelRun:
    from compat.kernels.matrix import KernelSpec

    spec = KernelSpec(id="5.10", label="5.10")
    return command.kernel_run(spec, "5.10.1", "5.10.0-1-amd64", _reply(**over), running_ok=False)


def _generic(program: str, verdict: str) -> ProgramResult:
    return ProgramResult(object="two_programs.o", object_sha256="0", program=program, section="tp", prog_type="tp",
                         kernel="5.10", verdict=verdict, reason=None if verdict == "accepted" else "missing_helper",
                         message=None if verdict == "accepted" else "helper bpf_loop is not available")  # fmt: skip


def test_kernel_run_and_status():
    ok = _run()
    assert ok.ok and ok.programs == ["count_getppid"] and ok.duration == 1.2 and not ok.stdout_truncated
    assert not _run(exit_status=1).ok
    timed = _run(timed_out=True, exit_status=None)
    assert timed.ok is False and timed.timed_out
    assert command.kernel_run(timed_spec(), None, None, _reply(timed_out=True, exit_status=None), True).ok
    assert _run(stdout_bytes=10_000_000).stdout_truncated
    assert _run(error="No such file or directory", exit_status=None).ok is False
    result = CommandResult("l", ["l"], "static", 60, False, [ok])
    assert result.status() == 0
    result.kernels.append(KernelRun("6.1", "6.1", None, None, None, error="guest died"))
    assert result.status() == 3
    result.kernels.append(_run(exit_status=1))
    assert result.status() == 1


def timed_spec():
    from compat.kernels.matrix import KernelSpec

    return KernelSpec(id="6.1", label="6.1")


def test_fidelity_comparison():
    handled = _run(programs=[{"id": 7, "name": "count_getppid", "type": "tracepoint"}])
    found = compare(handled, [_generic("sum_with_loop", "rejected"), _generic("count_getppid", "accepted")])
    assert [f["kind"] for f in found] == ["loader_handles"]
    assert found[0]["message"] == ("generic load: rejected (helper bpf_loop is not available); your loader: "
                                   "succeeded, it did not load program sum_with_loop")  # fmt: skip
    failed = _run(exit_status=1, programs=[])
    found = compare(failed, [_generic("sum_with_loop", "rejected"), _generic("count_getppid", "accepted")])
    assert [f["kind"] for f in found] == ["loader_failed"]
    assert found[0]["message"].startswith("generic load: accepted; your loader failed (exit 1)")
    loaded = _run(programs=[{"id": 7, "name": "sum_with_loop", "type": "tracepoint"}])
    assert [f["kind"] for f in compare(loaded, [_generic("sum_with_loop", "rejected")])] == ["loader_loads_rejected"]
    # the kernel keeps 15 characters of a program's name
    long = _run(programs=[{"id": 7, "name": "a_very_long_pro", "type": "xdp"}])
    assert compare(long, [_generic("a_very_long_program_name", "accepted")]) == []


def test_reports_and_schema():
    k = _run(exit_status=1, stdout="::warning::x\n\x1b[31mred", kernel_warnings=[{"kind": "warning", "lines": ["W"]}])
    k.fidelity = compare(k, [_generic("count_getppid", "accepted")])
    result = CommandResult("./l", ["/tmp/compat-run/l"], "static", 60.0, False,
                           [k, KernelRun("6.1", "6.1", None, None, None, error="the guest died")])  # fmt: skip
    doc = json.loads(render("json", result))
    jsonschema.validate(doc, SCHEMA)
    assert doc["kernels"][0]["exit_status"] == 1 and doc["kernels"][0]["programs"] == ["count_getppid"]
    table = render("table", result)
    md = render("markdown", result)
    for text in (table, md):
        assert "failed (exit 1)" in text and "the kernel warned" in text and "\x1b" not in text
        assert not any(line.startswith("::") for line in text.splitlines())
        assert "your loader failed (exit 1)" in text
    assert "| 5.10 | ❌" in md and "⚠️ error" in md
