"""compat selftests: the kernel's own BPF selftests, judged by their annotations, on every point
release of a stable series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compat.cache import Cache
from compat.errors import EXIT_INFRA, EXIT_OK, UserError
from compat.reports import outputs

from .selftests_options import SELFTESTS_FORMATS
from .shown import _shown


def cmd_selftests(args: argparse.Namespace, cache: Cache) -> int:
    """Build the series' selftests once, check those that carry expectations on every release of
    the range and report; exit 0 when it ran, 2 on bad input, 3 when a release gave no verdict."""
    from compat.kernels.matrix import load_matrix
    from compat.kernels.sources import KernelStore
    from compat.objects.expectations import read_specs
    from compat.objects.selftests import build, default_dest, package_of, require_tools
    from compat.reports.selftests import render
    from compat.run.bisect import series_spec
    from compat.run.checker import DEFAULT_OBJECT_TIMEOUT, CheckOptions, load_objects
    from compat.run.options import privileges
    from compat.run.selftests import release_specs, sweep

    # The reports, checked before any work as check checks them (compat/reports/outputs.py).
    planned = outputs.plan(args.formats, args.outputs, list(SELFTESTS_FORMATS))
    require_tools()  # before the archive is asked anything
    modes = privileges(args.privileges)  # the options table's row, as check reads it
    spec = series_spec(args.series, load_matrix(args.matrix, args.arch), args.flavour)
    series = spec.series or args.series
    store = KernelStore(cache, refresh=args.refresh)
    specs = release_specs(store, spec, args.first, args.last)  # bad ranges fail before any build

    def progress(line: str) -> None:
        print(f"compat: {_shown(line)}", file=sys.stderr, flush=True)

    # arm64: built against the arm64 kernel's BTF for arm64's target, in a folder of its own
    dest = default_dest(series, spec.arch)
    builds = build(dest, args.limit, source=args.source, series=series, cache=cache, warn=progress,
                   refresh=args.refresh, arch=spec.arch)  # fmt: skip
    paths = [str(dest / b.object) for b in builds if b.status == "ok" and b.object]
    annotated = [p for p in paths if read_specs(Path(p).read_bytes()).annotated]
    if not annotated:
        raise UserError(f"none of the {len(paths)} selftest object(s) built carries an expectation",
                        "a larger --limit, or no --limit, builds more")  # fmt: skip
    objects, infos, bad = load_objects(annotated)
    for line in bad:
        print(f"compat: warning: not checked: {_shown(line)}", file=sys.stderr)
    if not objects:
        raise UserError("no selftest object could be read", "see the warnings above")
    # A run with unprivileged boots its guests with mitigations=auto (the Checker adds it, as for check).
    options = CheckOptions(jobs=args.jobs, object_timeout=DEFAULT_OBJECT_TIMEOUT, result_cache=args.result_cache,
                           privileges=modes)  # fmt: skip
    try:
        import json

        manifest = json.loads((dest / "selftests.json").read_text())
        source = str(manifest.get("package") or package_of(series))
    except (OSError, ValueError, AttributeError):
        source = package_of(series)
    shown = progress if sys.stderr.isatty() else None
    result = sweep(cache, store, series, source, specs, objects, infos, options, progress=shown)
    result.unannotated = len(paths) - len(annotated)
    result.not_built = sum(1 for b in builds if b.status != "ok")
    outputs.write(planned, lambda fmt: render(fmt, result))
    unmet = sum(result.counts(v)["not_met"] for v in result.releases)
    times = f" × {len(result.modes)} mode(s)" if len(result.modes) > 1 else ""
    print(f"compat: selftests: {len(result.outcomes)} annotated program(s) on {len(result.releases)} release(s)"
          f"{times}: "
          f"{unmet} expectation(s) not met, {len(result.changes)} change(s), {len(result.stale)} stale",
          file=sys.stderr)  # fmt: skip
    if result.failed:
        print(f"compat: error: {len(result.failed)} release(s) gave no verdict: {', '.join(result.failed)} "
              "(see the report)", file=sys.stderr)  # fmt: skip
        return EXIT_INFRA
    return EXIT_OK
