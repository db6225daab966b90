"""The compat command line. Every failure becomes one line on stderr and a documented exit status."""

from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from tabulate import tabulate

from compat import __version__
from compat.cache import NEVER_PRUNED, Cache, replace_text
from compat.errors import EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CompatError, UserError
from compat.kernels.matrix import KernelSpec, load_matrix
from compat.objects import globalvars
from compat.results.gate import FAIL_ON


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


MIN_MEMORY_MB, MAX_MEMORY_MB = 256, 65536  # python + libbpf + a vmlinux BTF need ~200 MiB
KEEP_DAYS = 30.0  # cache entries unused for this long are pruned (COMPAT_CACHE_KEEP_DAYS)


def _bounded(kind: type[int] | type[float], low: float, high: float, what: str, *, above: bool = False):
    """An argparse type: a finite number of kind from low (excluded when above) to high; anything
    else (a word, nan, inf, out of range) is one usage line naming the range, exit 2."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            value = math.nan
        if not (math.isfinite(value) and (value > low if above else value >= low) and value <= high):
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
        return value

    return parse


# Ranges of the numeric options (README, "Resource bounds"). --jobs: each guest is one QEMU
# process with a core and --memory of its own; past 64 a machine runs out of memory or threads
# (100 000 aborted the process) long before guests run faster, and one fixed range keeps a CI
# configuration valid on every runner. Timeouts: a week for a run (longer than any CI job), a
# day for one object or program (the defaults are 900 and 300 s).
MAX_JOBS = 64
MAX_RUN_SECONDS, MAX_STEP_SECONDS, MAX_DAYS, MAX_SHARDS = 7 * 86400, 86400, 36500, 10000
_jobs = _bounded(int, 1, MAX_JOBS, f"a number of guests from 1 to {MAX_JOBS}")
_run_seconds = _bounded(float, 0, MAX_RUN_SECONDS, f"a number of seconds above 0, at most {MAX_RUN_SECONDS} (7 days)",
                        above=True)  # fmt: skip
_step_seconds = _bounded(float, 0, MAX_STEP_SECONDS, f"a number of seconds above 0, at most {MAX_STEP_SECONDS} (a day)",
                         above=True)  # fmt: skip
_memory = _bounded(int, MIN_MEMORY_MB, MAX_MEMORY_MB, f"a number of MiB from {MIN_MEMORY_MB} to {MAX_MEMORY_MB}")
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



def _shown(text: object) -> str:
    """Text from an object, a guest or a kernel (a name, a path, a message) as one terminal line
    (compat/reports/escape.py: imported here, not at start-up, where it would cost 0.1 s)."""
    from compat.reports.escape import terminal

    return terminal(text)


def _shown_lines(text: str) -> list[str]:
    """A guest's multi-line text (a console tail) as escaped terminal lines."""
    from compat.reports.escape import terminal_lines

    return terminal_lines(text)


