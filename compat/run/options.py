"""The options of a check that change verdicts or are recorded with them, as one table.

Each row of OPTIONS says everything compat does with one option: its command-line flags, how
argparse reads it (type and range, help), how the parsed value becomes the CheckOptions field of
the same name, what the guest's check request carries, whether it is part of the result cache
key (and as what), how a result file records it in its ``options``, and what ``compat merge``
and ``--baseline`` say when two runs differ in it. The check parser (cli/options.py), the
request and the result cache key (checker.py), the recorded options and the warnings (shard.py,
cli/check.py) all read this table: a new verdict-changing option is one row here (plus its
typed CheckOptions field and its handling in the guest agent).

The command line's rule syntax (GLOB=VALUE) and the numeric ranges live here too, because the
rows name them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compat.errors import UserError
from compat.objects import globalvars

if TYPE_CHECKING:
    from compat.results.model import RunResult

MIN_MEMORY_MB, MAX_MEMORY_MB = 256, 65536  # python + libbpf + a vmlinux BTF need ~200 MiB
MAX_STEP_SECONDS = 86400  # one object or one program: a day (the defaults are 900 and 300 s)
# Per program (the agent stops the verifier): a pathological program gets no verdict, and the
# rest of its object still does. Real programs near the 1M-instruction limit take a minute or
# two under emulation.
DEFAULT_PROGRAM_TIMEOUT = 300.0

# The words of the warnings when runs differ in an option ({flag}: its flag; {baseline}: the file).
BASELINE_WARNING = (
    "{baseline} was checked with other {flag} options than this run: a verdict that differs may be the options' doing"
)
MERGE_WARNING = "the result files were checked with different {flag} options"


def bounded(
    kind: type[int] | type[float], low: float, high: float, what: str, *, above: bool = False
) -> Callable[[str], int | float]:
    """An argparse type: a finite number of kind from low (excluded when above) to high; anything
    else (a word, nan, inf, out of range) is one usage line naming the range, exit 2."""

    def parse(text: str) -> int | float:
        try:
            value: int | float = kind(text)
        except (ValueError, OverflowError):
            value = math.nan
        if not (math.isfinite(value) and (value > low if above else value >= low) and value <= high):
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
        return value

    return parse


step_seconds = bounded(float, 0, MAX_STEP_SECONDS, f"a number of seconds above 0, at most {MAX_STEP_SECONDS} (a day)",
                       above=True)  # fmt: skip
memory = bounded(int, MIN_MEMORY_MB, MAX_MEMORY_MB, f"a number of MiB from {MIN_MEMORY_MB} to {MAX_MEMORY_MB}")


def rule(option: str, text: str, metavar: str, example: str) -> tuple[str, str]:
    """One GLOB=VALUE of a rule option (--program-type, --attach-target)."""
    glob, _, value = text.partition("=")
    if not glob.strip() or not value.strip() or any(c.isspace() for c in value.strip()):
        raise UserError(f"{option} {text!r}: give {metavar}, e.g. '{example}'")
    return glob.strip(), value.strip()


def program_type(text: str) -> tuple[str, str]:
    """One --program-type GLOB=SECTION; a SECTION libbpf gives no type is a usage error naming
    the ones it does (checked before anything boots, not turned into verdicts)."""
    from compat.objects.objfile import LIBBPF_SECTIONS, libbpf_knows

    glob, section = rule("--program-type", text, "GLOB=SECTION", "encap_*=lwt_xmit")
    if not libbpf_knows(section):
        known = ", ".join(name.replace("+", "[/…]") for name in LIBBPF_SECTIONS)
        raise UserError(f"--program-type {text!r}: libbpf knows no program type for section '{section}'",
                        f"give a libbpf section name: {known}")  # fmt: skip
    return glob, section


def attach_target(text: str) -> tuple[str, str]:
    """One --attach-target GLOB=TARGET."""
    return rule("--attach-target", text, "GLOB=TARGET", "file_read_*=vfs_read")


def _default_memory() -> int:
    from compat.guest.vm import DEFAULT_MEMORY_MB  # not at import: the parser of every command reads this table

    return DEFAULT_MEMORY_MB


@dataclass(frozen=True)
class RequestContext:
    """What a request field may depend on besides the option: the object it is for."""

    object: str  # the file name the guest's libbpf sees
    variables: Mapping[str, Any]  # the object's global variables (the ELF analysis; {} when it failed)


def _same(value: Any) -> Any:
    return value


def _rules(value: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [list(r) for r in value]


def _rule_texts(value: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{glob}={target}" for glob, target in value]


def _assignments(value: Sequence[globalvars.Assignment]) -> list[str]:
    return [a.to_json() for a in value]


@dataclass(frozen=True)
class Option:
    """One option of a check (see the module's docstring for what each column drives)."""

    name: str  # the CheckOptions field (and the key of the values the functions below take)
    flags: tuple[str, ...]  # on the command line of compat check
    cli: Mapping[str, Any]  # the rest of argparse's add_argument (dest, type, action, metavar, help)
    from_cli: Callable[[Any], Any] = _same  # argparse's value (None when not given) -> the field's value
    request: str | None = None  # its field in the guest's check request (None: the guest does not need it)
    to_request: Callable[[Any, RequestContext], Any] = lambda value, ctx: value
    cache_key: str | None = None  # its key in the result cache's options (None: no verdict depends on it)
    to_cache: Callable[[Any], Any] = _same
    record: str | None = None  # its key in a result file's options (None: not recorded)
    to_record: Callable[[Any], Any] = _same
    record_always: bool = False  # recorded even when not set (attach), before the run's figures
    baseline_warning: str | None = None  # said when --baseline's run differs in it (None: nothing)
    merge_warning: str | None = None  # said when merged result files differ in it


# In the order result files have always recorded them (and merge and --baseline warned about them).
OPTIONS: tuple[Option, ...] = (
    Option("attach", ("--no-attach",), {"dest": "attach", "action": "store_false",
           "help": "load only; do not try to attach"}, from_cli=bool,
           request="attach", cache_key="attach", record="attach", record_always=True,
           merge_warning="some result files were checked with --no-attach, others with attach checks"),
    Option("program_types", ("--program-type",), {"action": "append", "dest": "program_types",
           "metavar": "GLOB=SECTION",
           "help": "load the programs whose name or section matches GLOB as the type of a libbpf section name "
           "(tc, xdp, lwt_xmit, cgroup/connect4, ...): for sections that name no type, whose loader sets it "
           "(repeatable; the first match wins)"},
           from_cli=lambda texts: tuple(program_type(t) for t in texts or []),
           request="program_types", to_request=lambda value, ctx: _rules(value),
           cache_key="program_types", to_cache=_rules, record="program_types", to_record=_rule_texts,
           baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING),
    Option("global_values", ("--set-global",), {"action": "append", "dest": "global_values", "metavar": "NAME=VALUE",
           "help": "set a global variable (a loader's const volatile configuration in .rodata, or .data/.bss) in "
           "every object that defines it before loading, as the loader does (repeatable)"},
           from_cli=lambda texts: tuple(globalvars.parse(t) for t in texts or []),
           request="globals", to_request=lambda value, ctx: globalvars.resolve(list(value), dict(ctx.variables),
                                                                                ctx.object),
           cache_key="globals", to_cache=_assignments, record="set_global", to_record=_assignments,
           baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING),
    Option("attach_targets", ("--attach-target",), {"action": "append", "dest": "attach_targets",
           "metavar": "GLOB=TARGET",
           "help": "attach the programs whose name or section matches GLOB to TARGET (a kernel function, "
           "tracepoint or LSM hook; BINARY:FUNCTION for a uprobe) instead of what their section names, as a "
           "loader does that points a "
           "placeholder such as fentry/dummy_file_read at the function of the moment with "
           "bpf_program__set_attach_target (repeatable; the first match wins)"},
           from_cli=lambda texts: tuple(attach_target(t) for t in texts or []),
           request="attach_targets", to_request=lambda value, ctx: _rules(value),
           cache_key="attach_targets", to_cache=_rules, record="attach_targets", to_record=_rule_texts,
           baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING),
    Option("program_timeout", ("--program-timeout",), {"type": step_seconds, "default": None, "metavar": "S",
           "help": "seconds the verifier may spend on one program: one over it gets no verdict, the rest of its "
           "object still does"},
           from_cli=lambda seconds: seconds or DEFAULT_PROGRAM_TIMEOUT, request="program_timeout"),
    Option("memory_mb", ("--memory",), {"type": memory, "default": None, "metavar": "MIB",
           "help": "memory of each guest (default 512)"},
           from_cli=lambda mib: mib or _default_memory(), cache_key="memory_mb"),
)  # fmt: skip
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


@dataclass
class Placed:
    """The check parser's bookkeeping: which rows it has added (the rest go at the end)."""

    parser: argparse.ArgumentParser
    table: Sequence[Option] = OPTIONS
    done: set[str] = field(default_factory=set)

    def add(self, *names: str) -> None:
        """Add these rows' flags here (the place they have always had in --help)."""
        for name in names:
            row = next(o for o in self.table if o.name == name)
            self.parser.add_argument(*row.flags, **row.cli)
            self.done.add(name)

    def rest(self) -> None:
        """Add every row not placed yet (a new option needs no place of its own)."""
        self.add(*(o.name for o in self.table if o.name not in self.done))


def from_args(args: argparse.Namespace, table: Sequence[Option] = OPTIONS) -> dict[str, Any]:
    """The CheckOptions values of the table's options from parsed arguments (UserError on a bad rule)."""
    return {o.name: o.from_cli(getattr(args, o.cli.get("dest", o.name), None)) for o in table}


def request_fields(values: Mapping[str, Any], ctx: RequestContext, table: Sequence[Option] = OPTIONS) -> dict[str, Any]:
    """The check request's fields for the options, in the table's order."""
    return {o.request: o.to_request(values[o.name], ctx) for o in table if o.request}


def cache_key(values: Mapping[str, Any], table: Sequence[Option] = OPTIONS) -> dict[str, Any]:
    """The options part of the result cache key: every option a verdict depends on."""
    return {o.cache_key: o.to_cache(values[o.name]) for o in table if o.cache_key}


def recorded(values: Mapping[str, Any], always: bool, table: Sequence[Option] = OPTIONS) -> dict[str, Any]:
    """A result file's options: those recorded always (always=True), or those recorded when set."""
    return {
        o.record: o.to_record(values[o.name])
        for o in table
        if o.record and o.record_always == always and (always or values[o.name])
    }


def _comparable(value: Any) -> Any:
    """A recorded option's value as a set member (lists as tuples; absent and empty alike)."""
    if isinstance(value, list):
        return tuple(value)
    return () if value is None else value


def differing(runs: Sequence[RunResult], table: Sequence[Option] = OPTIONS) -> list[Option]:
    """The recorded options the runs were checked with differently: comparing or merging their
    verdicts mixes configurations."""
    return [o for o in table if o.record and len({_comparable(r.options.get(o.record)) for r in runs}) > 1]


def differing_options(runs: Sequence[RunResult], table: Sequence[Option] = OPTIONS) -> list[str]:
    """The flags of the options --baseline warns about that the runs were checked with differently."""
    return [o.flags[0] for o in differing(runs, table) if o.baseline_warning]


def baseline_warnings(runs: Sequence[RunResult], baseline: str, table: Sequence[Option] = OPTIONS) -> list[str]:
    """What --baseline says when the baseline's run was checked with other options than this one."""
    return [o.baseline_warning.format(flag=o.flags[0], baseline=baseline)
            for o in differing(runs, table) if o.baseline_warning]  # fmt: skip


def merged(
    runs: Sequence[RunResult], always: bool, table: Sequence[Option] = OPTIONS
) -> tuple[dict[str, Any], list[str]]:
    """The recorded options of merged runs (always=True: those recorded always, None where the
    runs differ; else those recorded when set, left out where they differ) and the warnings."""
    differ = differing(runs, table)
    first = runs[0].options
    options: dict[str, Any] = {}
    for o in table:
        if not o.record or o.record_always != always:
            continue
        if always:
            options[o.record] = None if o in differ else first.get(o.record)
        elif o not in differ and first.get(o.record):
            options[o.record] = list(first[o.record])
    warnings = [
        o.merge_warning.format(flag=o.flags[0]) for o in differ if o.merge_warning and o.record_always == always
    ]
    return options, warnings
