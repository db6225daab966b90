"""The compat command line. Every failure becomes one line on stderr and a documented exit status.

options.py builds the parser (every command and option, with its bounds); each command is a
function of the module of its subject: kernels.py (kernels, image, vm, probe), cache.py (cache),
check.py (check, report, merge); shown.py prints texts from objects, guests and kernels escaped.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from compat import progress
from compat.cache import Cache
from compat.errors import EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CompatError

from .bisect import cmd_bisect
from .cache import cmd_cache
from .check import cmd_check, cmd_merge, cmd_report
from .kernels import cmd_image, cmd_kernels, cmd_probe, cmd_vm
from .options import build_parser
from .run import cmd_run
from .selftests import cmd_selftests
from .shown import _shown

COMMANDS = {
    "kernels": cmd_kernels,
    "image": cmd_image,
    "cache": cmd_cache,
    "vm": cmd_vm,
    "check": cmd_check,
    "report": cmd_report,
    "merge": cmd_merge,
    "probe": cmd_probe,
    "bisect": cmd_bisect,
    "selftests": cmd_selftests,
    "run": cmd_run,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the compat command: its exit status, returned (python -m compat and the
    console script exit with it; a caller in Python gets it, never SystemExit)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, a usage error: argparse has printed what to say
        return e.code if isinstance(e.code, int) else EXIT_USAGE if e.code else EXIT_OK
    # A CI job being cancelled (SIGTERM) cleans up like Ctrl-C: guests killed, temporaries removed.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    logger = logging.getLogger("compat")
    saved_logging = logger.level, logger.propagate, list(logger.handlers)
    # Progress and log lines go to stderr through one sink (compat/progress.py): reports own stdout.
    sink = progress.setup(-1 if args.quiet else args.verbose)
    try:
        cache = Cache(args.cache.expanduser().resolve() if args.cache else None,
                      notify=lambda message: logger.warning("cache: %s", message))  # fmt: skip
        cache.progress = sink
        if args.command not in ("report", "merge"):  # re-rendering a file needs no cache
            cache.dir()
            cache.sweep_temporaries()
        try:
            status = COMMANDS[args.command](args, cache)
        finally:
            sink.close()  # the live display ends before any error line
    except CompatError as e:
        print(f"compat: error: {_shown(e)}", file=sys.stderr)  # e names files, objects, kernels
        status = e.exit_status
    except KeyboardInterrupt:
        print("compat: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    except BrokenPipeError:
        status = EXIT_OK
    except Exception as e:  # a bug: still one line, and never mistaken for a verdict
        if os.environ.get("COMPAT_DEBUG"):
            raise
        print(f"compat: internal error: {e.__class__.__name__}: {_shown(e)} (COMPAT_DEBUG=1 shows details)",
              file=sys.stderr)  # fmt: skip
        status = EXIT_INFRA
    finally:
        sink.close()
        logger.setLevel(saved_logging[0])
        logger.propagate = saved_logging[1]
        logger.handlers[:] = saved_logging[2]
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status


def _interrupt(signum, frame):
    raise KeyboardInterrupt