FORMATS_HELP = "table (default), json, markdown, github, junit, sarif; repeatable"


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", action="append", dest="formats", metavar="FMT", help=FORMATS_HELP)
    p.add_argument("--output", action="append", dest="outputs", metavar="FILE", help="write the n-th --format here")
    p.add_argument("--baseline", type=Path, metavar="OLD.json", help="compare with an earlier result file")
    p.add_argument("--fail-on", choices=FAIL_ON, default="regression",
                   help="what fails the gate (exit 1): regression (default; and required-kernel rejections "
                   "without a baseline), rejection, never")  # fmt: skip


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
    p.add_argument("--no-attach", dest="attach", action="store_false", help="load only; do not try to attach")
    _report_options(p)
    p.add_argument(
        "--baseline-object", action="append", dest="baseline_objects", metavar="OBJ",
        help="an earlier build of the objects, checked in the same run (programs matched by name)",
    )  # fmt: skip
    p.add_argument("--object-timeout", type=_step_seconds, default=None, metavar="S",
                   help="seconds per object per kernel")  # fmt: skip
    p.add_argument(
        "--set-global",
        action="append",
        dest="global_values",
        metavar="NAME=VALUE",
        help="set a global variable (a loader's const volatile configuration in .rodata, or .data/.bss) in "
        "every object that defines it before loading, as the loader does (repeatable)",
    )
    p.add_argument(
        "--program-type",
        action="append",
        dest="program_types",
        metavar="GLOB=SECTION",
        help="load the programs whose name or section matches GLOB as the type of a libbpf section name "
        "(tc, xdp, lwt_xmit, cgroup/connect4, ...): for sections that name no type, whose loader sets it "
        "(repeatable; the first match wins)",
    )
    p.add_argument(
        "--attach-target",
        action="append",
        dest="attach_targets",
        metavar="GLOB=TARGET",
        help="attach the programs whose name or section matches GLOB to TARGET (a kernel function, "
        "tracepoint or LSM hook; BINARY:FUNCTION for a uprobe) instead of what their section names, as a "
        "loader does that points a "
        "placeholder such as fentry/dummy_file_read at the function of the moment with "
        "bpf_program__set_attach_target (repeatable; the first match wins)",
    )
    p.add_argument(
        "--program-timeout",
        type=_step_seconds,
        default=None,
        metavar="S",
        help="seconds the verifier may spend on one program: one over it gets no verdict, the rest of its "
        "object still does",
    )
    p.add_argument(
        "--timeout",
        type=_run_seconds,
        default=None,
        metavar="S",
        help="deadline for the whole run: unfinished cells become errors, results so far are reported",
    )
    p.add_argument("--memory", type=_memory, default=None, metavar="MIB", help="memory of each guest (default 512)")
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

    vm = sub.add_parser("vm", help="boot guests")
    vsub = vm.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    vsub.required = True
    p = vsub.add_parser("smoke", help="boot each kernel and report what the guest sees")
    _kernel_options(p)
    p.add_argument("--jobs", type=_jobs, help=f"VMs at once, 1-{MAX_JOBS} (default: number of cores)")
    return parser


def _specs(args) -> list[KernelSpec]:
    wanted = list(getattr(args, "ids", None) or []) + list(args.kernel or [])
    return load_matrix(args.matrix).select(wanted)


def cmd_kernels(args, cache: Cache) -> int:
    from compat.kernels.sources import KernelStore, available

    store = KernelStore(cache, refresh=args.refresh)
    if args.action == "available":
        from compat.kernels.matrix import check_name

        check_name("flavour", args.flavour, "--flavour: ")
        if args.suite is not None:
            check_name("suite", args.suite, "--suite: ")
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
    from compat.guest.image import ImageBuilder, describe

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
    if args.action == "verify":
        return _cache_verify(cache, args.kinds or None, args.json)
    if args.action == "prune":
        removed, freed = cache.prune(args.days, args.kinds or None)
        what = f"{removed} {'entry' if removed == 1 else 'entries'} unused for more than {args.days:g} days"
        print(f"freed {freed / 1e6:.0f} MB in {cache.root}: {what}")
        return EXIT_OK
    rows = []
    total = unused = 0
    if cache.root.is_dir():
        for kind in sorted(p for p in cache.root.iterdir() if p.is_dir()):
            size = cache.size(kind)
            old = cache.unused(kind.name, KEEP_DAYS)
            total += size
            unused += old
            never = kind.name in NEVER_PRUNED
            rows.append((kind.name, len(cache.entries(kind.name)), f"{size / 1e6:.0f} MB",
                         "-" if never else f"{old / 1e6:.0f} MB"))  # fmt: skip
    print(f"cache: {cache.root}")
    print(tabulate(rows, headers=["kind", "entries", "size", f"unused {KEEP_DAYS:g}+ days"]))
    print(f"total: {total / 1e6:.0f} MB ({unused / 1e6:.0f} MB unused for {KEEP_DAYS:g} days: 'compat cache prune')")
    return EXIT_OK


