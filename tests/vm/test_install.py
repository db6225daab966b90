"""compat installed the way users install it: a wheel in a fresh virtual environment, not the
editable checkout the other tests import. A package or data file the wheel leaves out shows here
as a command that fails, not only in a user's CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_RESULT = ROOT / "tests/golden/baseline.json.json"
FORMATS = ("table", "json", "markdown", "github", "junit", "sarif")


def run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    # The environment's own PYTHONPATH or virtual environment must not leak the checkout into
    # the installed compat.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin directory of a fresh venv holding compat from its wheel (dependencies from the index)."""
    tmp = tmp_path_factory.mktemp("install")
    wheel = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", ROOT)
    assert wheel.returncode == 0, wheel.stderr
    (whl,) = (tmp / "dist").glob("compat-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for pkg, src in (("compat", ROOT / "compat"), ("compat_agent", ROOT / "guest-agent/compat_agent")):
        missing = [f"{pkg}/{p.relative_to(src).as_posix()}" for p in src.rglob("*.py") if "__pycache__" not in p.parts]
        assert not [m for m in missing if m not in names], "the wheel leaves out sources"
    venv = tmp / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    pip = run(venv / "bin/pip", "install", "-q", whl)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return venv / "bin"


def test_installed_version_and_report_in_every_format(installed, tmp_path):
    version = run(installed / "compat", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("compat "), version.stderr
    # The installed package, not the checkout, answers (cwd is outside the checkout).
    where = run(installed / "python", "-c", "import compat, compat_agent; print(compat.__file__)", cwd=tmp_path)
    assert "site-packages" in where.stdout, where.stdout

    def report(compat: list[str | Path], out: Path) -> subprocess.CompletedProcess:
        out.mkdir()
        args: list[str | Path] = []
        for fmt in FORMATS:
            args += ["--format", fmt, "--output", out / f"out.{fmt}"]
        return run(*compat, "report", GOLDEN_RESULT, "--fail-on", "never", *args, cwd=tmp_path)

    proc = report([installed / "compat"], tmp_path / "installed")
    # The saved result has a cell without a verdict (exit 3): the installed compat must say and
    # write exactly what the checkout does.
    checkout = report([sys.executable, "-m", "compat"], tmp_path / "checkout")
    assert (proc.returncode, proc.stderr) == (checkout.returncode, checkout.stderr)
    assert "Traceback" not in proc.stderr
    for fmt in FORMATS:
        written = (tmp_path / "installed" / f"out.{fmt}").read_text()
        assert written and written == (tmp_path / "checkout" / f"out.{fmt}").read_text(), fmt
    assert json.loads((tmp_path / "installed/out.json").read_text())["schema"].startswith("compat/")


@pytest.mark.vm
def test_installed_check_boots_a_guest(installed, built_programs, tmp_path):
    """One real check from the wheel: the guest image is built from the installed agent."""
    out = tmp_path / "result.json"
    proc = run(
        installed / "compat", "check", built_programs["counter"], "--kernel", "6.1", "--no-cache",
        "--format", "json", "--output", out, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())["results"]
    assert records and all(r["verdict"] == "accepted" for r in records)


@pytest.mark.parametrize(
    "args",
    [
        ("kernels", "list", "--kernel", "6.1", "--json"),
        ("kernels", "available", "6.1", "--json"),
        ("cache", "info", "--json"),
        ("image", "info", "--json"),
        ("vm", "smoke", "--kernel", "6.1", "--json"),
        ("probe", "--kernel", "6.1", "--json"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_installed_commands_answer_in_json(installed, tmp_path, args):
    """Every other command from the wheel, with the real cache: each answers with JSON."""
    proc = run(installed / "compat", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    assert "Traceback" not in proc.stderr
