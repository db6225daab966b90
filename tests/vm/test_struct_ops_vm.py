"""struct_ops objects: which maps an object declares and which programs each uses (host only), and
the kernel probe's struct_ops answers on the real default kernels (the verdicts and reasons of
programs/struct_ops.bpf.c are in programs/expected.yaml, checked by tests/vm/test_check.py)."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat


@pytest.mark.vm
@pytest.mark.network
def test_probe_says_struct_ops_maps_exist_everywhere_and_links_from_6_4():
    # libbpf 1.5's own probe calls struct_ops unsupported on 5.10 and 6.1; BPF_F_LINK arrived in 6.4.
    proc = run_compat("probe", "--format", "json", timeout=3000)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    maps = {k: v["map_types"]["struct_ops"] for k, v in doc.items()}
    assert maps == {"5.10": True, "6.1": True, "6.12": True, "sid": True}
    links = {k: v["features"]["struct_ops_link"] for k, v in doc.items()}
    assert links == {"5.10": False, "6.1": False, "6.12": True, "sid": True}
