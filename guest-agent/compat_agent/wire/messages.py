"""Every message between the host and the guest agent, as typed data.

Each message is a dataclass whose annotations say what its JSON holds and whose ``Annotated``
metadata gives the bounds (validate.py). ``to_json()`` gives the JSON the other side reads (the
field names the agent has always sent); ``from_json()`` checks untrusted JSON against the same
definition and raises WireError with a path (``programs[3].stats.insns_processed: expected an
integer, got str``) before building the dataclass. The bounds are those of compat/guestmsg.py:
strings bounded and valid Unicode, integers in a 64-bit range and never booleans, numbers finite,
lists bounded, a verdict one of accepted/rejected/timeout, unknown extra fields ignored.

New on the wire (phase 2 of issue 15 switches the agent and the host to it): ``facts`` on a
program record and on a check result (see facts.py), and ``protocol`` on the hello, which the
host checks with ``check_protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from .facts import Fact, check_facts
from .framing import PROTOCOL_VERSION
from .stats import STATS
from .validate import (
    DIGITS,
    KFUNCS_MAX,
    LOG_MAX,
    NOT_NULL,
    TEXT_MAX,
    Max,
    WireError,
    build,
    check_record,
    to_json,
)

TIMEOUT = "timeout"  # the agent stopped the verifier at the program time limit: no verdict
VERDICTS = ("accepted", "rejected", TIMEOUT)

Text = Annotated[str, Max(TEXT_MAX)]
Log = Annotated[str, Max(LOG_MAX)]
Verdict = Literal["accepted", "rejected", "timeout"]
BoolMap = Annotated[dict[str, bool], Max(4096)]
Facts = list[dict[str, Any]]  # checked against the fact table by check_facts, not by annotation

M = TypeVar("M", bound="Message")


class Message:
    """What every message has: to_json() and a validating from_json()."""

    FACTS_FIELDS: ClassVar[tuple[str, ...]] = ()  # fields holding facts (checked against the fact table)

    def to_json(self) -> dict[str, Any]:
        """The message as the JSON the other side reads."""
        out = to_json(self)
        assert isinstance(out, dict)
        return out

    @classmethod
    def check(cls, value: Any, where: str = "") -> None:
        """Check untrusted JSON against the definition (WireError with a path on the first problem)."""
        check_record(cls, value, where)
        _check_facts(cls, value, where)

    @classmethod
    def from_json(cls: type[M], value: Any) -> M:
        """The message for untrusted JSON, checked first (WireError when it does not match)."""
        try:
            cls.check(value)
        except RecursionError:  # only a bug could get here: definitions are finite, values checked top-down
            raise WireError("", "nested too deeply") from None
        return build(cls, value)


def _check_facts(cls: type, value: dict[str, Any], where: str) -> None:
    """The facts of a message and of its nested records, against the fact table."""
    for name in getattr(cls, "FACTS_FIELDS", ()):
        if value.get(name) is not None:
            check_facts(value[name], f"{where}.{name}" if where else name)
    for name, nested in _NESTED.get(cls.__name__, {}).items():
        items = value.get(name)
        for i, item in enumerate(items if isinstance(items, list) else []):
            _check_facts(nested, item, f"{where}.{name}[{i}]" if where else f"{name}[{i}]")


# -- the hello -------------------------------------------------------------------------------------


@dataclass
class Hello(Message):
    """The agent's first message: the kernel it runs on and what it is."""

    type: Literal["hello"]
    release: str
    btf: bool
    schema: str | None = None
    agent: str | None = None
    protocol: int | None = None  # PROTOCOL_VERSION of the agent (absent before facts: protocol 1)
    kernel_build: str | None = None
    machine: str | None = None
    libbpf: str | None = None
    libbpf_package: str | None = None
    python: str | None = None
    uptime: int | float | None = None
    mem_total_kb: int | None = None


def check_protocol(hello: Hello) -> None:
    """WireError unless the agent speaks the host's protocol (an image from another compat)."""
    spoken = hello.protocol if hello.protocol is not None else 1
    if spoken != PROTOCOL_VERSION:
        raise WireError(
            "protocol",
            f"the guest agent speaks protocol {spoken}, this host {PROTOCOL_VERSION} (rebuild the guest image: "
            "compat check --refresh)",
        )


