"""The parser of compat bisect (apart from its command, so that cli/options.py can add it
without importing the command's module and what that imports)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from compat.run.options import Placed

from .arch_option import add_arch_option

BISECT_FORMATS = ("table", "json", "markdown")


def add_parser(sub, jobs_type: Callable[[str], int | float]) -> None:
    """The bisect command's parser: its own options, then every row of the check options' table
    (run/options.py: --set-global, --program-type, --attach-target, …), as `compat check` has them;
    ``jobs_type`` is the parser's bounded --jobs type (cli/options.py)."""
    p = sub.add_parser("bisect", help="the point release of a stable series where a program's verdict changed")
    p.add_argument("objects", nargs="+", metavar="OBJ",
                   help="BPF object files (clang -target bpf), directories of them, or binaries that embed them")
    p.add_argument("--series", required=True, metavar="SERIES",
                   help="a stable series (6.12, 6.1, 5.10: Debian's point releases of it) or a matrix entry's id")
    p.add_argument("--from", dest="first", metavar="VERSION",
                   help="the oldest release of the range (default: the oldest)")
    p.add_argument("--to", dest="last", metavar="VERSION", help="the newest release of the range (default: the newest)")
    p.add_argument("--exhaustive", action="store_true",
                   help="check every release and report every change, also one that was later undone")  # fmt: skip
    add_series_run_options(p, jobs_type)
    add_arch_option(p)
    Placed(p).rest()  # the check options' table: the same flags and meaning as in compat check


def add_series_run_options(p: argparse.ArgumentParser, jobs_type: Callable[[str], int | float]) -> None:
    """The options of every command that checks objects over a series' point releases (bisect,
    selftests): which kernels (flavour, matrix, refresh), how (jobs, result cache) and its reports."""
    p.add_argument("--flavour", help="kernel flavour (amd64 by default, cloud-amd64, …)")
    p.add_argument("--matrix", type=Path, help="kernel matrix file whose entry --series may name")
    p.add_argument("--refresh", action="store_true", help="refresh the archive index now")
    p.add_argument("--jobs", type=jobs_type, help="VMs at once (default: number of cores)")
    p.add_argument("--format", action="append", dest="formats", metavar="FMT",
                   help="table (default), json, markdown; repeatable")  # fmt: skip
    p.add_argument("--output", action="append", dest="outputs", metavar="FILE", help="write the n-th --format here")
    p.add_argument("--no-cache", dest="result_cache", action="store_false",
                   help="verify every object again: neither use nor fill the result cache")  # fmt: skip
