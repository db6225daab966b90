"""Host-side validation of the guest's replies: the guest is untrusted.

A guest runs users' BPF objects in a kernel they may crash or (in theory) subvert, so nothing
it says is used before it is checked against the wire contract (compat_agent.wire.messages:
every message a typed definition with its bounds, the same one the agent builds its replies
from): every field the host reads has the right type (strings are strings without lone
surrogates and bounded in length, integers are integers in a 64-bit range and never booleans,
numbers are finite, lists hold the right things and are bounded in length, facts have known
codes and parameters), and what decides a verdict is present. Unknown extra fields are allowed
(a newer agent may add some) but are never read. A reply that fails any check, or a hello in
another protocol version, raises MalformedReply, a GuestError: the host treats it like a guest
that died (reboot, retry once, then an ``error`` cell), never as a verdict.

Nothing the guest sends is ever used as a file name or path on the host.
"""

from __future__ import annotations

import errno as errnos
import re
from typing import Any

from compat_agent.wire import messages
from compat_agent.wire.messages import EXHAUSTED, TIMEOUT, VERDICTS
from compat_agent.wire.validate import ITEMS_MAX, NAME_MAX, WireError

from .errors import GuestError

__all__ = ["EXHAUSTED", "ITEMS_MAX", "NAME_MAX", "TIMEOUT", "VERDICTS", "MalformedReply", "problem", "validate"]
OPEN_FILES, MEMORY = "open_files", "memory"  # the resources of an EXHAUSTED error (messages.Resource)
KINDS = tuple(messages.REPLIES)  # the replies the host validates: check_result, probe_result, hello, error


class MalformedReply(GuestError):
    """A guest reply that does not have the shape the host needs."""


def problem(reply: Any, kind: str) -> str | None:
    """What is wrong with reply as a message of this kind (its definition in the wire contract),
    or None when it is well formed."""
    return messages.problem(reply, kind)


def validate(reply: Any, kind: str, who: str = "guest", console_tail: str = "") -> dict[str, Any]:
    """reply, when it is a well-formed message of this kind (a hello: in this host's protocol
    version too); else MalformedReply (a GuestError)."""
    found = problem(reply, kind)
    if found is None and kind == "hello":
        try:
            messages.check_protocol(messages.Hello.from_json(reply))
        except WireError as e:
            raise MalformedReply(f"{who}: {e.problem}", console_tail) from None
    if found is not None:
        raise MalformedReply(f"{who}: malformed reply ({kind}): {found[:300]}", console_tail)
    checked: dict[str, Any] = reply  # a message is a JSON object (problem() said so)
    return checked


def describe_error(reply: Any) -> str:
    """A bounded, printable account of a reply that is not the one asked for (an agent error)."""
    if problem(reply, "error") is not None:
        kind = reply.get("type") if isinstance(reply, dict) else None
        return f"unexpected reply {str(kind)[:40]!r}"
    if reply.get("code") == EXHAUSTED and reply.get("resource") in (OPEN_FILES, MEMORY):
        return exhaustion(reply)
    text: str = reply.get("error") or reply["type"]
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


def exhaustion(reply: dict[str, Any]) -> str:
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
