"""The parser of compat selftests (apart from its command, so that cli/options.py can add it
without importing the command's module and what that imports)."""

from __future__ import annotations

from collections.abc import Callable

from compat.run.options import Placed

from .arch_option import add_arch_option
from .bisect_options import add_series_run_options

SELFTESTS_FORMATS = ("table", "json", "markdown")
MAX_LIMIT = 100_000


def _limit(text: str) -> int:
    """--limit N: a positive number of selftest source files."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= n <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{n}: between 1 and {MAX_LIMIT}")
    return n


def add_parser(sub, jobs_type: Callable[[str], int | float]) -> None:
    """The selftests command's parser; ``jobs_type`` is the parser's bounded --jobs type."""
    p = sub.add_parser("selftests", help="the kernel's BPF selftests, judged by their own annotations, on a series")
    p.add_argument("--series", required=True, metavar="SERIES",
                   help="a stable series (6.12, 6.1, 5.10: Debian's point releases of it) or a matrix entry's id")
    p.add_argument("--from", dest="first", metavar="VERSION", help="the oldest release (default: the oldest)")
    p.add_argument("--to", dest="last", metavar="VERSION", help="the newest release (default: the newest)")
    p.add_argument("--source", metavar="VERSION",
                   help="the Debian version of linux-source-SERIES to build (default: the newest in the archive)")
    p.add_argument("--limit", type=_limit, metavar="N",
                   help="build and check a deterministic sample of N selftest source files (default: all)")
    add_series_run_options(p, jobs_type)
    add_arch_option(p)
    Placed(p).add("privileges")  # check's --privilege row: each release under each mode
