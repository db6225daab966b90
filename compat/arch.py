"""The architectures compat boots, as one table: every name one of them goes by.

Kernels, guest images, QEMU, the loader `compat run` takes and the reports each need a different
name for the same architecture: Debian's (amd64, the matrix's `arch:`), the kernel's and QEMU's
(x86_64, `uname -m`), the kernel source's (arch/x86), the ELF header's machine number (62) and
the words `file` uses for it (x86-64), the multiarch triplet of its library directories
(x86_64-linux-gnu) and the tag `ldconfig -p` prints. They come from here. What is particular to
one layer (QEMU's machine and CPU model: guest/vm.py; the dynamic loader's paths in the guest
image: guest/image.py) stays there, keyed by ARCHES' names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    """One architecture, by each of its names."""

    name: str  # Debian's (dpkg --print-architecture): amd64
    uname: str  # the kernel's and QEMU's (uname -m): x86_64
    srcarch: str  # the kernel source's (arch/x86, -D__TARGET_ARCH_x86 for bpf_tracing.h): x86
    machine: int  # ELF e_machine: EM_X86_64 62
    words: str  # how people and `file` say it: x86-64
    triplet: str  # multiarch library directory: x86_64-linux-gnu
    ldconfig: str  # the tag `ldconfig -p` gives its libraries: x86-64
    aliases: tuple[str, ...] = ()  # other names users write for it (named in errors, never accepted)


# The first is the default: a matrix entry that names none is amd64, so amd64 ids, cache keys and
# results stay what they were before compat knew other architectures.
ARCHES: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("amd64", "x86_64", "x86", 62, "x86-64", "x86_64-linux-gnu", "x86-64", ("x86_64", "x86-64", "x64")),
        Arch("arm64", "aarch64", "arm64", 183, "arm64 (aarch64)", "aarch64-linux-gnu", "AArch64",
             ("aarch64", "arm64e")),
    )
}
DEFAULT_ARCH = next(iter(ARCHES))
# ELF machines compat does not boot, for the words of an error ("built for riscv").
OTHER_MACHINES = {3: "i386", 40: "arm (32-bit)", 243: "riscv", 247: "bpf"}


def by_machine(machine: int) -> Arch | None:
    """The architecture of an ELF e_machine, or None for one compat does not boot."""
    return next((a for a in ARCHES.values() if a.machine == machine), None)


def machine_words(machine: int) -> str:
    """An ELF e_machine in words: "x86-64", "riscv", "machine 9999"."""
    known = by_machine(machine)
    return known.words if known else OTHER_MACHINES.get(machine, f"machine {machine}")


def alias_of(text: str) -> str | None:
    """The Debian name of an architecture written another way (x86_64 -> amd64), or None."""
    low = text.lower()
    return next((a.name for a in ARCHES.values() if low in a.aliases), None)


def host() -> Arch | None:
    """This host's architecture, or None when compat does not boot guests of it."""
    return next((a for a in ARCHES.values() if a.uname == os.uname().machine), None)