# -- the check request (host -> guest) -------------------------------------------------------------


@dataclass
class CheckRequest(Message):
    """Check one object (its bytes follow the message): the options that change verdicts, and the
    host's ELF analysis (externs, what each program calls; {} when it failed: the agent makes its own).

    program_timeout: seconds the verifier may spend on one program (None: no limit); program_types:
    (glob, libbpf section) pairs, --program-type; attach_targets: (glob, target) pairs,
    --attach-target; globals: --set-global, resolved against the object's variables; prog_flags:
    --prog-flags ({glob, flags}); inner_maps: --inner-map ({map, type (enum bpf_map_type),
    key_size, value_size, max_entries}); map_sizes: --map-size ({map, max_entries}); tests: how a
    kernel selftest's own loader (test_loader) loads each annotated program, from the object's
    annotations ({program, flags: the BPF_F_* its __flag()s set, log_level: of the log its expected
    messages are searched in, 0 for none})."""

    type: Literal["check"]
    object: str
    attach: bool
    elf: dict[str, Any] = field(default_factory=dict)
    program_timeout: int | float | None = None
    program_types: Annotated[list[Annotated[list[str], Max(2)]], Max(4096)] = field(default_factory=list)
    globals: Annotated[list[dict[str, Any]], Max(4096)] = field(default_factory=list)
    attach_targets: Annotated[list[Annotated[list[str], Max(2)]], Max(4096)] = field(default_factory=list)
    prog_flags: Annotated[list[dict[str, Any]], Max(4096)] = field(default_factory=list)  # {glob, flags}
    inner_maps: Annotated[list[dict[str, Any]], Max(4096)] = field(default_factory=list)  # {map, type, key_size, ...}
    map_sizes: Annotated[list[dict[str, Any]], Max(4096)] = field(default_factory=list)  # {map, max_entries}
    # --privilege: check under each of these modes (absent: root alone; see the reply's privileges)
    privileges: Annotated[list[Literal["root", "caps", "unprivileged"]], Max(3)] = field(default_factory=list)
    tests: Annotated[list[dict[str, Any]], Max(65536)] = field(default_factory=list)  # {program, flags, log_level}
    id: int | None = None


# -- the check result (guest -> host) --------------------------------------------------------------


@dataclass
class AttachRecord(Message):
    """Whether the program attached (--attach), and why not."""

    status: str
    errno: int | None = None
    reason: Text | None = None


def _stats_record() -> type[Message]:
    """StatsRecord, made from stats.py's table: one optional field per statistic, in its order."""
    return make_dataclass(
        "StatsRecord",
        [(s.json, s.wire_type(), field(default=None)) for s in STATS],
        bases=(Message,),
        namespace={"__module__": __name__, "__doc__": _STATS_DOC},
    )


_STATS_DOC = "The verifier's statistics of one program (stats.py's table; None: the log did not say)."
if TYPE_CHECKING:  # what type checkers see: the fields are the table's rows, known at run time

    @dataclass
    class StatsRecord(Message):
        """The verifier's statistics of one program (stats.py's table; None: the log did not say)."""

        def __getattr__(self, name: str) -> int | list[int] | None: ...

else:
    StatsRecord = _stats_record()


@dataclass
class ProgramRecord(Message):
    """One program of the object on this kernel: its verdict, where and why it failed, its stats."""

    FACTS_FIELDS: ClassVar[tuple[str, ...]] = ("facts",)

    program: str
    verdict: Verdict
    section: str | None = None
    prog_type: str | None = None
    prog_type_from: Literal["section", "context", "option"] | None = None
    attach_type: str | None = None
    attach_target: str | None = None
    stage: str | None = None
    errno: int | None = None
    message: Text | None = None
    libbpf_log: Log | None = None
    log: Log | None = None
    log_level: int | None = None
    stats: Annotated[StatsRecord | None, NOT_NULL] = None
    helpers: list[int] | None = None
    kfuncs: list[str] | None = None
    load_ms: int | float | None = None
    attach: Annotated[AttachRecord | None, NOT_NULL] = None
    facts: Annotated[Facts | None, NOT_NULL] = None


@dataclass
class StructOpsRecord(Message):
    """A struct_ops map's kernel struct, and whether it is created with BPF_F_LINK."""

    type: str
    link: bool


