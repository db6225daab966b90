"""The result cache and shards on real guests: a re-check of an unchanged object starts no VM,
and shards checked separately merge into the verdicts of one run."""

import json

import pytest
from conftest import run_compat

pytestmark = [pytest.mark.vm, pytest.mark.network]

KERNELS = ["--kernel", "6.12", "--kernel", "sid"]


def verdicts(doc: dict) -> list[tuple]:
    return sorted((r["object"], r["program"], r["kernel"], r["verdict"], r["reason"]) for r in doc["results"])


def test_recheck_is_served_from_the_result_cache_and_shards_merge(built_programs, tmp_path):
    objects = [built_programs["counter"], built_programs["xdp_no_bounds_check"]]
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    assert (proc := run_compat("check", *objects, *KERNELS, "--format", "json", "--output",
                               first)).returncode == 0, proc.stderr  # fills the cache if needed  # fmt: skip
    assert (proc := run_compat("check", *objects, *KERNELS, "--format", "json", "--output",
                               again)).returncode == 0, proc.stderr  # fmt: skip
    doc = json.loads(again.read_text())
    assert doc["options"]["result_cache"] == {"hits": 4, "misses": 0}
    assert all(k["boot_seconds"] is None and k["release"] and k["libbpf"] for k in doc["kernels"])  # no guest
    assert verdicts(doc) == verdicts(json.loads(first.read_text()))

    shards = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}.json"
        assert (proc := run_compat("check", *objects, *KERNELS, "--no-cache", "--shard", f"{i}/2", "--format", "json",
                                   "--output", out)).returncode == 0, proc.stderr  # fmt: skip
        part = json.loads(out.read_text())
        assert part["options"]["shard"] == {"index": i, "count": 2} and "result_cache" not in part["options"]
        assert len(part["kernels"]) == 1 and part["kernels"][0]["boot_seconds"] is not None  # verified in a guest
        shards.append(out)
    merged = tmp_path / "merged.json"
    assert (proc := run_compat("merge", *shards, "--format", "json", "--output", merged)).returncode == 0, proc.stderr
    assert verdicts(json.loads(merged.read_text())) == verdicts(doc)
