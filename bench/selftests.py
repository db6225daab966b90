"""The Linux kernel's BPF selftests, built from Debian's linux-source package, as a test corpus.

    python3 bench/selftests.py [--dest DIR] [--limit N] [--jobs N] [--timeout S] [--list] [--refresh]
                               [--series 6.12] [--source VERSION]

The build itself is in the product (compat/objects/selftests.py, used by `compat selftests`):
this is its command line for the benchmarks and the corpus. See that module for how the objects
are built. Importable as before: ``selftests(dest, limit)`` returns the paths of the built
objects, ``build(dest, limit, ...)`` their Build records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Runnable from a checkout without installing compat: the package sits one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat.errors import CompatError
from compat.objects.selftests import (  # noqa: F401  (re-exported for the benchmarks)
    DEFAULT_SERIES,
    DEFAULT_TIMEOUT,
    MANIFEST,
    MANIFEST_SCHEMA,
    SELFTESTS,
    Build,
    Recipe,
    _compile,
    _recipe,
    build,
    default_dest,
    newest_clang,
    sample,
    selftests,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", type=Path, help=f"where sources and objects go (default: {default_dest()})")
    ap.add_argument("--limit", type=int, help="build only a deterministic sample of N files (every k-th by name)")
    ap.add_argument("--jobs", type=int, help="parallel compilers (default: min(2, CPUs))")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per file (default: %(default)s)")
    ap.add_argument("--clang", help="the compiler (default: the newest clang-N on PATH)")
    ap.add_argument("--refresh", action="store_true", help="ask the archive again for the newest source package")
    ap.add_argument("--list", action="store_true", help="print every file's outcome instead of the object paths")
    ap.add_argument("--series", default=DEFAULT_SERIES, help="the kernel series whose linux-source to build")
    ap.add_argument("--source", help="the Debian version of linux-source-SERIES (default: the newest)")
    args = ap.parse_args()
    dest = args.dest or default_dest(args.series)

    def warn(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        builds = build(dest, args.limit, jobs=args.jobs, timeout=args.timeout, clang=args.clang,
                       refresh=args.refresh, warn=warn, series=args.series, source=args.source)  # fmt: skip
    except CompatError as e:
        raise SystemExit(f"selftests: {e}") from None
    if args.list:
        for b in builds:
            print(f"{b.status:8} {b.seconds:6.1f}s {b.source}" + (f"  {b.error}" if b.error else ""))
    else:
        for b in builds:
            if b.status == "ok" and b.object:
                print(dest / b.object)
    failed = [b for b in builds if b.status != "ok"]
    warn(f"selftests: {len(builds) - len(failed)} built, {len(failed)} did not build (see --list)")


if __name__ == "__main__":
    main()
