"""Short fuzz runs of the host's parsers of untrusted input in every test run (the guests' run
on mutated objects is tests/vm/test_fuzz_vm.py) (fixed seeds: a failure reproduces with the same numbers). The long
run (100 000 host inputs, 1 000 mutants in guests) is `python tests/fuzz/fuzz_inputs.py --long`;
see its docstring."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))

import elfmut
from compat_agent.wire.framing import ChannelClosed, ProtocolError, read_frame
from fuzz_inputs import SEEDS, check_refusal, run

from compat.objects.objfile import BadObject, inspect_bytes, read_objects
from compat.objects.sourcemap import LineTable

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def test_mutated_objects_frames_and_replies():
    """2 000 host inputs from the committed seeds: structure-aware and blind object mutants,
    frames and replies; no exception but the documented ones, no hang."""
    results = run(objects=1000, frames=500, replies=500, seed=20240601, quiet=True)
    for stats in results:
        assert not stats.findings, f"{stats.line()}\n{stats.findings[0][2]}"
    objects = results[0]
    assert objects.inputs == 1000 and objects.outcomes.get("accepted") and objects.outcomes.get("refused")
    assert objects.outcomes.get("accepted embedded")  # some went through compat.objects.embedded's carving


def test_seed_corpus_is_small_and_checkable():
    seeds = sorted(SEEDS.glob("*.o"))
    assert len(seeds) >= 15 and sum(p.stat().st_size for p in seeds) < 1 << 20
    names = {p.stem for p in seeds}
    assert {"legacy_maps", "counter_nobtf", "bpf_loop_dwarf_only", "skeleton_x86"} <= names
    for p in seeds:
        assert read_objects(p), p  # every seed is an object compat checks (the skeleton: one embedded)
    assert LineTable(SEEDS.joinpath("bpf_loop_dwarf_only.o").read_bytes()).source == "dwarf"


def test_the_mutator_finds_every_structure_of_the_seeds():
    kinds: set[str] = set()
    records: set[str] = set()
    for p in SEEDS.glob("*.o"):
        s = elfmut.parse(p.read_bytes())
        assert s is not None, p
        kinds |= set(s.fields)
        records |= {r.kind for r in s.records}
    assert {"sh_offset", "sh_size", "st_name", "r_sym", "insn_imm", "map_def", "btf_header", "btf_info",
            "btf_extra", "func_info_type_id", "line_info_line_off", "core_relo_access_str_off"} <= kinds  # fmt: skip
    assert {"symbol", "relocation", "btf_type", "func_info", "line_info", "core_relo"} <= records


def test_duplicated_or_deleted_records_keep_the_object_whole():
    """Record mutations fix the counts and offsets that frame them, so they reach the parsers of
    BTF, line info and relocations instead of stopping at the ELF header."""
    data = SEEDS.joinpath("core_task_state.o").read_bytes()
    s = elfmut.parse(data)
    assert s is not None
    for r in s.records:
        if r.kind == "symbol":
            continue  # deleting a program's symbol may leave no program: also fine, but not the point
        for grow in (True, False):
            buf = bytearray(data)
            for off, size, change in r.fixups:
                elfmut.put_int(buf, off, size, elfmut.get_int(buf, off, size) + (change if grow else -change))
            if grow:
                buf[r.offset : r.offset] = data[r.offset : r.offset + r.size]
            else:
                del buf[r.offset : r.offset + r.size]
            elfmut._move(buf, s, r.offset + 1 if grow else r.offset + r.size, r.size if grow else -r.size)
            assert inspect_bytes(bytes(buf), "x.o"), (r.kind, grow)
            assert LineTable(bytes(buf)).source == "btf", (r.kind, grow)


def test_mutations_are_reproducible():
    data = SEEDS.joinpath("legacy_maps.o").read_bytes()
    s = elfmut.parse(data)
    others = [(data, s)]
    one = [elfmut.mutate(random.Random(7), data, s, others) for _ in range(3)]
    assert one == [elfmut.mutate(random.Random(7), data, s, others) for _ in range(3)]


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=256))
def test_read_frame_raises_only_protocol_errors(data):
    stream = io.BytesIO(data)

    def read_exact(n):
        chunk = stream.read(n)
        if len(chunk) < n:
            raise ChannelClosed("channel closed")
        return chunk

    try:
        message, _ = read_frame(read_exact, max_payload=1 << 20)
    except ProtocolError:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512), header=st.booleans())
def test_inspect_bytes_reports_bad_objects_in_one_line(data, header):
    if header:  # past the magic check, into the ELF parser
        data = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x01\x00\xf7\x00" + data
    try:
        inspect_bytes(data, "x.o")
    except BadObject as e:
        assert "\n" not in str(e) and str(e).startswith("x.o: ")
    else:
        pytest.fail("random bytes were taken for a BPF object")


def test_texts_from_the_file_are_escaped_in_the_one_line_report(built_programs):
    """Found by the fuzzer: a damaged section name (newlines, control bytes) was printed raw."""
    import struct

    from elftools.elf.elffile import ELFFile

    data = bytearray(built_programs["counter"].read_bytes())
    elf = ELFFile(io.BytesIO(bytes(data)))
    strtab = elf.get_section(elf["e_shstrndx"])
    index = next(i for i in range(1, elf.num_sections()) if elf.get_section(i).name == "license")
    name_at = strtab["sh_offset"] + elf.get_section(index)["sh_name"]
    data[name_at : name_at + 7] = b"li\ncen\x1b"  # same length as "license"
    header = elf["e_shoff"] + index * elf["e_shentsize"]
    struct.pack_into("<Q", data, header + 32, len(data))  # sh_size: past the end of the file
    with pytest.raises(BadObject) as e:
        inspect_bytes(bytes(data), "x.o")
    assert str(e.value) == "x.o: truncated ELF (section li\\ncen\\x1b ends past the end of the file)"


def test_a_stopped_fuzz_run_leaves_nothing_behind(tmp_path):
    """SIGTERM (a CI job cancelled, a long run stopped) unwinds the fuzzer: before, its work
    directory (and a running compat check) stayed behind."""
    import os
    import signal
    import subprocess
    import time

    script = FUZZ / "fuzz_inputs.py"
    proc = subprocess.Popen([sys.executable, str(script), "--objects", "100000", "--frames", "0", "--replies", "0"],
                            env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("compat-fuzz-*/input.o")) and time.monotonic() < deadline:
        time.sleep(0.1)  # fuzzing has begun
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert not list(tmp_path.iterdir())


def test_a_bidi_control_in_a_section_name_is_shown_escaped():
    """Found by the long run (seed 14): a section name holding U+202E (right-to-left override) in
    a refused object's message was taken for a broken report; compat prints it escaped ("\\u202e"),
    as the one escaping module does for every writer."""
    from compat.reports.escape import terminal

    finding = FUZZ / "findings" / "bidi-section-name.o"
    with pytest.raises(BadObject) as e:
        read_objects(finding)
    check_refusal(str(e.value), str(finding))
    assert "\\u202e" in terminal(str(e.value)) and "\u202e" not in terminal(str(e.value))