@dataclass
class MapRecord(Message):
    """One map of the object: its type, and whether libbpf created it (errno when not)."""

    name: str
    type: str | None = None
    ok: bool | None = None
    errno: int | None = None
    note: str | None = None
    struct_ops: StructOpsRecord | None = None


@dataclass
class ExternRecord(Message):
    """An extern of the object (kfunc, ksym, kconfig), and whether it is weak."""

    name: str
    kind: str
    weak: Annotated[bool | None, NOT_NULL] = None


@dataclass
class OpenRecord(Message):
    """bpf_object__open: whether it worked, and libbpf's words when it did not."""

    ok: bool
    errno: int | None = None
    message: Text | None = None
    libbpf_log: Log | None = None


@dataclass
class ObjectLoadRecord(Message):
    """The object as shipped: whether bpf_object__load with every program and map as the object
    declares them (a skeleton's load) succeeded, and if not, what failed first: a program (name),
    a map the kernel could not create (name), or the object as a whole (message)."""

    ok: bool
    stage: Literal["program", "map", "object"] | None = None
    name: str | None = None
    errno: int | None = None
    message: Text | None = None


@dataclass
class KernelWarningRecord(Message):
    """A splat the kernel logged while the object was checked (checker/kmsg.py): its kind (the
    pattern table's) and its lines, bounded."""

    kind: Literal["reg_invariants", "verifier_bug", "kasan", "ubsan", "lockdep", "bug", "warning"]
    lines: Annotated[list[Annotated[str, Max(4096)]], Max(64)]


@dataclass
class CheckResult(Message):
    """The check of one object on one kernel. facts: the object's own (its open failure's)."""

    FACTS_FIELDS: ClassVar[tuple[str, ...]] = ("facts",)

    type: Literal["check_result"]
    open: OpenRecord
    programs: list[ProgramRecord]
    id: int | None = None
    object: str | None = None
    duration_ms: int | float | None = None
    libbpf: str | None = None
    externs: Annotated[list[ExternRecord] | None, NOT_NULL] = None
    maps: Annotated[list[MapRecord] | None, NOT_NULL] = None
    facts: Annotated[Facts | None, NOT_NULL] = None
    object_load: Annotated[ObjectLoadRecord | None, NOT_NULL] = None  # absent: not known (legacy loader)
    kernel_warnings: Annotated[list[KernelWarningRecord] | None, Max(16), NOT_NULL] = None  # absent: none
    # --privilege: the mode of this check (absent: root), and the other modes' replies by mode (a
    # check_result or an error reply each; the host validates them: run/privileges.py)
    privilege: Literal["root", "caps", "unprivileged"] | None = None
    privileges: Annotated[dict[str, dict[str, Any]] | None, Max(3), NOT_NULL] = None


# -- the probe result (guest -> host) --------------------------------------------------------------


@dataclass
class ProbeResult(Message):
    """What the kernel supports: program and map types, helpers per program type (with names),
    the kfuncs of its BTF and where each is allowed, and features."""

    type: Literal["probe_result"]
    prog_types: BoolMap
    map_types: BoolMap
    helpers: Annotated[dict[str, Annotated[list[int], Max(4096)]], Max(4096)]
    helper_names: Annotated[dict[str, str], Max(4096), DIGITS]
    kfuncs_btf: Annotated[list[str], Max(KFUNCS_MAX)]
    kfunc_allowed: Annotated[dict[str, BoolMap], Max(KFUNCS_MAX)]
    id: int | None = None
    duration_ms: int | float | None = None
    kfuncs_source: str | None = None
    timings: Annotated[dict[str, int | float | None], Max(64)] | None = None
    features: Annotated[dict[str, bool], Max(64)] | None = None


# -- compat run: the team's own loader (host -> guest, guest -> host) --------------------------------

RUN_DIR = "/tmp/compat-run"  # the command's working directory in the guest, made afresh for each run


@dataclass
class RunFile(Message):
    """One file of a run request: its path under the fresh working directory (relative, no ..),
    its mode bits, and its size: the payload holds the files' bytes one after another, in order."""

    path: Annotated[str, Max(4096)]
    size: int
    mode: int = 0o644


