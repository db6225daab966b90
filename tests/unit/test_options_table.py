"""The table of check options (compat/run/options.py) drives the command line, the request, the
result cache key, the recorded options and the merge/--baseline warnings.

The real rows reproduce what each place wrote by hand before the table; one fake row added to a
copy of the table reaches every consumer with no other change on the host.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from compat.objects.globalvars import parse as parse_global
from compat.results.model import RunResult
from compat.run import options as table
from compat.run.checker import CheckOptions
from compat.run.options import BASELINE_WARNING, MERGE_WARNING, OPTIONS, Option, Placed, RequestContext

RULES: dict[str, Any] = {
    "attach": False,
    "memory_mb": 1024,
    "program_timeout": 30.0,
    "program_types": (("encap_*", "lwt_xmit"),),
    "global_values": (parse_global("debug=1"),),
    "attach_targets": (("file_read_*", "vfs_read"),),
}


def _run(**options: object) -> RunResult:
    return RunResult(kernels=[], objects=[], results=[], options=dict(options))


def test_every_row_is_a_typed_check_option() -> None:
    fields = {f.name for f in dataclasses.fields(CheckOptions)}
    assert {o.name for o in OPTIONS} <= fields
    assert set(CheckOptions(**RULES).values()) == {o.name for o in OPTIONS}


def test_the_rows_write_what_was_written_by_hand() -> None:
    values = CheckOptions(**RULES).values()
    ctx = RequestContext("k.o", {})
    request = table.request_fields(values, ctx)
    assert request == {
        "attach": False, "program_timeout": 30.0, "program_types": [["encap_*", "lwt_xmit"]],
        "globals": [], "attach_targets": [["file_read_*", "vfs_read"]],
    }  # fmt: skip  (globals: resolved against the object's variables, which has none)
    assert table.cache_key(values) == {
        "attach": False, "memory_mb": 1024, "program_types": [["encap_*", "lwt_xmit"]], "globals": ["debug=1"],
        "attach_targets": [["file_read_*", "vfs_read"]],
    }  # fmt: skip
    assert table.recorded(values, always=True) == {"attach": False}
    recorded = table.recorded(values, always=False)
    assert list(recorded) == ["program_types", "set_global", "attach_targets"]  # the order result files have
    assert recorded == {"program_types": ["encap_*=lwt_xmit"], "set_global": ["debug=1"],
                        "attach_targets": ["file_read_*=vfs_read"]}  # fmt: skip
    assert table.recorded(CheckOptions().values(), always=False) == {}  # unset: not recorded


def test_warnings_keep_their_words() -> None:
    a, b = _run(attach=True, program_types=["x=xdp"]), _run(attach=False, attach_targets=["f=vfs_read"])
    assert table.differing_options([a, b]) == ["--program-type", "--attach-target"]
    assert table.baseline_warnings([a, b], "old.json") == [
        "old.json was checked with other --program-type options than this run: a verdict that differs may be "
        "the options' doing",
        "old.json was checked with other --attach-target options than this run: a verdict that differs may be "
        "the options' doing",
    ]
    options, said = table.merged([a, b], always=True)
    assert options == {"attach": None} and said == [
        "some result files were checked with --no-attach, others with attach checks"
    ]
    options, said = table.merged([a, b], always=False)
    assert options == {} and said == [
        "the result files were checked with different --program-type options",
        "the result files were checked with different --attach-target options",
    ]
    options, said = table.merged([a, _run(attach=True, program_types=["x=xdp"])], always=False)
    assert options == {"program_types": ["x=xdp"]} and said == []


FAKE = Option(
    "max_insns", ("--max-insns",), {"type": int, "metavar": "N", "help": "a fake option: the test of one row"},
    request="max_insns", cache_key="max_insns", record="max_insns",
    baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING,
)  # fmt: skip


def test_one_more_row_reaches_every_consumer() -> None:
    rows = (*OPTIONS, FAKE)
    parser = argparse.ArgumentParser()
    placed = Placed(parser, rows)
    placed.add("attach")
    placed.rest()  # the new row needs no place of its own
    args = parser.parse_args(["--max-insns", "4096", "--program-type", "a=xdp"])
    values = table.from_args(args, rows)
    assert values["max_insns"] == 4096 and values["program_types"] == (("a", "xdp"),)
    values["memory_mb"] = 512
    assert table.request_fields(values, RequestContext("k.o", {}), rows)["max_insns"] == 4096
    assert table.cache_key(values, rows)["max_insns"] == 4096
    assert table.recorded(values, always=False, table=rows)["max_insns"] == 4096
    runs = [_run(max_insns=4096), _run(max_insns=8192)]
    assert table.differing_options(runs, rows) == ["--max-insns"]
    assert table.baseline_warnings(runs, "old.json", rows) == [
        "old.json was checked with other --max-insns options than this run: a verdict that differs may be the "
        "options' doing"
    ]
    assert table.merged(runs, always=False, table=rows)[1] == [
        "the result files were checked with different --max-insns options"
    ]


def test_the_check_parser_has_every_row() -> None:
    from compat.cli.options import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {f for action in sub.choices["check"]._actions for f in action.option_strings}
    assert {o.flags[0] for o in OPTIONS} <= flags
