"""compat bisect: the point release of a stable series where each program's verdict changed."""

from __future__ import annotations

import argparse
import os
import sys

from compat.cache import Cache
from compat.errors import EXIT_INFRA, EXIT_OK, EXIT_USAGE
from compat.reports import outputs

from .bisect_options import BISECT_FORMATS
from .shown import _shown


def cmd_bisect(args: argparse.Namespace, cache: Cache) -> int:
    """Bisect the objects over a series' point releases; exit 0 when it ran (changes or not), 2 on
    bad input, 3 when a release could not be checked (the search went around it)."""
    from compat.kernels.matrix import load_matrix
    from compat.kernels.sources import KernelStore
    from compat.reports.bisect import render
    from compat.run import options as check_options
    from compat.run.bisect import bisect, range_specs, series_spec
    from compat.run.checker import DEFAULT_OBJECT_TIMEOUT, CheckOptions, load_objects

    from .check import _check_globals

    table_values = check_options.from_args(args)
    # The reports, checked before any work as check checks them (compat/reports/outputs.py).
    planned = outputs.plan(args.formats, args.outputs, list(BISECT_FORMATS))
    spec = series_spec(args.series, load_matrix(args.matrix, args.arch), args.flavour)
    objects, infos, bad = load_objects(args.objects)
    for line in bad:
        print(f"compat: error: {_shown(line)}", file=sys.stderr)
    if not objects:
        return EXIT_USAGE
    if table_values["global_values"]:
        _check_globals(table_values["global_values"], objects)
    store = KernelStore(cache, refresh=args.refresh)
    specs = range_specs(store, spec, args.first, args.last)
    options = CheckOptions(**table_values, jobs=args.jobs, object_timeout=DEFAULT_OBJECT_TIMEOUT,
                           result_cache=args.result_cache)  # fmt: skip
    # Releases probed per program and round: as many as guests run at once (they boot in
    # parallel), so a 22-release series takes 3 rounds on 2 cores instead of 5.
    width = max(1, min(args.jobs or os.cpu_count() or 1, 3))

    def progress(line: str) -> None:
        print(f"compat: {_shown(line)}", file=sys.stderr, flush=True)

    shown = progress if sys.stderr.isatty() else None
    result = bisect(cache, store, spec.series or args.series, specs, objects, infos, options,
                    exhaustive=args.exhaustive, width=width, progress=shown)  # fmt: skip
    outputs.write(planned, lambda fmt: render(fmt, result))
    changed = len(result.boundaries)
    print(f"compat: bisect: {changed} change(s) found over {len(result.checked)} checked release(s)"
          + ("" if changed or not result.unchanged else ": verdicts equal at both ends"), file=sys.stderr)  # fmt: skip
    if result.failed:
        print(f"compat: error: {len(result.failed)} release(s) could not be checked: {', '.join(result.failed)} "
              "(their verdicts are unknown; see the report)", file=sys.stderr)  # fmt: skip
        return EXIT_INFRA
    return EXIT_USAGE if bad else EXIT_OK