@dataclass
class RunRequest(Message):
    """Run the team's own loader (compat run): argv (argv[0] a path under the working directory,
    or one of the guest's interpreters), its files (RunFile, bytes in the payload), the seconds it
    may run, whether still running then counts as success, the bound on stdout and stderr, and
    the private library directory (under the working directory) for a dynamically linked loader."""

    type: Literal["run"]
    argv: Annotated[list[Annotated[str, Max(65536)]], Max(4096)]
    files: Annotated[list[RunFile], Max(65536)]
    timeout: int | float = 60
    running_ok: bool = False
    output_max: int = 65536
    env: Annotated[dict[str, Annotated[str, Max(65536)]], Max(256)] = field(default_factory=dict)
    id: int | None = None


@dataclass
class BpfProgSeen(Message):
    """A BPF program that existed while the command ran (walked by id): its kernel name (at most
    15 characters), type, id, and the instructions the verifier processed (None: the kernel does
    not say, before 5.16)."""

    id: int
    name: Annotated[str, Max(64)]
    type: Annotated[str, Max(64)]
    verified_insns: int | None = None
    loaded_at_end: bool = False


@dataclass
class BpfMapSeen(Message):
    """A BPF map that existed while the command ran: name, type, id, sizes."""

    id: int
    name: Annotated[str, Max(64)]
    type: Annotated[str, Max(64)]
    key_size: int | None = None
    value_size: int | None = None
    max_entries: int | None = None
    loaded_at_end: bool = False


@dataclass
class RunReply(Message):
    """What the command did on this kernel: its exit status (None: it was still running at the
    timeout and was stopped, or it could not start: error says why), the signal that ended it,
    its output (bounded, and whether it was cut), its duration, the kernel log lines that
    appeared while it ran, the kernel's warnings among them, and the BPF programs and maps that
    existed while it ran."""

    type: Literal["run_result"]
    exit_status: int | None
    timed_out: bool
    duration_ms: int | float
    stdout: Log
    stderr: Log
    programs: Annotated[list[BpfProgSeen], Max(65536)]
    maps: Annotated[list[BpfMapSeen], Max(65536)]
    kernel_log: Annotated[list[Annotated[str, Max(4096)]], Max(4096)]
    id: int | None = None
    signal: int | None = None
    stdout_bytes: int | None = None  # what it wrote in all (more than kept: cut)
    stderr_bytes: int | None = None
    kernel_log_lines: int | None = None  # lines the kernel logged in all (more than kept: cut)
    kernel_warnings: Annotated[list[KernelWarningRecord] | None, Max(16), NOT_NULL] = None
    error: Text | None = None  # the command could not be started (exec failed): why
    isolation: Annotated[str, Max(64)] | None = None  # "cgroup" or "session": how its processes were bounded


# -- an error ----------------------------------------------------------------------------------------


EXHAUSTED = "resource_exhausted"  # an error with a code: the guest ran out of open files or memory
Resource = Literal["open_files", "memory"]
Stage = Literal["open", "btf", "probe", "map", "program", "object", "agent"]


@dataclass
class ErrorReply(Message):
    """The agent could not do what was asked (its own failure, not a verdict). A check that ran out
    of the guest's open files or memory says so as a code with parameters (resources.py), which
    the host words."""

    type: str
    error: Text | None = None
    code: Literal["resource_exhausted", "privilege_unavailable"] | None = None
    privilege: Literal["root", "caps", "unprivileged"] | None = None  # privilege_unavailable: the mode
    resource: Resource | None = None
    errno: int | None = None
    stage: Stage | None = None
    name: str | None = None
    limit: int | None = None
    needs: int | None = None


REPLIES: dict[str, type[Message]] = {
    "check_result": CheckResult,
    "probe_result": ProbeResult,
    "run_result": RunReply,
    "hello": Hello,
    "error": ErrorReply,
}
_NESTED: dict[str, dict[str, type]] = {"CheckResult": {"programs": ProgramRecord}}


def problem(reply: Any, kind: str) -> str | None:
    """What is wrong with reply as a message of this kind (guestmsg.problem's wording), or None."""
    try:
        REPLIES[kind].check(reply)
    except WireError as e:
        return str(e)
    except RecursionError:
        return "nested too deeply"
    return None


def facts_of(record: ProgramRecord | CheckResult) -> list[Fact]:
    """A record's facts (none when it has none)."""
    return list(record.facts or [])
