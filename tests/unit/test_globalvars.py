"""--set-global: values parsed, encoded and placed in the objects that define the variable, and
the verdict a loader's configuration changes on a real kernel."""

from __future__ import annotations

import pytest
from compat_agent.elf.analysis import analyze_elf

from compat.errors import UserError
from compat.objects.globalvars import Assignment, check_defined, encode, parse, resolve


def test_values_are_integers_or_booleans():
    assert parse("cfg_debug=1") == Assignment("cfg_debug", 1)
    assert parse(" mask = 0xff ") == Assignment("mask", 255)
    assert parse("delta=-3").value == -3
    assert parse("enabled=true").value == 1 and parse("enabled=False").value == 0
    for bad in ("x", "=1", "x=", "x=1.5", "x=one"):
        with pytest.raises(UserError):
            parse(bad)


def test_values_are_little_endian_and_must_fit():
    assert encode(1, 4) == b"\x01\x00\x00\x00"
    assert encode(-1, 2) == b"\xff\xff"
    assert encode(255, 1) == b"\xff" and encode(-128, 1) == b"\x80"
    assert encode(256, 1) is None and encode(-129, 1) is None


def test_each_object_gets_the_writes_of_the_variables_it_defines():
    variables = {"unsafe_mode": (".rodata", 4, 4), "small": (".rodata", 0, 1)}
    writes = resolve([Assignment("unsafe_mode", 1), Assignment("other", 2)], variables, "cfg.o")
    assert writes == [{"name": "unsafe_mode", "section": ".rodata", "offset": 4, "bytes": "01000000", "value": 1}]
    with pytest.raises(UserError, match="'small' has 1 byte"):
        resolve([Assignment("small", 300)], variables, "cfg.o")
    check_defined([Assignment("small", 1)], [{}, variables])
    with pytest.raises(UserError, match="no object defines a global variable 'typo'"):
        check_defined([Assignment("typo", 1)], [variables])


def test_an_object_s_globals_come_from_its_symbol_table(configured):
    found = analyze_elf(configured.read_bytes()).variables
    assert found["unsafe_mode"][0] == ".rodata" and found["unsafe_mode"][2] == 4
    assert found["hits"][0] == ".bss" and found["hits"][2] == 4
