"""Short fuzz runs of the host's parsers of untrusted input, in every test run. The full run
(10 000 objects and more) is `python tests/fuzz/fuzz_inputs.py`; see its docstring."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))

from compat_agent.protocol import ChannelClosed, ProtocolError, read_frame
from fuzz_inputs import run

from compat.objfile import BadObject, inspect_bytes


def test_mutated_objects_frames_and_replies(built_programs):
    corpus = Path(next(iter(built_programs.values()))).parent
    results = run(objects=400, frames=1500, replies=1500, seed=20240601, corpus_dir=corpus, quiet=True)
    for stats in results:
        assert not stats.findings, f"{stats.line()}\n{stats.findings[0][2]}"
    objects = results[0]
    assert objects.inputs == 400 and objects.outcomes.get("accepted") and objects.outcomes.get("refused")


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
