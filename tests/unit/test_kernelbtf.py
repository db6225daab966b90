"""The agent's shared kernel BTF (compat_agent/bpf/kernelbtf.py), on the host's libbpf.

Only BTF is read here (/sys/kernel/btf/vmlinux, through libbpf's own BTF lookups): nothing is
loaded into the host kernel. Each case runs in a child process, because install() redirects the
process's libbpf for good.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from compat_agent.bpf.kernelbtf import got_slots

AGENT = Path(__file__).resolve().parents[2] / "guest-agent"

pytestmark = pytest.mark.skipif(
    not ctypes.util.find_library("bpf") or not os.path.exists("/sys/kernel/btf/vmlinux"),
    reason="needs libbpf and the host kernel's BTF",
)


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                          "PYTHONPATH": str(AGENT)}, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_host_libbpf_calls_its_btf_functions_through_its_got():
    out = run(
        "from compat_agent.bpf import kernelbtf, libbpf as lb\n"
        "base, path = kernelbtf._link_map(lb.lib().so._handle)\n"
        "slots = kernelbtf.got_slots(path, {kernelbtf.LOAD, kernelbtf.FREE})\n"
        "print(sorted(slots), base > 0)\n"
    )
    assert out == "['btf__free', 'btf__load_vmlinux_btf'] True"


def test_libbpf_gets_the_one_parsed_copy_and_cannot_free_it():
    # libbpf_find_vmlinux_btf_id loads the kernel BTF and frees it again through libbpf's GOT:
    # the answers must not change, and the shared copy must outlive every btf__free.
    out = run(
        "import ctypes\n"
        "from compat_agent.bpf import kernelbtf, libbpf as lb\n"
        "so = lb.lib().so\n"
        "find = so.libbpf_find_vmlinux_btf_id\n"
        "find.argtypes = (ctypes.c_char_p, ctypes.c_int)\n"
        "before = [find(n, 24) for n in (b'bpf_fentry_test1', b'no_such_function_here')]\n"
        "print(kernelbtf.install(), kernelbtf.install())\n"
        "after = [find(n, 24) for n in (b'bpf_fentry_test1', b'no_such_function_here') for _ in range(3)]\n"
        "print(after == [x for x in before for _ in range(3)], before[0] > 0)\n"
        "btf = kernelbtf.vmlinux()\n"
        "btf.free()\n"
        "print(btf.borrowed, kernelbtf.vmlinux().type_cnt == lb.Btf.vmlinux().type_cnt > 1000)\n"
    )
    assert out.splitlines() == ["installed installed", "True True", "True True"]


def test_got_slots_of_what_is_not_a_shared_library(tmp_path):
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not an ELF file at all")
    assert got_slots(str(junk), {"btf__free"}) == {}
