"""The one table of architectures (compat/arch.py) and the names each layer takes from it."""

from __future__ import annotations

import os

import pytest

from compat import arch
from compat.errors import UserError
from compat.guest.image import LAYOUTS
from compat.kernels.imagearch import head_arch
from compat.kernels.matrix import check_arch


def test_every_name_of_each_architecture():
    amd64, arm64 = arch.ARCHES["amd64"], arch.ARCHES["arm64"]
    assert arch.DEFAULT_ARCH == "amd64"
    assert (amd64.uname, amd64.machine, amd64.triplet) == ("x86_64", 62, "x86_64-linux-gnu")
    assert (arm64.uname, arm64.machine, arm64.triplet) == ("aarch64", 183, "aarch64-linux-gnu")
    assert arch.by_machine(183) is arm64 and arch.by_machine(243) is None
    assert arch.machine_words(62) == "x86-64" and arch.machine_words(243) == "riscv"
    assert arch.machine_words(9999) == "machine 9999"
    assert arch.alias_of("AArch64") == "arm64" and arch.alias_of("x86_64") == "amd64" and arch.alias_of("mips") is None
    own = arch.host()
    assert own is not None and own.uname == os.uname().machine


def test_layers_take_their_names_from_the_table():
    from compat.guest.vm import ARCH_BOOT

    assert set(ARCH_BOOT) == set(arch.ARCHES) and ARCH_BOOT["arm64"].uname == "aarch64"
    assert {name: layout.triplet for name, layout in LAYOUTS.items()} == {
        name: a.triplet for name, a in arch.ARCHES.items()
    }
    elf = b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little") + bytes(44)
    assert head_arch(elf) == "arm64"
    assert check_arch("arm64") == "arm64"
    with pytest.raises(UserError, match="unknown arch 'aarch64'") as e:
        check_arch("aarch64")
    assert "Debian calls it arm64" in str(e.value.hint)


def test_one_command_line_mixes_architectures():
    """--kernel ID-arm64 is the kernel ID on arm64 (a matrix id or a debian: name); amd64 ids stay."""
    from compat.kernels.matrix import load_matrix

    specs = load_matrix().select(["6.12", "6.12-arm64", "debian:6.1.192-arm64"])
    assert [(s.id, s.arch) for s in specs] == [("6.12", "amd64"), ("6.12-arm64", "arm64"),
                                               ("debian:6.1.192-arm64", "arm64")]  # fmt: skip
    assert specs[1].series == specs[0].series and specs[1].flavour == "arm64"
    with pytest.raises(UserError, match=r"unknown kernel '6\.12-sparc'"):
        load_matrix().select(["6.12-sparc"])
