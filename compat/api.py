"""compat from Python: check objects, compare runs, render reports; no internal imports needed.

    import compat
    result = compat.check(["prog.o"], kernels=["6.1"], attach=False)
    print(compat.report(result, "markdown"))

The same work as `compat check`, `compat report` and the gate, with compat's own exceptions
(UserError: bad input, exit status 2 on the command line; InfraError: a VM, QEMU or the archive
failed, 3) and never SystemExit. The check options are the rows of run/options.py's table, by
row name (attach, program_types, global_values, attach_targets, program_timeout, memory_mb),
given as the command line gives them: `program_types=["encap_*=lwt_xmit"]`,
`global_values=["debug=1"]`, `memory_mb=1024`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from compat.cache import Cache
from compat.errors import UserError
from compat.results.compare import Comparison
from compat.results.compare import compare as _compare
from compat.results.model import RunResult

PathLike = str | os.PathLike[str]


def _table_values(options: dict[str, Any]) -> dict[str, Any]:
    """The CheckOptions values of the table's rows from keyword arguments (UserError for a name
    that is no row, or a value the command line would refuse)."""
    from compat.run.options import OPTIONS

    names = {o.name for o in OPTIONS}
    unknown = sorted(set(options) - names)
    if unknown:
        raise UserError(f"unknown check option {', '.join(unknown)}", f"the options are {', '.join(sorted(names))}")
    values = {}
    for row in OPTIONS:
        action = row.cli.get("action")
        given: Any
        if row.name not in options or options[row.name] is None:
            given = {"store_false": True, "store_true": False}.get(str(action), row.cli.get("default"))
        else:
            given = options[row.name]
            if action == "append":  # a rule option: a list of GLOB=VALUE texts (one text is a list of one)
                given = [given] if isinstance(given, str) else [str(v) for v in given]
            elif "type" in row.cli:  # the command line's bounds (memory, seconds)
                try:
                    given = row.cli["type"](str(given))
                except argparse.ArgumentTypeError as e:
                    raise UserError(f"{row.name}: {e}") from None
        values[row.name] = row.from_cli(given)
    return values


def _read_result(result: RunResult | PathLike, what: str) -> RunResult:
    if isinstance(result, RunResult):
        return result
    path = Path(result)
    if path.suffix == ".o":
        raise UserError(f"{what} {path}: takes a result file (JSON)", "check the baseline objects first")
    return RunResult.load(path)


def check(
    objects: Iterable[PathLike],
    *,
    kernels: Iterable[str] | None = None,
    matrix: PathLike | None = None,
    arch: str | None = None,
    baseline: RunResult | PathLike | None = None,
    cache: PathLike | None = None,
    jobs: int | None = None,
    result_cache: bool = True,
    **options: Any,
) -> RunResult:
    """Check every program of the objects (files, directories, binaries that embed objects) on
    the kernels (ids of the matrix or anything `--kernel` takes; None: the whole matrix) of the
    matrix file (None: the default matrix), as `compat check` does, and return the result.
    arch ("amd64", "arm64"; None: amd64) is `--arch`: the architecture of the matrix's entries
    that name none.

    baseline (a result file or a RunResult) is read before anything boots, and a warning is
    logged when it was checked with other options; compare(result, baseline) compares. cache:
    the cache directory ($COMPAT_CACHE or ~/.cache/compat when None). options: the rows of
    run/options.py's table by name. An object that cannot be read is a UserError.
    """
    import logging

    from compat.kernels.matrix import load_matrix
    from compat.run import options as check_options
    from compat.run.checker import Checker, CheckOptions, load_objects

    values = _table_values(options)
    paths = [str(p) for p in objects]
    if not paths:
        raise UserError("no objects to check", "give the paths of BPF object files")
    base = _read_result(baseline, "baseline") if baseline is not None else None
    store = Cache(Path(cache).expanduser().resolve() if cache is not None else None)
    store.dir()
    store.sweep_temporaries()
    spec = load_matrix(Path(matrix) if matrix is not None else None, arch)
    specs = spec.select(list(kernels or []))
    if any(s.releases for s in specs):  # a series: its point releases
        from compat.kernels.series import expand
        from compat.kernels.sources import KernelStore

        specs = expand(KernelStore(store), specs)
    loaded, infos, bad = load_objects(paths)
    if bad:
        raise UserError(bad[0])
    if values["global_values"]:
        from compat.cli.check import _check_globals

        _check_globals(values["global_values"], loaded)
    checker = Checker(store, specs, CheckOptions(**values, jobs=jobs, result_cache=result_cache))
    result = checker.run_groups([(loaded, infos)])[0]
    result.options["kernel_axis"] = spec.axis
    if base is not None:
        for warning in check_options.baseline_warnings([result, base], "the baseline"):
            logging.getLogger("compat").warning("%s", warning)
    return result


def compare(result: RunResult | PathLike, baseline: RunResult | PathLike | None = None) -> Comparison:
    """The comparison of a result (a RunResult or a result file) along its kernel axis, and
    with a baseline (a RunResult or a result file) when one is given: what `compat check
    --baseline` computes."""
    run = _read_result(result, "result")
    if baseline is None:
        return _compare(run)
    label = str(baseline) if not isinstance(baseline, RunResult) else "baseline"
    return _compare(run, _read_result(baseline, "baseline"), "file", label)


def report(
    result: RunResult | PathLike, format: str = "table", comparison: Comparison | None = None,
    fail_on: str = "regression",
) -> str:
    """The report of a result (a RunResult or a result file) in one of the formats of `compat
    check --format` (table, json, markdown, github, junit, sarif, csv, ...), as text; fail_on is
    the gate's policy (--fail-on), which JUnit's failures follow."""
    from compat.reports import render

    run = _read_result(result, "result")
    return render(format, run, comparison if comparison is not None else _compare(run), fail_on)


def gate(result: RunResult, comparison: Comparison | None = None, fail_on: str = "regression") -> int:
    """The exit status `compat check --fail-on FAIL_ON` would give this result (0 passes)."""
    from compat.results.gate import exit_status

    return exit_status(result, comparison if comparison is not None else _compare(result), fail_on)
