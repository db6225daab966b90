"""The --arch option, shared by every command that names kernels (its own module: options.py and
bisect_options.py both take it, and options.py imports bisect_options)."""

from __future__ import annotations

import argparse

from compat.errors import UserError


def arch_type(text: str) -> str:
    """--arch: an architecture compat boots (Debian's names: amd64, arm64)."""
    from compat.kernels.matrix import check_arch

    try:
        return check_arch(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arch_option(p: argparse.ArgumentParser) -> None:
    """--arch: the architecture of the matrix's kernels that name none and of debian:SERIES."""
    p.add_argument("--arch", type=arch_type, metavar="ARCH",
                   help="kernels of this architecture: amd64 (default) or arm64 (the matrix's entries that "
                   "name no arch, and debian:SERIES, become the arm64 builds of the same series; ids get "
                   "-arm64)")  # fmt: skip
