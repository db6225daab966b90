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
from bpf_sources import FAILING_TEXT, FILE_MARKER, ONE_LINE
from conftest import COMPAT

ENV_MARKER = "COMPATLEAKMARKERENV"
FORMATS = ("table", "json", "markdown", "github", "junit", "sarif")
REPO = Path(__file__).resolve().parents[2]

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
