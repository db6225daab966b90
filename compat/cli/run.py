"""compat run: the team's own loader, run as root in each kernel's guest (never on the host).

Its parser (add_parser) is here beside the command; the run itself is compat/run/command.py and
its reports compat/reports/command.py, imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from compat.cache import Cache
from compat.errors import EXIT_USAGE, UserError
from compat.run.options import bounded

from .arch_option import add_arch_option

RUN_FORMATS = ("table", "json", "markdown")
MAX_COMMAND_SECONDS = 86400.0

_seconds = bounded(float, 0, MAX_COMMAND_SECONDS, f"a number of seconds above 0, at most {MAX_COMMAND_SECONDS:g}",
                   above=True)  # fmt: skip
_memory = bounded(int, 256, 65536, "MiB from 256 to 65536")


def add_parser(sub, jobs_type: Callable[[str], int | float]) -> None:
    """The run command's parser; ``jobs_type`` is the parser's bounded --jobs type."""
    p = sub.add_parser(
        "run", help="run your own loader (a binary or script) as root in each kernel's guest",
        usage="compat run [--kernel ID]… [--matrix F] [--arch ARCH] [--with PATH]… [--timeout S] [--running-ok] "
        "[--format F --output FILE]… -- COMMAND [ARG…]",
    )  # fmt: skip
    p.add_argument("--matrix", type=Path, help="kernel matrix file (default: the shipped matrix.yaml)")
    p.add_argument("--kernel", action="append", metavar="ID", help="only this kernel (repeatable), as for check")
    add_arch_option(p)
    p.add_argument("--refresh", action="store_true", help="refresh the archive index now")
    p.add_argument("--with", dest="with_paths", action="append", default=[], metavar="PATH",
                   help="a file or directory the command needs, put in its working directory under its own "
                   "name (repeatable)")  # fmt: skip
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="S",
                   help="seconds the command may run on each kernel; then it is stopped (default 60)")  # fmt: skip
    p.add_argument("--running-ok", action="store_true",
                   help="a command still running at --timeout succeeded (daemons never exit)")  # fmt: skip
    p.add_argument("--no-fidelity", dest="fidelity", action="store_false",
                   help="do not check the BPF objects the command embeds the generic way")  # fmt: skip
    p.add_argument("--memory", dest="memory_mb", type=_memory, default=512, metavar="MIB",
                   help="memory of each guest in MiB (default 512)")  # fmt: skip
    p.add_argument("--jobs", type=jobs_type, help="VMs at once (default: number of cores)")
    p.add_argument("--format", action="append", dest="formats", metavar="FMT",
                   help="table (default), json, markdown; repeatable")  # fmt: skip
    p.add_argument("--output", action="append", dest="outputs", metavar="FILE", help="write the n-th --format here")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG…]",
                   help="the loader and its arguments (after --)")  # fmt: skip


def cmd_run(args: argparse.Namespace, cache: Cache) -> int:
    """Run the command on every kernel and report; exit 0 when it succeeded everywhere, 1 when it
    failed on some kernel, 2 on bad input (before any guest boots), 3 when a kernel gave no answer."""
    from compat.kernels.matrix import load_matrix
    from compat.objects.loader import prepare
    from compat.reports import outputs
    from compat.reports.command import render
    from compat.run.command import RunOptions, run_command

    from .shown import _shown

    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UserError("compat run needs a command", "compat run [OPTIONS] -- COMMAND [ARG…]")
    planned = outputs.plan(args.formats, args.outputs, list(RUN_FORMATS))
    matrix = load_matrix(args.matrix, args.arch)
    specs = matrix.select(list(args.kernel or []))
    if any(s.releases for s in specs):
        from compat.kernels.series import expand
        from compat.kernels.sources import KernelStore

        specs = expand(KernelStore(cache, refresh=args.refresh), specs)
    arches = {s.arch for s in specs}
    prepared = prepare(command[0], command[1:], args.with_paths, arches)
    options = RunOptions(timeout=args.timeout, running_ok=args.running_ok, jobs=args.jobs, refresh=args.refresh,
                         memory_mb=args.memory_mb, fidelity=args.fidelity,
                         test_faults=os.environ.get("COMPAT_TEST_FAULTS") == "1")  # fmt: skip
    result = run_command(cache, specs, prepared, options)
    outputs.write(planned, lambda fmt: render(fmt, result))
    status = result.status()
    ok = sum(1 for k in result.kernels if k.ok)
    failed = [k.kernel for k in result.kernels if k.ok is False]
    errors = [k.kernel for k in result.kernels if k.ok is None]
    line = f"compat: run: {ok} of {len(result.kernels)} kernel(s) ok"
    if failed:
        line += f"; failed on {', '.join(failed[:5])}"
    if errors:
        line += f"; no answer from {', '.join(errors[:5])}"
    print(_shown(line), file=sys.stderr)
    return status if status in (0, 1, 3) else EXIT_USAGE
