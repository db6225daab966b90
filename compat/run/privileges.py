"""The guest's reply to a check under several privileges (--privilege), read on the host.

The check request names the privileges; the agent checks the object under each in one guest and
answers with the first one's check_result, whose ``privilege`` names it (absent: root) and whose
``privileges`` holds the other modes' replies by mode: a check_result, or an error reply when the
kernel would not let the check run under that mode (kernel.unprivileged_bpf_disabled locked at 1)
or the check ran out of the guest's resources. Every part is validated as the first one is: the
guest is untrusted.
"""

from __future__ import annotations

from typing import Any

from compat.guest import guestmsg
from compat.guest.guestmsg import MalformedReply
from compat.results.privilege import PRIVILEGES, ROOT


def privilege_parts(reply: dict[str, Any], who: str | None = None, console_tail: str = "") -> list[dict[str, Any]]:
    """The check_results of a (validated) check_result: itself, then the other privileges'. With
    who (the kernel), the other privileges' replies are validated first (MalformedReply when one
    is neither a well-formed check_result nor a well-formed error reply of a known mode)."""
    parts = [reply]
    others = reply.get("privileges")
    if others is None:
        return parts
    if who is not None and not isinstance(others, dict):
        raise MalformedReply(f"{who}: malformed reply (check_result): privileges: expected an object", console_tail)
    for mode, part in others.items() if isinstance(others, dict) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if who is not None:
            if mode not in PRIVILEGES or kind not in ("check_result", "error"):
                raise MalformedReply(f"{who}: malformed reply (check_result): privileges.{str(mode)[:20]}",
                                     console_tail)  # fmt: skip
            guestmsg.validate(part, kind, who, console_tail)
        if kind == "check_result":
            parts.append(part)
    return parts


def privilege_reply(reply: dict[str, Any] | None, mode: str) -> dict[str, Any] | None:
    """The reply of the check under mode: the check_result, an error reply, or None (no reply)."""
    if not reply:
        return None
    if (reply.get("privilege") or ROOT) == mode:
        return reply
    others = reply.get("privileges")
    part = others.get(mode) if isinstance(others, dict) else None
    return part if isinstance(part, dict) else None
