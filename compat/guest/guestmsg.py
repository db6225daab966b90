"""Host-side validation of the guest's replies: the guest is untrusted.

A guest runs users' BPF objects in a kernel they may crash or (in theory) subvert, so nothing
it says is used before it is checked here: every field the host reads has the right type
(strings are strings without lone surrogates and bounded in length, integers are integers in
a 64-bit range and never booleans, numbers are finite, lists hold the right things and are
bounded in length), and what decides a verdict is present. Unknown extra fields are allowed
(a newer agent may add some) but are never read. A reply that fails any check raises
MalformedReply, a GuestError: the host treats it like a guest that died (reboot, retry once,
then an ``error`` cell), never as a verdict.

Nothing the guest sends is ever used as a file name or path on the host.
"""

from __future__ import annotations

import errno as errnos
import math
import re
from collections.abc import Callable
from typing import Any

from .errors import GuestError

NAME_MAX = 4096  # program, section, map, type, kfunc names; short words
TEXT_MAX = 1 << 20  # messages, reasons, libbpf's lines
LOG_MAX = 32 << 20  # verifier logs (a frame's JSON is bounded at 32 MiB anyway)
ITEMS_MAX = 1 << 16  # programs, maps, externs, helpers, ... in one reply
KFUNCS_MAX = 1 << 18  # kfuncs a kernel's BTF declares
INT_LIMIT = 1 << 63
TIMEOUT = "timeout"  # the agent stopped the verifier at the program time limit: no verdict
VERDICTS = ("accepted", "rejected", TIMEOUT)


class MalformedReply(GuestError):
    """A guest reply that does not have the shape the host needs."""


Check = Callable[[Any, str], None]


class _Bad(Exception):
    def __init__(self, where: str, problem: str):
        super().__init__(f"{where or 'reply'}: {problem}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def string(limit: int = NAME_MAX, optional: bool = False, choices: tuple[str, ...] = ()) -> Check:
    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str):
            raise _Bad(where, f"expected a string, got {_kind(value)}")
        if len(value) > limit:
            raise _Bad(where, f"string of {len(value)} characters (at most {limit})")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad(where, "string is not valid Unicode (lone surrogate)") from None
        if choices and value not in choices:
            raise _Bad(where, f"{value[:40]!r} is not one of {', '.join(choices)}")

    return check


def integer(optional: bool = False) -> Check:
    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(where, f"expected an integer, got {_kind(value)}")
        if not -INT_LIMIT < value < INT_LIMIT:
            raise _Bad(where, "integer out of range")

    return check


def number(optional: bool = False) -> Check:
    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(where, f"expected a number, got {_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _Bad(where, "number is not finite")
        if isinstance(value, int) and not -INT_LIMIT < value < INT_LIMIT:
            raise _Bad(where, "integer out of range")

    return check


def boolean(optional: bool = False) -> Check:
    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, bool):
            raise _Bad(where, f"expected true or false, got {_kind(value)}")

    return check


def listof(item: Check, limit: int = ITEMS_MAX, optional: bool = False) -> Check:
    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, list):
            raise _Bad(where, f"expected a list, got {_kind(value)}")
        if len(value) > limit:
            raise _Bad(where, f"list of {len(value)} items (at most {limit})")
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")

    return check


def mapping(value_check: Check, limit: int = ITEMS_MAX, optional: bool = False, key: Check | None = None) -> Check:
    """A JSON object used as a map: bounded string keys, every value checked."""
    key_check = key or string()

    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, dict):
            raise _Bad(where, f"expected an object, got {_kind(value)}")
        if len(value) > limit:
            raise _Bad(where, f"object of {len(value)} entries (at most {limit})")
        for k, v in value.items():
            key_check(k, f"{where} key")
            value_check(v, f"{where}.{k[:40]}")

    return check


def record(fields: dict[str, Check], required: tuple[str, ...] = (), optional: bool = False) -> Check:
    """A JSON object with known fields (each checked when present; extra fields ignored)."""

    def check(value: Any, where: str) -> None:
        if value is None and optional:
            return
        if not isinstance(value, dict):
            raise _Bad(where, f"expected an object, got {_kind(value)}")
        for name in required:
            if name not in value:
                raise _Bad(f"{where}.{name}" if where else name, "missing")
        for name, field_check in fields.items():
            if name in value:
                field_check(value[name], f"{where}.{name}" if where else name)

    return check


