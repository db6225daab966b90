"""Objects whose line info names host files: compat must never print a byte of them (issue 14).

A pull request can add an object compiled so that its line info records /proc/self/environ (a
file named `environ` built with -fdebug-prefix-map=$PWD=/proc/self), a source that became a
symlink out of the project, or a path whose ".." leaves it. Before the source-line gate, a
rejection in such an object printed the first line of that file (compat's own environment, with
the CI's secrets) in every report format. The objects are built here with clang; the host-side
tests need no VM, the last one runs a real `compat check` on one kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.dom.minidom
from pathlib import Path

import pytest
from bpf_build import compile_command, find_clang
from conftest import COMPAT

ENV_MARKER = "COMPATLEAKMARKERENV"
FILE_MARKER = "COMPATLEAKMARKERFILE"
FORMATS = ("table", "json", "markdown", "github", "junit", "sarif")
REPO = Path(__file__).resolve().parents[2]

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


def _assert_valid(fmt: str, text: str) -> None:
    if fmt in ("json", "sarif"):
        json.loads(text)
    elif fmt == "junit":
        xml.dom.minidom.parseString(text)


@pytest.mark.vm
@pytest.mark.skipif(not shutil.which("llvm-objcopy"), reason="needs llvm-objcopy")
def test_compat_check_prints_no_host_file_in_any_format(hostile, tmp_path):
    """A real run on one kernel, from outside the project with --source-root naming it: the
    marker of compat's environment (first in it, so inside the 300 bytes a line was cut to) and
    the marker of the files out of the project appear in no format; the honest objects' lines
    do, one of them (DWARF only) read from its file under the --source-root."""
    proj, objs = hostile
    objs = dict(objs, good_dwarf=proj / "good_dwarf.o")
    subprocess.run(["llvm-objcopy", "--remove-section", ".BTF.ext", "--remove-section", ".rel.BTF.ext",
                    str(objs["good"]), str(objs["good_dwarf"])], check=True)  # fmt: skip
    outputs = {fmt: tmp_path / f"report.{fmt}" for fmt in FORMATS}
    cmd = [*COMPAT, "check", "--kernel", "6.1", "--no-cache", "--source-root", str(proj)]
    for fmt, path in outputs.items():
        cmd += ["--format", fmt, "--output", str(path)]
    cmd += [str(o) for o in objs.values()]
    env = {ENV_MARKER: "secret-value-" + ENV_MARKER}
    env.update({k: v for k, v in os.environ.items() if k != ENV_MARKER})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("GITHUB_WORKSPACE", None)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr  # rejections, not errors
    assert ENV_MARKER not in done.stdout + done.stderr
    result = json.loads(outputs["json"].read_text())
    rejected = {r["object"]: r for r in result["results"] if r["verdict"] == "rejected"}
    assert set(rejected) == {f"{name}.o" for name in objs}, rejected.keys()
    for fmt, path in outputs.items():
        text = path.read_text()
        _assert_valid(fmt, text)
        assert ENV_MARKER not in text, fmt
        assert FILE_MARKER not in text, fmt
    sources = {name: r["source"] for name, r in rejected.items()}
    assert sources["environ.o"]["file"] == "/proc/self/environ" and sources["environ.o"]["text"] is None
    assert sources["environ_embedded.o"]["text"] == ONE_LINE.strip()
    assert sources["link.o"]["path"] is None and sources["dotdot.o"]["path"] is None
    for name in ("good.o", "good_dwarf.o"):  # the DWARF-only one has its text from the file alone
        assert sources[name]["path"] == str(proj / "good.bpf.c") and sources[name]["text"] == FAILING_TEXT
    assert FAILING_TEXT in outputs["table"].read_text()