def _cache_verify(cache: Cache, kinds: list[str] | None, as_json: bool) -> int:
    """compat cache verify: every entry checked fully; damaged ones removed (rebuilt on next use).
    Exit 0 when everything is intact or was removed, 3 when a damaged entry could not be."""
    import json

    found = cache.verify(kinds)
    per_kind: dict[str, dict[str, int]] = {}
    for f in found:
        counts = per_kind.setdefault(f.kind, {"checked": 0, "damaged": 0, "removed": 0})
        counts["checked"] += 1
        counts["damaged"] += not f.intact
        counts["removed"] += f.removed
    stuck = [f for f in found if not f.intact and not f.removed]
    if as_json:
        damaged = [f.as_json() for f in found if not f.intact]
        totals = {k: sum(c[k] for c in per_kind.values()) for k in ("checked", "damaged", "removed")}
        print(json.dumps({"cache": str(cache.root), **totals, "kinds": per_kind, "damaged_entries": damaged}, indent=1))
    else:
        for f in found:
            if not f.intact:
                what = "removed (rebuilt on next use)" if f.removed else "NOT removed (in use by another process?)"
                print(f"{f.kind}/{f.key[:16]}: {f.damage}: {what}")
        rows = [(kind, c["checked"], c["damaged"], c["removed"]) for kind, c in sorted(per_kind.items())]
        print(f"cache: {cache.root}")
        print(tabulate(rows, headers=["kind", "checked", "damaged", "removed"]))
    return EXIT_INFRA if stuck else EXIT_OK


def _auto_prune(cache: Cache) -> None:
    """At most once a day, prune cache entries unused for COMPAT_CACHE_KEEP_DAYS days (default
    30; 0 turns it off). Never an error: the check it follows is done and reported."""
    debug = os.environ.get("COMPAT_DEBUG")
    try:
        text = os.environ.get("COMPAT_CACHE_KEEP_DAYS", "").strip()
        try:
            days = _days(text) if text else KEEP_DAYS
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"COMPAT_CACHE_KEEP_DAYS: {e}") from None  # not a setting to guess: no pruning
        pruned = cache.prune_daily(days) if days else None
        if pruned and debug:
            print(f"compat: cache: pruned {pruned[0]} entries unused for {days:g} days, {pruned[1] / 1e6:.0f} MB",
                  file=sys.stderr)  # fmt: skip
    except Exception as e:
        if debug:
            print(f"compat: cache: not pruned: {e.__class__.__name__}: {e}", file=sys.stderr)


def cmd_vm(args, cache: Cache) -> int:
    from compat.guest.fleet import Fleet

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
    shown = [[_shown(v) if isinstance(v, str) else v for v in row] for row in rows]  # the guest's hello, errors
    print(tabulate(shown, headers=["id", "label", "version", "uname -r", "BTF", "libbpf", "accel", "boot s"],
                   disable_numparse=True))  # fmt: skip
    for o in outcomes:
        if o.error and o.console_tail:
            tail = "\n".join(_shown_lines(o.console_tail))
            print(f"\n--- console of {_shown(o.spec.id)} (last lines) ---\n{tail}", file=sys.stderr)
    return EXIT_INFRA if failed else EXIT_OK


def _check_globals(values: tuple, objects: list) -> None:
    """--set-global against the objects, before anything boots: a name no object defines, or a
    value too big for a variable, is a one-line error."""
    from compat.run.checker import elf_analysis

    variables = []
    for obj in objects:
        info = elf_analysis(obj.data)
        found = info.variables if info else {}
        globalvars.resolve(list(values), found, obj.name)
        variables.append(found)
    globalvars.check_defined(list(values), variables)


def _rule(option: str, rule: str, metavar: str, example: str) -> tuple[str, str]:
    """One GLOB=VALUE of a rule option (--program-type, --attach-target)."""
    glob, _, value = rule.partition("=")
    if not glob.strip() or not value.strip() or any(c.isspace() for c in value.strip()):
        raise UserError(f"{option} {rule!r}: give {metavar}, e.g. '{example}'")
    return glob.strip(), value.strip()