def _digits(value: Any, where: str) -> None:
    string(20)(value, where)
    if not (value.isascii() and value.isdigit()):
        raise _Bad(where, "expected a decimal helper id")


_ATTACH = record(
    {"status": string(), "errno": integer(optional=True), "reason": string(TEXT_MAX, optional=True)},
    required=("status",),
)
_STATS = record(
    {
        "insns_processed": integer(optional=True),
        "states_total": integer(optional=True),
        "states_peak": integer(optional=True),
        "verification_time_us": integer(optional=True),
        "stack_depth": listof(integer(), 1024, optional=True),
        "insn_cnt": integer(optional=True),
    }
)
_PROGRAM = record(
    {
        "program": string(),
        "section": string(optional=True),
        "prog_type": string(optional=True),
        "prog_type_from": string(choices=("section", "context", "option"), optional=True),
        "attach_type": string(optional=True),
        "attach_target": string(optional=True),
        "verdict": string(choices=VERDICTS),
        "stage": string(optional=True),
        "errno": integer(optional=True),
        "message": string(TEXT_MAX, optional=True),
        "libbpf_log": string(LOG_MAX, optional=True),
        "log": string(LOG_MAX, optional=True),
        "log_level": integer(optional=True),
        "stats": _STATS,
        "helpers": listof(integer(), optional=True),
        "kfuncs": listof(string(), optional=True),
        "load_ms": number(optional=True),
        "attach": _ATTACH,
    },
    required=("program", "verdict"),
)
_MAP = record(
    {
        "name": string(),
        "type": string(optional=True),
        "ok": boolean(optional=True),
        "errno": integer(optional=True),
        "note": string(optional=True),
        "struct_ops": record({"type": string(), "link": boolean()}, required=("type", "link"), optional=True),
    },
    required=("name",),
)
_CHECK_RESULT = record(
    {
        "type": string(choices=("check_result",)),
        "id": integer(optional=True),
        "object": string(optional=True),
        "duration_ms": number(optional=True),
        "libbpf": string(optional=True),
        "open": record(
            {
                "ok": boolean(),
                "errno": integer(optional=True),
                "message": string(TEXT_MAX, optional=True),
                "libbpf_log": string(LOG_MAX, optional=True),
            },
            required=("ok",),
        ),
        "externs": listof(record({"name": string(), "kind": string(), "weak": boolean()}, required=("name", "kind"))),
        "maps": listof(_MAP),
        "programs": listof(_PROGRAM),
    },
    required=("type", "open", "programs"),
)
_BOOL_MAP = mapping(boolean(), 4096)
_PROBE_RESULT = record(
    {
        "type": string(choices=("probe_result",)),
        "id": integer(optional=True),
        "duration_ms": number(optional=True),
        "prog_types": _BOOL_MAP,
        "map_types": _BOOL_MAP,
        "helpers": mapping(listof(integer(), 4096), 4096),
        "helper_names": mapping(string(), 4096, key=_digits),
        "kfuncs_btf": listof(string(), KFUNCS_MAX),
        "kfuncs_source": string(optional=True),
        "kfunc_allowed": mapping(_BOOL_MAP, KFUNCS_MAX),
        "timings": mapping(number(optional=True), 64, optional=True),
        "features": mapping(boolean(), 64, optional=True),
    },
    required=("type", "prog_types", "map_types", "helpers", "helper_names", "kfuncs_btf", "kfunc_allowed"),
)
_HELLO = record(
    {
        "type": string(choices=("hello",)),
        "schema": string(optional=True),
        "agent": string(optional=True),
        "release": string(),
        "kernel_build": string(optional=True),
        "machine": string(optional=True),
        "btf": boolean(),
        "libbpf": string(optional=True),
        "libbpf_package": string(optional=True),
        "python": string(optional=True),
        "uptime": number(optional=True),
        "mem_total_kb": integer(optional=True),
    },
    required=("type", "release", "btf"),
)
# An agent error may carry a code with parameters instead of prose for the host to parse: a
# check that ran out of the guest's open files or memory (guest-agent/compat_agent/checker/resources.py).
EXHAUSTED = "resource_exhausted"
OPEN_FILES, MEMORY = "open_files", "memory"
_STAGES = ("open", "btf", "probe", "map", "program", "object", "agent")
_ERROR = record(
    {
        "type": string(),
        "error": string(TEXT_MAX, optional=True),
        "code": string(choices=(EXHAUSTED,), optional=True),
        "resource": string(choices=(OPEN_FILES, MEMORY), optional=True),
        "errno": integer(optional=True),
        "stage": string(choices=_STAGES, optional=True),
        "name": string(optional=True),
        "limit": integer(optional=True),
        "needs": integer(optional=True),
    },
    required=("type",),
)

