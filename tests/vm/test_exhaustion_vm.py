"""Resource exhaustion is not a verdict (issue 14, deliverable 6).

An object with thousands of maps needs more file descriptors than a process gets by default
(libbpf takes one per map at open already), and a map can need more memory than a guest has.
Before, both were reported as rejections of the user's programs (an object error: "Too many open
files", "Cannot allocate memory") and kept in the result cache as such. Now the guest agent raises
its open-file limit to the kernel's maximum, and a check that still runs out of open files or
guest memory is an `error` cell that names the limit, is not cached, and makes `compat check`
exit 3.

The unit tests need no guest; the others boot one kernel (6.1) through the CLI: an object with
2000 maps (accepted), the test build of the image lowering the open-file limit for one object
(compat-fault-nofile.o), and a guest of 256 MiB with a 512 MiB map (and a 16 TiB one, which no
guest can hold: that one stays the object's rejection).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from bpf_build import build_source
from conftest import COMPAT

KERNEL = "6.1"
WAIT = 900  # a bound on each CLI run, so a broken build fails instead of hanging


# -- real guests ---------------------------------------------------------------------------------
def maps_source(n: int) -> str:
    """An object with n one-slot array maps and a socket filter that uses three of them."""
    lines = ["#include <linux/bpf.h>", "#include <bpf/bpf_helpers.h>"]
    lines += [
        f"struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); "
        f'__type(value, __u64); }} m{i} SEC(".maps");'
        for i in range(n)
    ]
    uses = "\n".join(f"  v = bpf_map_lookup_elem(&m{i}, &k); if (v) (*v)++;" for i in (0, n // 2, n - 1))
    lines.append(f'SEC("socket") int many(struct __sk_buff *skb) {{\n  __u32 k = 0; __u64 *v;\n{uses}\n  return 0;\n}}')
    lines.append('char LICENSE[] SEC("license") = "GPL";')
    return "\n".join(lines) + "\n"


def big_map_source(entries: int, value_size: int) -> str:
    """An object with one array map of entries x value_size bytes and a program that uses it."""
    return f"""#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, {entries}); __type(key, __u32);
          __type(value, char[{value_size}]); }} big SEC(".maps");
SEC("socket") int uses_big(struct __sk_buff *skb) {{
  __u32 k = 0; char *v = bpf_map_lookup_elem(&big, &k);
  if (v) v[0]++;
  return 0;
}}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("exhaustion")
    many = build_source(maps_source(2000), d, "maps2000")
    small = build_source(maps_source(200), d, "maps200")
    fault = d / "compat-fault-nofile.o"  # distinct bytes: objects are keyed by content
    fault.write_bytes(small.read_bytes() + b"nofile")
    return {
        "many": many,
        "fault": fault,
        "big": build_source(big_map_source(1 << 17, 4096), d, "bigmap"),  # 512 MiB
        "huge": build_source(big_map_source(2**32 - 1, 4096), d, "hugemap"),  # 16 TiB
    }


def run(tmp_path: Path, objs: list[Path], *extra: str, faults: bool = False) -> tuple[int, str, dict]:
    """compat check on KERNEL through the CLI (the real cache, result cache on): status, table, JSON."""
    out = tmp_path / f"result-{len(list(tmp_path.glob('result-*')))}.json"
    env = {**os.environ, **({"COMPAT_TEST_FAULTS": "1"} if faults else {})}
    cmd = [*COMPAT, "check", *map(str, objs), "--kernel", KERNEL, "--format", "table",
           "--format", "json", "--output", "-", "--output", str(out), *extra]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WAIT)
    assert out.exists(), proc.stderr[-3000:]
    return proc.returncode, proc.stdout + proc.stderr, json.loads(out.read_text())


def cells(doc: dict) -> dict[str, dict]:
    return {r["object"]: r for r in doc["results"]}


@pytest.mark.vm
@pytest.mark.network
def test_thousands_of_maps_load(objects, tmp_path):
    """2000 maps: more fds than the default limit of 1024 (before: rejected, 'Too many open files')."""
    status, text, doc = run(tmp_path, [objects["many"]], "--no-cache")
    cell = cells(doc)["maps2000.o"]
    assert (status, cell["verdict"]) == (0, "accepted"), text[-3000:]


@pytest.mark.vm
@pytest.mark.network
def test_out_of_open_files_is_an_error(objects, tmp_path):
    """The test image lowers the open-file limit to 64 for compat-fault-nofile.o (200 maps): the
    cell is an error naming the limit, the other object keeps its verdict, nothing is cached."""
    for attempt in (1, 2):
        status, text, doc = run(tmp_path, [objects["fault"], objects["many"]], faults=True)
        fault, other = cells(doc)["compat-fault-nofile.o"], cells(doc)["maps2000.o"]
        assert status == 3, text[-3000:]
        assert fault["verdict"] == "error" and "ran out of open files" in fault["message"], fault
        assert "EMFILE" in fault["message"] and "not a verdict" in fault["message"]
        assert other["verdict"] == "accepted"
        if attempt == 2:  # the error was not kept: only the other object came from the result cache
            assert doc["options"]["result_cache"]["hits"] == 1, doc["options"]
    assert "ran out of open files" in text and "\n::" not in text


@pytest.mark.vm
@pytest.mark.network
def test_out_of_guest_memory_is_an_error(objects, tmp_path):
    """A 512 MiB map in a guest of 256 MiB: an error that says to raise --memory, not cached; a
    16 TiB map, more than any guest compat runs: still the object's rejection."""
    for attempt in (1, 2):
        status, text, doc = run(tmp_path, [objects["big"], objects["huge"]], "--memory", "256")
        big, huge = cells(doc)["bigmap.o"], cells(doc)["hugemap.o"]
        assert status == 3, text[-3000:]
        assert big["verdict"] == "error" and "ran out of memory" in big["message"], big
        assert "--memory" in big["message"] and "512 MiB" in big["message"]
        assert huge["verdict"] == "rejected", huge
        if attempt == 2:
            assert doc["options"]["result_cache"]["hits"] == 1, doc["options"]
