"""Objects whose line info names host files: compat must never print a byte of them (issue 14).

A pull request can add an object compiled so that its line info records /proc/self/environ (a
file named `environ` built with -fdebug-prefix-map=$PWD=/proc/self), a source that became a
symlink out of the project, or a path whose ".." leaves it. Before the source-line gate, a
rejection in such an object printed the first line of that file (compat's own environment, with
the CI's secrets) in every report format. The objects are built here with clang; the host-side
tests need no VM, the last one runs a real `compat check` on one kernel.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from bpf_sources import FAILING_TEXT, FILE_MARKER, ONE_LINE
from conftest import run_compat

from compat.objects.sourcemap import locate, source_roots


def _locate(obj: Path, proj: Path):
    # the log 6.1 gives: instruction 1 fails, its text without "@ file:line"
    log = "0: (61) r1 = *(u32 *)(r1 +0)\n1: (61) r1 = *(u32 *)(r1 +0)\ninvalid access to packet\n"
    data = obj.read_bytes()
    return locate(data, obj, "read_unchecked", "xdp", log, source_roots([proj]))


def test_environ_object_prints_no_host_file(hostile):
    proj, objs = hostile
    environ = Path("/proc/self/environ").read_bytes().split(b"\0")[0].decode(errors="replace")
    loc = _locate(objs["environ"], proj)
    assert (loc.file, loc.line) == ("/proc/self/environ", 1)  # shown, as the object records it
    assert loc.text is None and loc.path is None  # never read
    loc = _locate(objs["environ_embedded"], proj)
    assert loc.path is None and loc.text == ONE_LINE.strip()  # the object's own copy of the line
    assert environ not in (loc.text or "")


@pytest.mark.parametrize("case", ["link", "dotdot"])
def test_paths_out_of_the_source_root_are_not_read(hostile, case):
    proj, objs = hostile
    loc = _locate(objs[case], proj)
    assert loc.path is None and FILE_MARKER not in (loc.text or "")
    assert loc.text == FAILING_TEXT  # the BTF's copy of the line is still shown


def test_source_under_the_root_is_read(hostile, tmp_path):
    proj, objs = hostile
    if not shutil.which("llvm-objcopy"):
        pytest.skip("needs llvm-objcopy")
    stripped = proj / "good_dwarf.o"
    subprocess.run(["llvm-objcopy", "--remove-section", ".BTF.ext", "--remove-section", ".rel.BTF.ext",
                    str(objs["good"]), str(stripped)], check=True)  # fmt: skip
    loc = _locate(stripped, proj)
    assert loc.how == "dwarf" and loc.text == FAILING_TEXT and loc.path == str(proj / "good.bpf.c")
    assert _locate(stripped, tmp_path).path is None  # the same file is not read outside the roots
    loc = _locate(objs["good"], proj)
    assert loc.text == FAILING_TEXT and loc.path == str(proj / "good.bpf.c")


def test_source_root_must_be_a_directory(tmp_path, built_programs):
    done = run_compat("check", "--kernel", "6.1", "--source-root", str(tmp_path / "none"),
                      str(built_programs["xdp_no_bounds_check"]), timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"compat: error: --source-root {tmp_path / 'none'}: not a directory "
        "(give a directory of the objects' sources)\n"
    )
