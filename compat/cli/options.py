"""The command line's parser: every command, option and its bounds (one error line for a bad value)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compat import __version__
from compat.errors import EXIT_USAGE, UserError
from compat.results.gate import FAIL_ON
from compat.run.options import Placed
from compat.run.options import bounded as _bounded
from compat.run.options import step_seconds as _step_seconds

from .arch_option import add_arch_option
from .arch_option import arch_type as _arch


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        self.exit(EXIT_USAGE, f"compat: error: {message} (see '{self.prog} --help')\n")


def _kernel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", type=Path, help="kernel matrix file (default: the shipped matrix.yaml)")
    p.add_argument(
        "--kernel", action="append", metavar="ID", help="only this kernel (repeatable): a matrix id, "
        "debian:SERIES, debian:VERSION or a kernel image path",
    )  # fmt: skip
    add_arch_option(p)
    p.add_argument("--refresh", action="store_true", help="refresh the archive index now")


KEEP_DAYS = 30.0  # cache entries unused for this long are pruned (COMPAT_CACHE_KEEP_DAYS)


# Ranges of the numeric options (README, "Resource bounds"). --jobs: each guest is one QEMU
# process with a core and --memory of its own; past 64 a machine runs out of memory or threads
# (100 000 aborted the process) long before guests run faster, and one fixed range keeps a CI
# configuration valid on every runner. Timeouts: a week for a run (longer than any CI job), a
# day for one object or program (the defaults are 900 and 300 s).
MAX_JOBS = 64


MAX_RUN_SECONDS, MAX_DAYS, MAX_SHARDS = 7 * 86400, 36500, 10000


_jobs = _bounded(int, 1, MAX_JOBS, f"a number of guests from 1 to {MAX_JOBS}")


_run_seconds = _bounded(float, 0, MAX_RUN_SECONDS, f"a number of seconds above 0, at most {MAX_RUN_SECONDS} (7 days)",
                        above=True)  # fmt: skip


_days_type = _bounded(float, 0, MAX_DAYS, f"a number of days from 0 to {MAX_DAYS}")


def _days(text: str) -> float:
    """--days (and COMPAT_CACHE_KEEP_DAYS): a number of days, 0 or more (finite)."""
    return _days_type(text)


def _shard(text: str) -> str:
    """--shard I/N, checked when parsed: 1 <= I <= N <= MAX_SHARDS."""
    from compat.run.shard import Shard

    try:
        shard = Shard.parse(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--shard ")) from None
    if shard.count > MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{text}: at most {MAX_SHARDS} shards")
    return text


FORMATS_HELP = ("table (default), json, markdown, github, junit, sarif, csv (veristat's columns), requirements "
                "(minimum kernel per program; requirements-json); repeatable")


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", action="append", dest="formats", metavar="FMT", help=FORMATS_HELP)
    p.add_argument("--output", action="append", dest="outputs", metavar="FILE", help="write the n-th --format here")
    p.add_argument("--baseline", type=Path, metavar="OLD.json", help="compare with an earlier result file")
    p.add_argument("--fail-on", choices=FAIL_ON, default="regression",
                   help="what fails the gate (exit 1): regression (default; and required-kernel rejections "
                   "without a baseline), rejection, expectation (a selftest annotation not met), never")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="compat", description="Check which kernels accept your BPF programs.")
    parser.add_argument("--version", action="version", version=f"compat {__version__}")
    parser.add_argument("--cache", type=Path, help="cache directory (default: $COMPAT_CACHE or ~/.cache/compat)")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true",
                      help="no progress and no warnings on stderr, only errors")  # fmt: skip
    loud.add_argument("-v", "--verbose", action="count", default=0,
                      help="say more on stderr: -v what compat decides (accelerator, cache), "
                      "-vv debug details")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    kernels = sub.add_parser("kernels", help="list, fetch and discover kernels")
    ksub = kernels.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    ksub.required = True
    p = ksub.add_parser("list", help="matrix kernels: resolved version, cached or not")
    _kernel_options(p)
    p.add_argument("--json", action="store_true", help="print JSON (keys: see the README)")
    p = ksub.add_parser("fetch", help="download and cache kernels")
    p.add_argument("ids", nargs="*", metavar="ID")
    _kernel_options(p)
    p = ksub.add_parser("available", help="point releases of a series in the archive, newest first")
    p.add_argument("series", help="e.g. 6.1")
    p.add_argument("--flavour", default="",
                   help="amd64 (default), cloud-amd64, …; arm64, cloud-arm64 with --arch arm64")  # fmt: skip
    add_arch_option(p)
    p.add_argument("--suite", help="only this suite")
    p.add_argument("--refresh", action="store_true", help="refresh the archive index now")
    p.add_argument("--json", action="store_true", help="print JSON (keys: see the README)")

    image = sub.add_parser("image", help="the guest image")
    isub = image.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    isub.required = True
    p = isub.add_parser("build", help="build the guest image now (normally automatic)")
    p.add_argument("--arch", type=_arch, default="amd64", metavar="ARCH", help="amd64 (default) or arm64")
    p = isub.add_parser("info", help="what the cached guest image contains")
    p.add_argument("--arch", type=_arch, default="amd64", metavar="ARCH", help="amd64 (default) or arm64")
    p.add_argument("--json", action="store_true", help="print JSON (keys: see the README)")

    cache = sub.add_parser("cache", help="the cache")
    csub = cache.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    p = csub.add_parser("info", help="where the cache is and what it holds")
    p.add_argument("--json", action="store_true", help="print JSON (keys: see the README)")
    p = csub.add_parser("clean", help="delete cached entries")
    p.add_argument("kinds", nargs="*", metavar="KIND", help="only these kinds (kernels, images, apt, …)")
    p = csub.add_parser("prune", help="delete entries no run has used for some days")
    p.add_argument("--days", type=_days, default=KEEP_DAYS, metavar="N",
                   help=f"unused for more than N days (default {KEEP_DAYS:g}; 0: all not in use now)")  # fmt: skip
    p.add_argument("kinds", nargs="*", metavar="KIND", help="only these kinds (images, initrd, snapshots, …)")
    p = csub.add_parser("verify", help="check every entry against its digests; remove damaged ones")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("kinds", nargs="*", metavar="KIND", help="only these kinds (kernels, snapshots, results, …)")

    p = sub.add_parser("check", help="load every program of the objects on every kernel")
    p.add_argument(
        "objects", nargs="+", metavar="OBJ",
        help="BPF object files (clang -target bpf), directories of them, or binaries that embed them",
    )  # fmt: skip
    _kernel_options(p)
    p.add_argument("--jobs", type=_jobs, help=f"VMs at once, 1-{MAX_JOBS} (default: number of cores)")
    table = Placed(p)  # the check options' table (run/options.py): each row where --help has always had it
    table.add("attach")
    _report_options(p)
    p.add_argument(
        "--baseline-object", action="append", dest="baseline_objects", metavar="OBJ",
        help="an earlier build of the objects, checked in the same run (programs matched by name)",
    )  # fmt: skip
    p.add_argument("--object-timeout", type=_step_seconds, default=None, metavar="S",
                   help="seconds per object per kernel")  # fmt: skip
    table.add("global_values", "program_types", "attach_targets", "program_timeout")
    p.add_argument(
        "--timeout",
        type=_run_seconds,
        default=None,
        metavar="S",
        help="deadline for the whole run: unfinished cells become errors, results so far are reported",
    )
    table.add("memory_mb")
    p.add_argument(
        "--no-cache",
        dest="result_cache",
        action="store_false",
        help="verify every object again: neither use nor fill the result cache",
    )
    p.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="check only the I-th of N equal parts of the kernel × object "
        "matrix (a CI job matrix; 'compat merge' combines the parts' result files)",
    )
    p.add_argument(
        "--source-root",
        action="append",
        dest="source_roots",
        metavar="DIR",
        help="a directory the objects' source files may be read from to show a rejection's line "
        "(repeatable; the current directory always is one; nothing outside them, nor under /proc, /sys, "
        "/dev, is read)",
    )
    table.rest()  # options of the table placed nowhere above

    p = sub.add_parser("report", help="render a saved result file again (no VMs)")
    p.add_argument("result", type=Path, metavar="RESULT.json", help="a result file of compat check --format json")
    _report_options(p)

    p = sub.add_parser("merge", help="combine the result files of shards (check --shard I/N) into one report")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULT.json", help="result files (--format json)")
    _report_options(p)

    p = sub.add_parser("probe", help="what each kernel offers: program/map types, helpers, kfuncs")
    _kernel_options(p)
    p.add_argument("--jobs", type=_jobs, help=f"VMs at once, 1-{MAX_JOBS} (default: number of cores)")
    p.add_argument("--diff", action="store_true", help="what each kernel adds or removes relative to the previous one")
    p.add_argument("--kfunc", action="append", default=[], help="also probe where this kfunc may be called")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")

    vm = sub.add_parser("vm", help="boot guests")
    vsub = vm.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    vsub.required = True
    p = vsub.add_parser("smoke", help="boot each kernel and report what the guest sees")
    _kernel_options(p)
    p.add_argument("--jobs", type=_jobs, help=f"VMs at once, 1-{MAX_JOBS} (default: number of cores)")
    p.add_argument("--json", action="store_true", help="print JSON (keys: see the README)")

    from .bisect_options import add_parser as add_bisect

    add_bisect(sub, _jobs)
    from .selftests_options import add_parser as add_selftests

    add_selftests(sub, _jobs)
    from .run import add_parser as add_run

    add_run(sub, _jobs)
    return parser
