"""Objects with legacy map definitions (struct bpf_map_def in 'maps' sections), which libbpf 1.x
refuses to open: compat's own legacy-map loader (guest-agent/compat_agent/checker/legacy.py) parses them
on the host here, and gives their programs the kernel's verdicts in a real guest."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from compat_agent.checker import legacy


def test_maps_programs_subprograms_and_map_references_are_read(legacy_object):
    maps, programs, license, _ = legacy.parse(legacy_object.read_bytes())
    assert [(m.name, m.map_type, m.key_size, m.value_size, m.max_entries) for m in maps] == [
        ("counts", 2, 4, 8, 4),
        ("events", 4, 4, 4, 0),  # a perf event array its loader sizes: one entry per CPU when created
    ]
    by_name = {p.name: p for p in programs}
    assert [(p.name, p.section) for p in programs] == [
        ("count_packets", "xdp"), ("read_unchecked", "xdp"), ("send_event", "kprobe/do_nanosleep"),
        ("gone", "kretprobe/compat_no_such_function"), ("on_getpid", "tracepoint/syscalls/sys_enter_getpid"),
        ("keep_all", "socket"), ("sample", "perf_event"),
    ]  # fmt: skip
    assert license == "GPL" and by_name["send_event"].maps == ["events"]
    # count_packets calls bump() in .text: appended, the call pointed at it, its map reference kept.
    count = by_name["count_packets"]
    assert count.maps == ["counts"] and len(count.insns) > 16
    calls = [at for at in range(0, len(count.insns), 8) if count.insns[at] == 0x85 and count.insns[at + 1] >> 4 == 1]
    assert len(calls) == 1
    imm = struct.unpack_from("<i", count.insns, calls[0] + 4)[0]
    target = calls[0] // 8 + imm + 1
    assert 0 < target * 8 < len(count.insns) and target * 8 >= len(count.insns) - 0x58  # into the .text copy
    patched = count.patched({"counts": 7})
    at = count.refs[0][0]
    assert patched[at + 1] >> 4 == 1 and struct.unpack_from("<i", patched, at + 4)[0] == 7  # BPF_PSEUDO_MAP_FD


def test_what_a_legacy_loader_cannot_do_is_said(built_programs):
    with pytest.raises(legacy.Unsupported) as e:
        legacy.parse(built_programs["core_task_state"].read_bytes())
    assert (e.value.kind, e.value.params) == ("core_relocations", {})
    assert legacy.is_legacy("libbpf: elf: legacy map definitions in 'maps' section are not supported by libbpf v1.0+")
    assert legacy.is_legacy("bad map relo against 'tcpsock' in section 'maps/tcpsock'")


def test_damaged_objects_are_unsupported_never_a_crash(legacy_object):
    # The agent parses untrusted bytes: anything wrong is Unsupported (an object error), not an exception.
    data = legacy_object.read_bytes()
    rng = random.Random(7)
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randrange(1, 30)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        with contextlib.suppress(legacy.Unsupported):
            legacy.parse(bytes(damaged))
    for end in range(0, len(data), 61):
        with contextlib.suppress(legacy.Unsupported):
            legacy.parse(data[:end])
