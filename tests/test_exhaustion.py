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

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bpf_build import build_source
from compat_agent.checker import resources
from compat_agent.checker.check import Checker
from compat_agent.checker.resources import MEMORY, OPEN_FILES, Exhausted, exhausted, from_libbpf_lines, map_bytes

from compat.cache import Cache
from compat.guest import guestmsg
from compat.results.inventory import Inventory
from compat.run.resultcache import KIND, ResultCache

KERNEL = "6.1"
WAIT = 900  # a bound on each CLI run, so a broken build fails instead of hanging


# -- the rules (no guest) -----------------------------------------------------------------------
def test_which_failures_are_the_guests():
    for code in (errno.EMFILE, errno.ENFILE):
        for stage in ("open", "btf", "map", "program", "object"):
            found = exhausted(code, stage, "m")
            assert found is not None and found.resource == OPEN_FILES and found.errno == code
    # memory: a map that fits some guest, a program the verifier ran out of memory on, libbpf's own
    assert exhausted(errno.ENOMEM, "map", "big", needs=map_bytes(1 << 17, 4096)).resource == MEMORY
    assert exhausted(-errno.ENOMEM, "program", "p", log="processed 12 insns").resource == MEMORY
    assert exhausted(errno.ENOMEM, "open").resource == MEMORY
    # the object's own: a map no guest (and practically no machine) can hold, a program the
    # verifier gave up on for its complexity, and every other errno
    assert exhausted(errno.ENOMEM, "map", "huge", needs=map_bytes(2**32 - 1, 4096)) is None
    log = "The sequence of 8193 jumps is too complex.\nverification time 12 usec\n"
    assert exhausted(errno.ENOMEM, "program", "p", log=log) is None
    for code in (None, 0, errno.EINVAL, errno.EACCES, errno.E2BIG, errno.EPERM):
        assert exhausted(code, "map", "m") is None
    assert map_bytes(1 << 17, 4096) == 512 << 20 and map_bytes(4096, 0) == 4096


def test_libbpf_going_on_without_btf_is_exhaustion():
    """libbpf treats an object's BTF as optional and loads on without it: with too few fds or too
    little memory the verdicts that followed would be another object's (libbpf <1.6 and >=1.6)."""
    assert from_libbpf_lines(["Error loading .BTF into kernel: -24. BTF is optional, ignoring."]).errno == 24
    assert from_libbpf_lines(["BTF loading error: -ENOMEM"]).resource == MEMORY
    assert from_libbpf_lines(["Detection of kernel BTF support failed: -23"]).resource == OPEN_FILES
    assert from_libbpf_lines(["Error loading .BTF into kernel: -22. BTF is optional, ignoring."]) is None
    assert from_libbpf_lines(["map 'm': failed to create: -12", "prog 'p': failed to load: -24"]) is None


def test_the_checker_blames_the_guest_not_the_object():
    """Checker._blame: a map that ran out of fds or memory ends the check (Exhausted), where it
    used to become the object's rejection; a map too big for any guest stays the object's."""
    c = Checker(b"", "x.o", attach=False)
    c.maps = {n: {"name": n, "type": "array", "ok": None, "errno": None} for n in ("m1", "big", "huge")}
    c.map_needs = {"m1": 8, "big": 512 << 20, "huge": map_bytes(2**32 - 1, 4096)}
    with pytest.raises(Exhausted) as e:
        c._blame(errno.EMFILE, ["map 'm1': failed to create: -24"], {}, {}, {}, False)
    assert (e.value.resource, e.value.stage, e.value.name) == (OPEN_FILES, "map", "m1")
    with pytest.raises(Exhausted) as e:
        c._blame(errno.ENOMEM, ["map 'big': failed to create: -12"], {}, {}, {}, False)
    assert (e.value.resource, e.value.needs) == (MEMORY, 512 << 20)
    assert c._blame(errno.ENOMEM, ["map 'huge': failed to create: -12"], {}, {}, {}, False)
    assert c.failed_maps == {"huge"} and c.maps["huge"]["errno"] == errno.ENOMEM
    with pytest.raises(Exhausted):  # the whole object (no program, no map named)
        c._blame(errno.EMFILE, ["libbpf: failed to load object 'x.o'"], {}, {}, {}, False)


def test_the_reply_is_a_code_the_host_words():
    e = exhausted(errno.EMFILE, "map", "m1999")
    reply = resources.reply(e, 7)
    assert reply["type"] == "error" and reply["code"] == "resource_exhausted" and reply["limit"] > 0
    assert guestmsg.problem(reply, "error") is None
    text = guestmsg.describe_error(reply)
    assert "ran out of open files" in text and "EMFILE" in text and "'m1999'" in text and "\n" not in text
    reply = {**resources.reply(exhausted(errno.ENOMEM, "map", "big", needs=512 << 20), 8), "limit": 250_000}
    text = guestmsg.describe_error(reply)
    assert "ran out of memory" in text and "244 MiB" in text and "512 MiB" in text and "--memory" in text
    # the guest's name is untrusted: bounded and printable in the host's words
    hostile = {**reply, "name": "x\n::warning::owned\x1b]8;;" + "y" * 500}
    text = guestmsg.describe_error(hostile)
    assert "\n" not in text and "\x1b" not in text and "y" * 65 not in text
    # a reply whose parameters are not what the contract says is not worded from them
    assert "unexpected reply" in guestmsg.describe_error({**reply, "resource": "disk"})
    assert "unexpected reply" in guestmsg.describe_error({**reply, "errno": "ENOMEM"})


def test_the_result_cache_keeps_no_exhaustion(tmp_path):
    rc = ResultCache(Cache(tmp_path), "image", {"attach": True})
    program = {"program": "p", "verdict": "rejected", "stage": "load", "errno": errno.EMFILE}
    for reply in (
        {"type": "check_result", "open": {"ok": True}, "programs": [program]},
        {"type": "check_result", "open": {"ok": False, "errno": errno.ENFILE}, "programs": []},
        {"type": "check_result", "open": {"ok": True}, "maps": [{"name": "m", "errno": 24}], "programs": []},
    ):
        rc.put("sha", "x.o", "kernel", reply, Inventory(), {"release": "6.1"}, "tcg")
        assert rc.get("sha", "x.o", "kernel") is None
    assert not list((tmp_path / KIND).glob("*.json"))
    fine = {"type": "check_result", "open": {"ok": True}, "programs": [{**program, "errno": errno.EACCES}]}
    rc.put("sha", "x.o", "kernel", fine, Inventory(), {"release": "6.1"}, "tcg")
    assert rc.get("sha", "x.o", "kernel") is not None


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
    cmd = [sys.executable, "-m", "compat", "check", *map(str, objs), "--kernel", KERNEL, "--format", "table",
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
