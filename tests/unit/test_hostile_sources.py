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
from bpf_build import compile_command, find_clang
from conftest import run_compat

from compat.objects.sourcemap import locate, source_roots

FILE_MARKER = "COMPATLEAKMARKERFILE"

# The whole program on line 1 (no #include: a preprocessor line would push it to a later line):
# /proc/self/environ has no newline, so line 1 is all of it. XDP reads the packet unchecked, so
# every kernel rejects it and compat looks its line up.
ONE_LINE = (
    "struct xdp_md { unsigned int data, data_end; }; "
    '__attribute__((section("xdp"), used)) int read_unchecked(struct xdp_md *ctx) '
    "{ void *data = (void *)(long)ctx->data; return *(volatile unsigned int *)data == 0 ? 1 : 2; } "
    'char LICENSE[] __attribute__((section("license"), used)) = "GPL";\n'
)
PROGRAM = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int read_unchecked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	__u32 first_word = *(volatile __u32 *)data;

	return first_word == 0 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""
FAILING_TEXT = "__u32 first_word = *(volatile __u32 *)data;"
SECRET = "".join(f"{FILE_MARKER} line {i}\n" for i in range(1, 40))


def _clang(cwd: Path, source: str, out: Path, *extra: str) -> Path:
    cmd = compile_command(find_clang(), Path(source), out)
    cmd[1:1] = list(extra)
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=300)
    return out


def build_hostile(base: Path) -> tuple[Path, dict[str, Path]]:
    """(project directory, {case: object}): the hostile objects and one honest one, in base/proj;
    base/outside holds files outside the project that the objects point at."""
    proj, outside = base / "proj", base / "outside"
    (proj / "sub").mkdir(parents=True)
    outside.mkdir()
    objs = {}
    # 1. a file named environ, its directory mapped to /proc/self: the object records
    #    /proc/self/environ, line 1; once without the source text in BTF, once with it.
    (proj / "environ").write_text(ONE_LINE)
    prefix = f"-fdebug-prefix-map={proj}=/proc/self"
    objs["environ"] = _clang(proj, "environ", proj / "environ.o", "-x", "c", prefix)
    objs["environ_embedded"] = _clang(
        proj, "environ", proj / "environ_embedded.o", "-x", "c", prefix, "-gdwarf-5", "-gembed-source"
    )
    # 2. a source that is a symlink out of the project once the object is built
    (proj / "link.bpf.c").write_text(PROGRAM)
    objs["link"] = _clang(proj, str(proj / "link.bpf.c"), proj / "link.o")
    (proj / "link.bpf.c").unlink()
    (outside / "secret.bpf.c").write_text(SECRET)
    (proj / "link.bpf.c").symlink_to(outside / "secret.bpf.c")
    # 3. a recorded path whose ".." leaves the project
    (outside / "dotdot.bpf.c").write_text(PROGRAM)
    objs["dotdot"] = _clang(proj, "sub/../../outside/dotdot.bpf.c", proj / "dotdot.o")
    (outside / "dotdot.bpf.c").write_text(SECRET)
    # 4. honest: a source under the project (test_source_under_the_root_is_read also strips its
    #    line info to DWARF, where the line's text can only come from the file)
    (proj / "good.bpf.c").write_text(PROGRAM)
    objs["good"] = _clang(proj, str(proj / "good.bpf.c"), proj / "good.o")
    return proj, objs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    return build_hostile(tmp_path_factory.mktemp("hostile"))


def _locate(obj: Path, proj: Path):
    # the log 6.1 gives: instruction 1 fails, its text without "@ file:line"
    log = "0: (61) r1 = *(u32 *)(r1 +0)\n1: (61) r1 = *(u32 *)(r1 +0)\ninvalid access to packet\n"
    data = obj.read_bytes()
    return locate(data, obj, "read_unchecked", "xdp", "verifier_rejection", "invalid access", log, source_roots([proj]))


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