def _program_type(rule: str) -> tuple[str, str]:
    """One --program-type GLOB=SECTION; a SECTION libbpf gives no type is a usage error naming
    the ones it does (checked before anything boots, not turned into verdicts)."""
    from compat.objects.objfile import LIBBPF_SECTIONS, libbpf_knows

    glob, section = _rule("--program-type", rule, "GLOB=SECTION", "encap_*=lwt_xmit")
    if not libbpf_knows(section):
        known = ", ".join(name.replace("+", "[/…]") for name in LIBBPF_SECTIONS)
        raise UserError(f"--program-type {rule!r}: libbpf knows no program type for section '{section}'",
                        f"give a libbpf section name: {known}")  # fmt: skip
    return glob, section


def _formats(args) -> tuple[list[str], list[str]]:
    """--format and --output, checked before anything runs."""
    from compat.reports import RENDERERS

    formats = args.formats or ["table"]
    for fmt in formats:
        if fmt not in RENDERERS:
            raise UserError(f"unknown format '{fmt}'", f"use one of {', '.join(RENDERERS)}")
    outputs = args.outputs or []
    if len(outputs) > len(formats):
        raise UserError("more --output than --format options", "give one --format per --output")
    return formats, outputs


def _write_reports(result, comparison, formats: list[str], outputs: list[str]) -> None:
    from compat.reports import render
    from compat.results.gate import gate_summary

    table_on_stdout = False
    for i, fmt in enumerate(formats):
        text = render(fmt, result, comparison)
        if i < len(outputs) and outputs[i] != "-":
            path = Path(outputs[i])
            try:
                replace_text(path, text)
            except OSError as e:
                raise UserError(f"cannot write {path}: {e.strerror}") from None
        else:
            table_on_stdout = table_on_stdout or fmt == "table"
            sys.stdout.write(text)
    sys.stdout.flush()
    if not table_on_stdout:
        print(f"compat: {_shown(gate_summary(result, comparison))}", file=sys.stderr)


def _load_baseline(path: Path):
    from compat.results.model import RunResult

    if path.suffix == ".o":
        raise UserError(f"--baseline {path}: takes a result file (JSON)", "use --baseline-object for an object file")
    return RunResult.load(path)


def cmd_check(args, cache: Cache) -> int:
    from compat.guest.vm import DEFAULT_MEMORY_MB
    from compat.objects.sourcemap import source_roots
    from compat.results.compare import compare
    from compat.results.gate import exit_status
    from compat.run.checker import DEFAULT_OBJECT_TIMEOUT, DEFAULT_PROGRAM_TIMEOUT, Checker, CheckOptions, load_objects
    from compat.run.shard import Shard, restrict

    program_types = tuple(_program_type(rule) for rule in args.program_types or [])
    attach_targets = tuple(
        _rule("--attach-target", rule, "GLOB=TARGET", "file_read_*=vfs_read") for rule in args.attach_targets or []
    )
    global_values = tuple(globalvars.parse(text) for text in args.global_values or [])
    for root in args.source_roots or []:
        if not os.path.isdir(root):
            raise UserError(f"--source-root {root}: not a directory", "give a directory of the objects' sources")
    deadline = time.monotonic() + args.timeout if args.timeout else None
    formats, outputs = _formats(args)
    if args.baseline and args.baseline_objects:
        raise UserError("--baseline and --baseline-object exclude each other", "give one kind of baseline")
    baseline = _load_baseline(args.baseline) if args.baseline else None
    matrix = load_matrix(args.matrix)
    specs = matrix.select(list(args.kernel or []))
    base_objects, base_infos = [], []
    if args.baseline_objects:
        base_objects, base_infos, base_bad = load_objects(args.baseline_objects)
        if base_bad:
            raise UserError(f"baseline object {base_bad[0]}")
    objects, infos, bad = load_objects(args.objects)
    for line in bad:
        print(f"compat: error: {_shown(line)}", file=sys.stderr)
    if not objects:
        return EXIT_USAGE
    if global_values:
        _check_globals(global_values, objects + base_objects)
    options = CheckOptions(
        attach=args.attach, jobs=args.jobs, refresh=args.refresh,
        object_timeout=args.object_timeout or DEFAULT_OBJECT_TIMEOUT,
        program_timeout=args.program_timeout or DEFAULT_PROGRAM_TIMEOUT,
        memory_mb=args.memory or DEFAULT_MEMORY_MB, deadline=deadline,
        test_faults=os.environ.get("COMPAT_TEST_FAULTS") == "1",  # compat's own tests only
        result_cache=args.result_cache, shard=Shard.parse(args.shard) if args.shard else None,
        program_types=program_types, global_values=global_values, attach_targets=attach_targets,
        source_roots=source_roots(args.source_roots) if args.source_roots else None,
    )  # fmt: skip
    checker = Checker(cache, specs, options)
    if sys.stderr.isatty():
        checker.progress = lambda line: print(f"compat: {_shown(line)}", file=sys.stderr, flush=True)
    groups = [(objects, infos)] + ([(base_objects, base_infos)] if base_objects else [])
    try:
        runs = checker.run_groups(groups)
    except KeyboardInterrupt:
        checker.fleet.cancel()
        raise
    result = runs[0]
    result.options["kernel_axis"] = matrix.axis
    if base_objects:
        baseline = runs[1]
        baseline.options["kernel_axis"] = matrix.axis
        comparison = compare(result, baseline, "object", ", ".join(str(o.path) for o in base_objects))
    elif baseline is not None:
        from compat.results.model import differing_options

        for flag in differing_options([result, baseline]):
            print(f"compat: warning: {args.baseline} was checked with other {flag} options than this run: "
                  "a verdict that differs may be the options' doing", file=sys.stderr)  # fmt: skip
        if options.shard:
            baseline = restrict(baseline, result)  # the other shards' cells are not "removed"
        comparison = compare(result, baseline, "file", str(args.baseline))
    else:
        comparison = compare(result)
    _write_reports(result, comparison, formats, outputs)
    status = exit_status(result, comparison, args.fail_on, bad_input=bool(bad))
    _auto_prune(cache)  # after the reports: whatever happens here, they are written
    return status


