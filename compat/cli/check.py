"""compat check, report and merge: verdicts on objects, and their reports."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from compat.cache import Cache
from compat.errors import EXIT_USAGE, UserError
from compat.kernels.matrix import load_matrix
from compat.objects import globalvars

from .cache import _auto_prune
from .shown import _shown


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


def _formats(args) -> list:
    """--format and --output, checked before anything runs (reports/outputs.py: formats known, an
    --output's format told by its suffix if no --format goes with it, no file twice, directories
    that exist and are writable)."""
    from compat.reports import RENDERERS
    from compat.reports.outputs import plan

    return plan(args.formats, args.outputs, list(RENDERERS))


def _write_reports(result, comparison, planned: list, fail_on: str = "regression") -> None:
    from compat.reports import render
    from compat.reports.outputs import write
    from compat.results.gate import gate_summary

    table_on_stdout = write(planned, lambda fmt: render(fmt, result, comparison, fail_on))
    if not table_on_stdout:
        logging.getLogger("compat").warning("%s", _shown(gate_summary(result, comparison)))  # none with -q


def _load_baseline(path: Path):
    from compat.results.model import RunResult

    if path.suffix == ".o":
        raise UserError(f"--baseline {path}: takes a result file (JSON)", "use --baseline-object for an object file")
    return RunResult.load(path)


def cmd_check(args, cache: Cache) -> int:
    from compat.objects.sourcemap import source_roots
    from compat.results.compare import compare
    from compat.results.gate import exit_status
    from compat.run import options as check_options
    from compat.run.checker import DEFAULT_OBJECT_TIMEOUT, Checker, CheckOptions, load_objects
    from compat.run.shard import Shard, restrict

    # The options of the table (run/options.py), checked before anything boots.
    table_values = check_options.from_args(args)
    global_values = table_values["global_values"]
    for root in args.source_roots or []:
        if not os.path.isdir(root):
            raise UserError(f"--source-root {root}: not a directory", "give a directory of the objects' sources")
    deadline = time.monotonic() + args.timeout if args.timeout else None
    planned = _formats(args)
    if args.baseline and args.baseline_objects:
        raise UserError("--baseline and --baseline-object exclude each other", "give one kind of baseline")
    baseline = _load_baseline(args.baseline) if args.baseline else None
    matrix = load_matrix(args.matrix, getattr(args, "arch", None))
    specs = matrix.select(list(args.kernel or []))
    if any(s.releases for s in specs):  # debian:6.12.*, or a matrix series with releases: its point releases
        from compat.kernels.series import expand
        from compat.kernels.sources import KernelStore

        specs = expand(KernelStore(cache, refresh=args.refresh), specs)
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
        **table_values, jobs=args.jobs, refresh=args.refresh,
        object_timeout=args.object_timeout or DEFAULT_OBJECT_TIMEOUT, deadline=deadline,
        test_faults=os.environ.get("COMPAT_TEST_FAULTS") == "1",  # compat's own tests only
        result_cache=args.result_cache, shard=Shard.parse(args.shard) if args.shard else None,
        source_roots=source_roots(args.source_roots) if args.source_roots else None,
    )  # fmt: skip
    checker = Checker(cache, specs, options)
    checker.progress = cache.progress.line  # a line per finished kernel (none with -q)
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
        for warning in check_options.baseline_warnings([result, baseline], str(args.baseline)):
            logging.getLogger("compat").warning("warning: %s", warning)  # none with -q
        if options.shard:
            baseline = restrict(baseline, result)  # the other shards' cells are not "removed"
        comparison = compare(result, baseline, "file", str(args.baseline))
    else:
        comparison = compare(result)
    _write_reports(result, comparison, planned, args.fail_on)
    status = exit_status(result, comparison, args.fail_on, bad_input=bool(bad))
    _auto_prune(cache)  # after the reports: whatever happens here, they are written
    return status


def cmd_merge(args, cache: Cache) -> int:
    from compat.results.compare import compare
    from compat.results.gate import exit_status
    from compat.results.model import RunResult
    from compat.run.shard import merge

    planned = _formats(args)
    docs = [(str(path), RunResult.read_document(path)) for path in args.results]
    merged = merge([(source, RunResult.from_json(doc, source)) for source, doc in docs])
    for line in merged.warnings:
        logging.getLogger("compat").warning("warning: %s", _shown(line))  # none with -q
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
    _write_reports(result, comparison, planned, args.fail_on)
    return exit_status(result, comparison, args.fail_on)


def cmd_report(args, cache: Cache) -> int:
    from compat.results.compare import compare
    from compat.results.gate import exit_status
    from compat.results.model import RunResult

    planned = _formats(args)
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
    _write_reports(result, comparison, planned, args.fail_on)
    return exit_status(result, comparison, args.fail_on)
