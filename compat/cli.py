"""The compat command line. Every failure becomes one line on stderr and a documented exit status."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tabulate import tabulate

from . import __version__
from .cache import Cache
from .errors import EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CompatError, UserError
from .matrix import KernelSpec, load_matrix


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        self.exit(EXIT_USAGE, f"compat: error: {message} (see '{self.prog} --help')\n")


def _kernel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", type=Path, help="kernel matrix file (default: the shipped matrix.yaml)")
    p.add_argument(
        "--kernel", action="append", metavar="ID", help="only this kernel (repeatable): a matrix id, "
        "debian:SERIES, debian:VERSION or a kernel image path",
    )  # fmt: skip
    p.add_argument("--refresh", action="store_true", help="refresh the archive index now")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="compat", description="Check which kernels accept your BPF programs.")
    parser.add_argument("--version", action="version", version=f"compat {__version__}")
    parser.add_argument("--cache", type=Path, help="cache directory (default: $COMPAT_CACHE or ~/.cache/compat)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    kernels = sub.add_parser("kernels", help="list, fetch and discover kernels")
    ksub = kernels.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    ksub.required = True
    p = ksub.add_parser("list", help="matrix kernels: resolved version, cached or not")
    _kernel_options(p)
    p = ksub.add_parser("fetch", help="download and cache kernels")
    p.add_argument("ids", nargs="*", metavar="ID")
    _kernel_options(p)
    p = ksub.add_parser("available", help="point releases of a series in the archive, newest first")
    p.add_argument("series", help="e.g. 6.1")
    p.add_argument("--flavour", default="amd64")
    p.add_argument("--suite", help="only this suite")
    p.add_argument("--refresh", action="store_true", help="refresh the archive index now")

    image = sub.add_parser("image", help="the guest image")
    isub = image.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    isub.required = True
    isub.add_parser("build", help="build the guest image now (normally automatic)")
    isub.add_parser("info", help="what the cached guest image contains")

    cache = sub.add_parser("cache", help="the cache")
    csub = cache.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    csub.add_parser("info", help="where the cache is and what it holds")
    p = csub.add_parser("clean", help="delete cached entries")
    p.add_argument("kinds", nargs="*", metavar="KIND", help="only these kinds (kernels, images, apt, …)")

    vm = sub.add_parser("vm", help="boot guests")
    vsub = vm.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    vsub.required = True
    p = vsub.add_parser("smoke", help="boot each kernel and report what the guest sees")
    _kernel_options(p)
    p.add_argument("--jobs", type=int, help="VMs at once (default: number of cores)")
    return parser


def _specs(args) -> list[KernelSpec]:
    wanted = list(getattr(args, "ids", None) or []) + list(args.kernel or [])
    return load_matrix(args.matrix).select(wanted)


def cmd_kernels(args, cache: Cache) -> int:
    from .kernels import KernelStore, available

    store = KernelStore(cache, refresh=args.refresh)
    if args.action == "available":
        spec = KernelSpec(id="x", label="x", series=args.series, flavour=args.flavour, suite=args.suite)
        if not args.series.replace(".", "").isdigit():
            raise UserError(f"series '{args.series}' is not like 6.1")
        rows = [
            (p.version.split("-")[0], p.version, p.name, p.suite, f"{p.size / 1e6:.0f} MB")
            for p in available(store, args.series, source_spec=spec)
        ]
        if not rows:
            raise UserError(f"the archive has no {args.flavour} kernel of series {args.series}")
        print(tabulate(rows, headers=["point release", "package version", "package", "suite", "size"]))
        return EXIT_OK
    specs = _specs(args)
    if args.action == "list":
        rows = []
        for spec in specs:
            r = store.resolve(spec)
            rows.append(
                (spec.id, spec.label, spec.describe(), r.version, r.release, "yes" if store.cached(r) else "no")
            )
        print(tabulate(rows, headers=["id", "label", "source", "version", "release", "cached"]))
        return EXIT_OK
    for spec in specs:
        k = store.fetch(spec)
        print(f"{spec.id}: {k.version} ({k.release}) {k.vmlinuz.parent}")
    return EXIT_OK


def cmd_image(args, cache: Cache) -> int:
    from .image import ImageBuilder, describe

    builder = ImageBuilder(cache)
    image = builder.build() if args.action == "build" else builder.cached()
    if image is None:
        print("no guest image is cached yet: 'compat image build' builds one")
        return EXIT_OK
    info = describe(image)
    print(tabulate([(k, v) for k, v in info.items()], tablefmt="plain"))
    print("packages:", ", ".join(image.packages))
    return EXIT_OK


def cmd_cache(args, cache: Cache) -> int:
    if args.action == "clean":
        freed = cache.clean(args.kinds or None)
        print(f"freed {freed / 1e6:.0f} MB in {cache.root}")
        return EXIT_OK
    rows = []
    total = 0
    if cache.root.is_dir():
        for kind in sorted(p for p in cache.root.iterdir() if p.is_dir()):
            size = cache.size(kind)
            total += size
            rows.append((kind.name, len(cache.entries(kind.name)), f"{size / 1e6:.0f} MB"))
    print(f"cache: {cache.root}")
    print(tabulate(rows, headers=["kind", "entries", "size"]))
    print(f"total: {total / 1e6:.0f} MB")
    return EXIT_OK


def cmd_vm(args, cache: Cache) -> int:
    from .fleet import Fleet

    fleet = Fleet(cache, _specs(args), jobs=args.jobs, refresh=args.refresh)
    outcomes = fleet.run(lambda vm, kernel: vm.request({"type": "ping"})[0])
    rows, failed = [], 0
    for o in outcomes:
        h = o.hello or {}
        if o.error:
            failed += 1
            rows.append(
                (
                    o.spec.id,
                    o.spec.label,
                    o.kernel.version if o.kernel else "?",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"error: {o.error}",
                )
            )
            continue
        assert o.kernel is not None
        rows.append(
            (
                o.spec.id,
                o.spec.label,
                o.kernel.version,
                h.get("release"),
                "yes" if h.get("btf") else "no",
                h.get("libbpf"),
                fleet.accel,
                f"{o.boot_seconds:.2f}",
            )
        )
    print(tabulate(rows, headers=["id", "label", "version", "uname -r", "BTF", "libbpf", "accel", "boot s"]))
    for o in outcomes:
        if o.error and o.console_tail:
            print(f"\n--- console of {o.spec.id} (last lines) ---\n{o.console_tail}", file=sys.stderr)
    return EXIT_INFRA if failed else EXIT_OK


COMMANDS = {"kernels": cmd_kernels, "image": cmd_image, "cache": cmd_cache, "vm": cmd_vm}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the compat command."""
    args = build_parser().parse_args(argv)
    if args.cache:
        os.environ["COMPAT_CACHE"] = str(args.cache)
    try:
        cache = Cache()
        cache.dir()
        cache.sweep_temporaries()
        status = COMMANDS[args.command](args, cache)
    except CompatError as e:
        print(f"compat: error: {e}", file=sys.stderr)
        status = e.exit_status
    except KeyboardInterrupt:
        print("compat: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    except BrokenPipeError:
        status = EXIT_OK
    except Exception as e:  # a bug: still one line, and never mistaken for a verdict
        if os.environ.get("COMPAT_DEBUG"):
            raise
        print(f"compat: internal error: {e.__class__.__name__}: {e} (COMPAT_DEBUG=1 shows details)", file=sys.stderr)
        status = EXIT_INFRA
    sys.exit(status)
