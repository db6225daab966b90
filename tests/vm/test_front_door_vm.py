"""The front door on real guests: progress in CI (stderr not a terminal) and -q."""

import re

import pytest
from conftest import run_compat

pytestmark = [pytest.mark.vm, pytest.mark.network]


def test_ci_progress_lines_and_quiet(built_programs, tmp_path):
    """stderr captured (CI): a line per stage with its time (the guest's boot or restore, the
    kernel's objects); stdout holds the report only. -q: nothing on stderr but errors."""
    obj = built_programs["ringbuf"]
    out = tmp_path / "r.json"
    done = run_compat("check", obj, "--kernel", "6.1", "--no-cache", "--format", "json", "--output", out)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(re.fullmatch(r"compat: (restored|booted) 6\.1 in \d+\.\d s", line) for line in lines), lines
    assert any(re.match(r"compat: 6\.1 \(6\.1\.\d+\): \d+ program\(s\)", line) for line in lines), lines
    assert done.stdout == ""
    quiet = run_compat("-q", "check", obj, "--kernel", "6.1", "--no-cache", "--format", "json")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("{")


def test_json_of_kernels_and_vm_smoke():
    """--json of kernels list, kernels available and vm smoke (one kernel): the documented keys,
    kernel ids as strings (5.10 never becomes 5.1)."""
    import json

    listed = run_compat("kernels", "list", "--kernel", "5.10", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["kernels"][0].keys() == {"id", "label", "arch", "source", "version", "release",
                                                              "cached"}  # fmt: skip
    assert json.loads(listed.stdout)["kernels"][0]["id"] == "5.10"
    offered = run_compat("kernels", "available", "6.1", "--json")
    assert offered.returncode == 0, offered.stderr
    doc = json.loads(offered.stdout)
    assert doc["series"] == "6.1" and doc["releases"]
    assert doc["releases"][0].keys() == {"point_release", "version", "package", "suite", "size"}
    smoke = run_compat("vm", "smoke", "--kernel", "6.1", "--json")
    assert smoke.returncode == 0, smoke.stderr
    (k,) = json.loads(smoke.stdout)["kernels"]
    assert k["id"] == "6.1" and k["error"] is None and k["btf"] is True and k["accel"] in ("kvm", "tcg")
    assert k["release"].startswith("6.1.") and isinstance(k["boot_seconds"], float)


def test_probe_kfunc_struct_ops_on_6_1():
    """`compat probe --kfunc tcp_reno_cong_avoid --kernel 6.1` said "callable from: none" (no
    struct_ops probe) and "0" kfuncs (6.1's BTF lists none): now struct_ops, and "unknown"."""
    done = run_compat("probe", "--kfunc", "tcp_reno_cong_avoid", "--kernel", "6.1")
    assert done.returncode == 0, done.stderr
    assert "unknown (this kernel's BTF does not list kfuncs)" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("tcp_reno_cong_avoid on 6.1"))
    assert "present; callable from: struct_ops:tcp_congestion_ops" in line, line


def test_action_check_step_on_6_1(built_programs, tmp_path):
    """The action's compat check and Outputs steps, run locally as a runner runs them, on one
    object and one kernel: the result file, the Markdown in the job summary, the outputs."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "unit" / "test_action.py"
    spec = importlib.util.spec_from_file_location("test_action", path)
    assert spec and spec.loader
    action = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(action)
    obj = tmp_path / "ringbuf.o"
    obj.write_bytes(built_programs["ringbuf"].read_bytes())
    env = {"OBJECTS": "*.o", "MATRIX": "", "KERNELS": "6.1", "BASELINE": "", "FORMATS": "github sarif",
           "FAIL_ON": "regression", "SHARD": "", "RESULT": "compat-result.json", "REPORT": "compat-report.md",
           "UPLOAD_SARIF": "false"}  # fmt: skip
    done, outputs = action.run_step("compat check", tmp_path, env)
    assert done.returncode == 0 and outputs == {"exit-status": "0"}, done.stderr
    assert (tmp_path / "compat-result.json").is_file() and (tmp_path / "compat.sarif").is_file()
    assert (tmp_path / "step_summary").read_text() == (tmp_path / "compat-report.md").read_text() != ""
    done, outputs = action.run_step("Outputs", tmp_path, {"RESULT": "compat-result.json", "STATUS": "0"})
    assert outputs == {"exit-status": "0", "regressions": "0", "result-path": "compat-result.json",
                       "sarif": "compat.sarif"}  # fmt: skip


def test_live_progress_counts_each_kernels_objects(built_programs, real_cache):
    """On a terminal, each kernel's stage counts its objects as its guest (and any helper guest)
    checks them: a sink that records the stages sees every object of the kernel."""
    from compat.kernels.matrix import load_matrix
    from compat.progress import Progress, Stage
    from compat.run.checker import Checker, CheckOptions, load_objects

    class Recording(Progress):
        def __init__(self) -> None:
            self.stages: dict[str, Stage] = {}

        def _started(self, stage: Stage) -> None:
            self.stages[stage.text] = stage

    objects, infos, errors = load_objects([str(built_programs[n]) for n in ("counter", "ringbuf", "bpf_loop")])
    assert not errors
    specs = [k for k in load_matrix().kernels if k.id == "6.1"]
    sink = Recording()
    real_cache.progress, saved = sink, real_cache.progress
    try:
        result = Checker(real_cache, specs, CheckOptions(result_cache=False)).run(objects, infos)
    finally:
        real_cache.progress = saved
    assert {r.verdict for r in result.results} <= {"accepted", "rejected"}
    stage = sink.stages["checking on 6.1"]
    assert (stage.total, stage.completed) == (3, 3), (stage.total, stage.completed)