def cmd_merge(args, cache: Cache) -> int:
    from compat.results.compare import compare
    from compat.results.gate import exit_status
    from compat.results.model import RunResult
    from compat.run.shard import merge

    formats, outputs = _formats(args)
    docs = [(str(path), RunResult.read_document(path)) for path in args.results]
    merged = merge([(source, RunResult.from_json(doc, source)) for source, doc in docs])
    for line in merged.warnings:
        print(f"compat: warning: {_shown(line)}", file=sys.stderr)
    result = merged.result
    axis = result.options.get("kernel_axis")
    if args.baseline:
        comparison = compare(result, _load_baseline(args.baseline), "file", str(args.baseline), axis=axis)
    else:
        # The baselines the shards compared with (each cut to its own cells) make one again.
        saved = [(source, doc["comparison"]) for source, doc in docs if isinstance(doc.get("comparison"), dict)]
        parts = [(f"{source} (its baseline)", c["baseline_result"]) for source, c in saved
                 if isinstance(c.get("baseline_result"), dict)]  # fmt: skip
        if parts:
            info = saved[0][1].get("baseline") if isinstance(saved[0][1].get("baseline"), dict) else {}
            baseline = merge([(source, RunResult.from_json(doc, source)) for source, doc in parts], strict=False).result
            kind = info.get("kind") if info.get("kind") in ("object", "file") else "file"
            comparison = compare(result, baseline, kind, str(info.get("label") or "baseline"), axis=axis)
        else:
            comparison = compare(result, axis=axis)
    _write_reports(result, comparison, formats, outputs)
    return exit_status(result, comparison, args.fail_on)


def cmd_report(args, cache: Cache) -> int:
    from compat.results.compare import compare
    from compat.results.gate import exit_status
    from compat.results.model import RunResult

    formats, outputs = _formats(args)
    doc = RunResult.read_document(args.result)
    result = RunResult.from_json(doc, str(args.result))
    saved = doc.get("comparison") if isinstance(doc.get("comparison"), dict) else {}
    if args.baseline:
        comparison = compare(result, _load_baseline(args.baseline), "file", str(args.baseline))
    elif isinstance(saved.get("baseline_result"), dict):
        info = saved.get("baseline") if isinstance(saved.get("baseline"), dict) else {}
        baseline = RunResult.from_json(saved["baseline_result"], f"{args.result} (its baseline)")
        kind = info.get("kind") if info.get("kind") in ("object", "file") else "file"
        comparison = compare(result, baseline, kind, str(info.get("label") or "baseline"), axis=saved.get("axis"))
    else:
        comparison = compare(result, axis=saved.get("axis"))
    _write_reports(result, comparison, formats, outputs)
    return exit_status(result, comparison, args.fail_on)


