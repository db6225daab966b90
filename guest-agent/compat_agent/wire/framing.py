"""The wire protocol between host and guest, shared by both sides.

A frame is a 12-byte header (magic "CPT1", JSON length, payload length, big-endian) followed
by a UTF-8 JSON object and an optional binary payload (a BPF object travels as payload, not
base64). Every message has a "type"; lengths are bounded so a broken or hostile peer cannot
make the other side allocate without limit. This module must run on the host's Python
(3.11+) and the guest's (Debian's python3 of the image suite).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

SCHEMA = "compat/v1"
# 1: the replies before facts (no "protocol" in the hello); 2: facts. Here, beside the framing,
# so that the agent can say it in its hello without importing the message definitions at start.
PROTOCOL_VERSION = 2
PORT_NAME = "org.compat.0"  # the virtio-serial port the host creates and the agent opens
MAGIC = b"CPT1"
HEADER = struct.Struct(">4sII")
MAX_JSON = 32 << 20
MAX_PAYLOAD = 256 << 20


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


class ChannelClosed(ProtocolError):
    """The peer closed the channel (or the guest died)."""


def encode(message: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame holding message (a JSON object with a "type") and an optional payload."""
    if not isinstance(message.get("type"), str):
        raise ValueError("a message needs a string 'type'")
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_JSON or len(payload) > MAX_PAYLOAD:
        raise ValueError("message too large for one frame")
    return HEADER.pack(MAGIC, len(body), len(payload)) + body + payload


def read_frame(
    read_exact: Callable[[int], bytes], max_json: int = MAX_JSON, max_payload: int = MAX_PAYLOAD
) -> tuple[dict[str, Any], bytes]:
    """Read one frame with read_exact(n) (which returns exactly n bytes or raises ChannelClosed).

    A side that expects smaller frames (the host: replies carry no payload) passes lower bounds.
    Every malformed frame raises ProtocolError, never anything else."""
    head = read_exact(HEADER.size)
    if len(head) != HEADER.size:
        raise ProtocolError("short frame header")
    magic, json_len, payload_len = HEADER.unpack(head)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {magic!r}")
    if json_len > max_json or payload_len > max_payload:
        raise ProtocolError(f"frame too large ({json_len} + {payload_len} bytes)")
    body = read_exact(json_len)
    payload = read_exact(payload_len) if payload_len else b""
    try:
        message = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"frame is not JSON: {str(e)[:200]}") from None
    except RecursionError:  # "[[[[…" nested deeper than the decoder's stack
        raise ProtocolError("frame JSON is nested too deeply") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("frame is not a JSON object with a 'type'")
    return message, payload


def fd_reader(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """Wrap a read(n) that may return short reads (0 bytes at end) into read_exact(n)."""

    def read_exact(n: int) -> bytes:
        chunks = []
        while n > 0:
            chunk = read(min(n, 1 << 20))
            if not chunk:
                raise ChannelClosed("channel closed")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    return read_exact
