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

from compat_agent.wire.features import PROG_FLAGS  # --prog-flags' names

from compat.errors import UserError
from compat.objects import globalvars
from compat.results.privilege import PRIVILEGES

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


# enum bpf_map_type in its order (the index is the value), by libbpf's names (--inner-map TYPE).
MAP_TYPES: tuple[str, ...] = (
    "unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash", "percpu_array", "stack_trace",
    "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie", "array_of_maps", "hash_of_maps", "devmap",
    "sockmap", "cpumap", "xskmap", "sockhash", "cgroup_storage", "reuseport_sockarray", "percpu_cgroup_storage",
    "queue", "stack", "sk_storage", "devmap_hash", "struct_ops", "ringbuf", "inode_storage", "task_storage",
    "bloom_filter", "user_ringbuf", "cgrp_storage", "arena",
)  # fmt: skip
MAX_MAP_ENTRIES = (1 << 32) - 1  # max_entries is a __u32
MAX_MAP_SIZE = 1 << 16  # key and value sizes: the kernel's own bound is far below a u32


def prog_flags(text: str) -> tuple[str, int]:
    """One --prog-flags GLOB=FLAG[,FLAG…] as (glob, the flags or-ed); an unknown flag name is a
    usage error naming the known ones."""
    glob, names = rule("--prog-flags", text, "GLOB=FLAG[,FLAG…]", "*=BPF_F_STRICT_ALIGNMENT")
    value = 0
    for name in names.split(","):
        key = name.strip().upper()
        key = key if key.startswith("BPF_F_") else f"BPF_F_{key}"
        if key not in PROG_FLAGS:
            raise UserError(f"--prog-flags {text!r}: unknown program flag {name.strip()!r}",
                            f"give one of {', '.join(PROG_FLAGS)}")  # fmt: skip
        value |= PROG_FLAGS[key]
    return glob, value


def _count(option: str, text: str, what: str, value: str, low: int, high: int) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        n = -1
    if not low <= n <= high:
        raise UserError(f"{option} {text!r}: {what} must be an integer from {low} to {high}")
    return n


def inner_map(text: str) -> tuple[str, int, int, int, int]:
    """One --inner-map OUTER=TYPE:KEY_SIZE:VALUE_SIZE:ENTRIES as (outer, map type value, key size,
    value size, entries)."""
    outer, spec = rule("--inner-map", text, "OUTER=TYPE:KEY_SIZE:VALUE_SIZE:ENTRIES", "inner_maps=array:4:4:1")
    parts = spec.split(":")
    if len(parts) != 4:
        raise UserError(f"--inner-map {text!r}: give OUTER=TYPE:KEY_SIZE:VALUE_SIZE:ENTRIES",
                        "e.g. --inner-map 'inner_maps=array:4:4:1'")  # fmt: skip
    kind = parts[0].lower().removeprefix("bpf_map_type_")
    if kind not in MAP_TYPES[1:]:
        raise UserError(f"--inner-map {text!r}: unknown map type {parts[0]!r}",
                        f"give a map type as libbpf names it: {', '.join(MAP_TYPES[1:])}")  # fmt: skip
    key = _count("--inner-map", text, "KEY_SIZE", parts[1], 0, MAX_MAP_SIZE)
    value = _count("--inner-map", text, "VALUE_SIZE", parts[2], 0, MAX_MAP_SIZE)
    entries = _count("--inner-map", text, "ENTRIES", parts[3], 1, MAX_MAP_ENTRIES)
    return outer, MAP_TYPES.index(kind), key, value, entries


def map_size(text: str) -> tuple[str, int]:
    """One --map-size NAME=ENTRIES."""
    name, entries = rule("--map-size", text, "NAME=ENTRIES", "events=4096")
    return name, _count("--map-size", text, "ENTRIES", entries, 1, MAX_MAP_ENTRIES)


def privileges(given: Sequence[str] | None) -> tuple[str, ...]:
    """--privilege's modes in the order given, each once; () for root alone (the default: the
    request, the result cache key and the recorded options stay as they were without it)."""
    modes = tuple(dict.fromkeys(given or ()))
    unknown = [m for m in modes if m not in PRIVILEGES]  # the command line's choices; the Python API's here
    if unknown:
        raise UserError(f"--privilege {unknown[0]!r}: no such privilege", f"give one of {', '.join(PRIVILEGES)}")
    return () if modes in ((), ("root",)) else modes