SHAPES: dict[str, Check] = {
    "check_result": _CHECK_RESULT,
    "probe_result": _PROBE_RESULT,
    "hello": _HELLO,
    "error": _ERROR,
}


def problem(reply: Any, kind: str) -> str | None:
    """What is wrong with reply as a message of this kind, or None when it is well formed."""
    try:
        SHAPES[kind](reply, "")
    except _Bad as e:
        return str(e)
    except RecursionError:  # only a bug could get here: shapes are finite, replies are checked top-down
        return "nested too deeply"
    return None


def validate(reply: Any, kind: str, who: str = "guest", console_tail: str = "") -> dict:
    """reply, when it is a well-formed message of this kind; else MalformedReply (a GuestError)."""
    found = problem(reply, kind)
    if found is not None:
        raise MalformedReply(f"{who}: malformed reply ({kind}): {found[:300]}", console_tail)
    return reply


def describe_error(reply: Any) -> str:
    """A bounded, printable account of a reply that is not the one asked for (an agent error)."""
    if problem(reply, "error") is not None:
        kind = reply.get("type") if isinstance(reply, dict) else None
        return f"unexpected reply {str(kind)[:40]!r}"
    if reply.get("code") == EXHAUSTED and reply.get("resource") in (OPEN_FILES, MEMORY):
        return exhaustion(reply)
    text = reply.get("error") or reply["type"]
    return text.replace("\n", " ")[:300]


_STAGE_WORDS = {
    "open": "while libbpf opened the object",
    "btf": "loading the object's BTF",
    "probe": "while libbpf probed the kernel's features",
    "map": "creating map",
    "program": "loading program",
    "object": "loading the object",
    "agent": "in the agent",
}
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n < 10 << 30 else f"{n / (1 << 30):.0f} GiB"


def exhaustion(reply: dict) -> str:
    """A validated resource_exhausted error reply in words: which of the guest's limits ran out,
    where, and what raises it. Worded here from the reply's code and parameters (the guest's
    names are bounded and made printable: they are untrusted)."""
    code = reply.get("errno")
    errname = errnos.errorcode.get(code, str(code)) if isinstance(code, int) else "?"
    where = _STAGE_WORDS.get(reply.get("stage") or "", "loading the object")
    name = reply.get("name")
    if name and reply.get("stage") in ("map", "program"):
        where += f" '{_UNPRINTABLE.sub('?', name[:64])}'"
    limit, needs = reply.get("limit"), reply.get("needs")
    if reply["resource"] == OPEN_FILES:
        if code == errnos.ENFILE:
            what = "the guest kernel's file table is full"
        else:
            what = "the agent's open-file limit" + (f" ({limit})" if isinstance(limit, int) and limit > 0 else "")
        return (
            f"the guest ran out of open files ({errname} {where}: {what}): a limit of the guest, "
            "not a verdict on the object"
        )
    has = f"the guest has {_mib(limit * 1024)}" if isinstance(limit, int) and limit > 0 else "the guest's memory"
    need = f"; the map needs at least {_mib(needs)}" if isinstance(needs, int) and needs > 0 else ""
    return (
        f"the guest ran out of memory ({errname} {where}: {has}{need}): a limit of the guest, not a verdict on "
        "the object; give guests more with --memory MIB"
    )