def cmd_probe(args, cache: Cache) -> int:
    import json

    from compat.kernels.version import version_key
    from compat.results.inventory import diff, merged_helper_names
    from compat.run.checker import Checker, CheckOptions

    checker = Checker(cache, _specs(args), CheckOptions(jobs=args.jobs, refresh=args.refresh))
    checker.fleet.prepare()
    outcomes = checker.fleet.run(lambda session, kernel: checker.probe(session, sorted(args.kfunc)))
    good = sorted((o for o in outcomes if o.value), key=lambda o: (version_key(o.kernel.version), o.spec.order))
    for o in outcomes:
        if o.error:
            print(f"compat: error: kernel {_shown(o.spec.id)}: {_shown(o.error)}", file=sys.stderr)
    names = merged_helper_names([o.value for o in good])
    if args.format == "json":
        doc = {o.spec.id: {"version": o.kernel.version, **o.value.to_json()} for o in good}
        print(json.dumps(doc, indent=1))
    elif args.diff:
        for prev, cur in itertools.pairwise(good):
            print(f"{_shown(cur.spec.id)} ({_shown(cur.kernel.version)}) relative to "
                  f"{_shown(prev.spec.id)} ({_shown(prev.kernel.version)}):")  # fmt: skip
            print("\n".join(diff_lines(diff(prev.value, cur.value, names))))
    else:
        rows = []
        for o in good:
            inv = o.value
            rows.append((o.spec.id, o.kernel.version, sum(inv.prog_types.values()), sum(inv.map_types.values()),
                         len(inv.all_helpers()), len(inv.kfuncs)))  # fmt: skip
        print(tabulate(rows, headers=["id", "version", "prog types", "map types", "helpers", "kfuncs"]))
        for kf in sorted(args.kfunc):
            for o in good:
                allowed = sorted(t for t, ok in o.value.kfunc_allowed.get(kf, {}).items() if ok)
                present = "present" if kf in o.value.kfuncs else "absent"
                print(f"{_shown(kf)} on {_shown(o.spec.id)}: {present}; callable from: "
                      f"{_shown(', '.join(allowed)) or 'none'}")  # fmt: skip
    return EXIT_INFRA if any(o.error for o in outcomes) else EXIT_OK



def diff_lines(d) -> list[str]:
    """`compat probe --diff`'s lines for one kernel against the previous one (an InventoryDiff).
    Helper, kfunc and type names come from the guest: each is shown escaped (one terminal line)."""
    if d.empty():
        return ["  no change"]
    lines = []
    for what, (added, removed) in (("program types", d.prog_types), ("map types", d.map_types),
                                   ("helpers", d.helpers), ("kfuncs", d.kfuncs),
                                   ("features", d.features)):  # fmt: skip
        if added:
            lines.append(f"  + {what}: {', '.join(_shown(n) for n in added)}")
        if removed:
            lines.append(f"  - {what}: {', '.join(_shown(n) for n in removed)}")
    return lines

COMMANDS = {
    "kernels": cmd_kernels,
    "image": cmd_image,
    "cache": cmd_cache,
    "vm": cmd_vm,
    "check": cmd_check,
    "report": cmd_report,
    "merge": cmd_merge,
    "probe": cmd_probe,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the compat command."""
    args = build_parser().parse_args(argv)
    # A CI job being cancelled (SIGTERM) cleans up like Ctrl-C: guests killed, temporaries removed.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        cache = Cache(args.cache.expanduser().resolve() if args.cache else None)
        if args.command not in ("report", "merge"):  # re-rendering a file needs no cache
            cache.dir()
            cache.sweep_temporaries()
        status = COMMANDS[args.command](args, cache)
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
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(status)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