def _flag_texts(value: Sequence[tuple[str, int]]) -> list[str]:
    return [f"{glob}={','.join(n for n, bit in PROG_FLAGS.items() if flags & bit)}" for glob, flags in value]


def _inner_texts(value: Sequence[tuple[str, int, int, int, int]]) -> list[str]:
    return [f"{outer}={MAP_TYPES[kind]}:{k}:{v}:{n}" for outer, kind, k, v, n in value]


def _size_texts(value: Sequence[tuple[str, int]]) -> list[str]:
    return [f"{name}={n}" for name, n in value]


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
    # left out of the request and the cache key when not given (rows added later: the keys of
    # results cached before them, and the requests older agents read, stay as they were)
    omit_unset: bool = False


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
    Option("prog_flags", ("--prog-flags",), {"action": "append", "dest": "prog_flags", "metavar": "GLOB=FLAG[,FLAG…]",
           "help": "load the programs whose name or section matches GLOB with these BPF_PROG_LOAD flags added "
           f"(bpf_program__set_flags; repeatable, the first match wins): {', '.join(PROG_FLAGS)}"},
           from_cli=lambda texts: tuple(prog_flags(t) for t in texts or []),
           request="prog_flags", to_request=lambda value, ctx: [{"glob": g, "flags": f} for g, f in value],
           cache_key="prog_flags", to_cache=_flag_texts, record="prog_flags", to_record=_flag_texts,
           baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING, omit_unset=True),
    Option("inner_maps", ("--inner-map",), {"action": "append", "dest": "inner_maps",
           "metavar": "OUTER=TYPE:KEY_SIZE:VALUE_SIZE:ENTRIES",
           "help": "give the map of maps OUTER an inner map of this shape before loading, as its loader does "
           "(bpf_map__set_inner_map_fd; repeatable): for maps of maps whose object declares no inner map"},
           from_cli=lambda texts: tuple(inner_map(t) for t in texts or []),
           request="inner_maps", to_request=lambda value, ctx: [
               {"map": o, "type": t, "key_size": k, "value_size": v, "max_entries": n} for o, t, k, v, n in value],
           cache_key="inner_maps", to_cache=_inner_texts, record="inner_maps", to_record=_inner_texts,
           baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING, omit_unset=True),
    Option("map_sizes", ("--map-size",), {"action": "append", "dest": "map_sizes", "metavar": "NAME=ENTRIES",
           "help": "create the map NAME with ENTRIES entries, as a loader that sizes it does "
           "(bpf_map__set_max_entries; repeatable)"},
           from_cli=lambda texts: tuple(map_size(t) for t in texts or []),
           request="map_sizes", to_request=lambda value, ctx: [{"map": m, "max_entries": n} for m, n in value],
           cache_key="map_sizes", to_cache=_size_texts, record="map_sizes", to_record=_size_texts,
           baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING, omit_unset=True),
    Option("privileges", ("--privilege",), {"action": "append", "dest": "privileges", "choices": PRIVILEGES,
           "metavar": "MODE",
           "help": "check under this privilege, each its own column like another kernel, all in one guest per "
           "kernel (repeatable): root (default), caps (CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN without "
           "CAP_SYS_ADMIN), unprivileged (no capabilities, kernel.unprivileged_bpf_disabled=0)"},
           from_cli=privileges, request="privileges", to_request=lambda value, ctx: list(value),
           cache_key="privileges", to_cache=list, record="privileges", to_record=list,
           baseline_warning=BASELINE_WARNING, merge_warning=MERGE_WARNING, omit_unset=True),
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
    return {o.request: o.to_request(values[o.name], ctx) for o in table if o.request and _given(o, values)}


def cache_key(values: Mapping[str, Any], table: Sequence[Option] = OPTIONS) -> dict[str, Any]:
    """The options part of the result cache key: every option a verdict depends on."""
    return {o.cache_key: o.to_cache(values[o.name]) for o in table if o.cache_key and _given(o, values)}


def _given(o: Option, values: Mapping[str, Any]) -> bool:
    """Whether a row goes into the request and the cache key (omit_unset rows only when set)."""
    # An omit_unset row a caller does not name at all (check_request's callers predate it) is unset.
    return not o.omit_unset or bool(values.get(o.name))


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
