"""The Python API on a real guest: `import compat; compat.check(...)` on one kernel, as a user's
script runs it (its own process, no internal imports), with a report and the gate."""

import json
import subprocess
import sys

import pytest
from conftest import compat_env

pytestmark = [pytest.mark.vm, pytest.mark.network]

SCRIPT = """
import json, sys
import compat
r = compat.check(sys.argv[1:], kernels=["6.1"], attach=False)
print(json.dumps({
    "type": type(r).__name__,
    "kernels": [k.id for k in r.kernels],
    "verdicts": sorted({(x.program, x.verdict) for x in r.results}),
    "gate": compat.gate(r),
    "markdown": compat.report(r, "markdown").splitlines()[0],
}))
"""


def test_python_api_checks_on_one_kernel(built_programs):
    objects = [str(built_programs[name]) for name in ("bpf_loop", "ringbuf")]
    done = subprocess.run([sys.executable, "-c", SCRIPT, *objects], capture_output=True, text=True,
                          env=compat_env(), timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["type"] == "RunResult" and out["kernels"] == ["6.1"]
    verdicts = dict(map(tuple, out["verdicts"]))
    assert set(verdicts.values()) <= {"accepted", "rejected"} and verdicts, out
    assert out["gate"] == 0 and out["markdown"]
