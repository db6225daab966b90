"""--set-global NAME=VALUE: check objects with global variables set as their loader sets them.

A loader (a libbpf skeleton, cilium/ebpf) often sets `const volatile` configuration in .rodata
before load, and the verifier then drops the branches that configuration disables: the same
object is accepted or rejected depending on those values. Like veristat's --set-global-vars,
compat writes the given values into the variables' initial values before every load, in every
object that defines the variable (read from its symbol table), and each program of those objects
says so in its libbpf_log.
"""

from __future__ import annotations

from dataclasses import dataclass

from compat.errors import UserError

BOOLEANS = {"true": 1, "false": 0}


@dataclass(frozen=True)
class Assignment:
    """One --set-global."""

    name: str
    value: int

    def to_json(self) -> str:
        return f"{self.name}={self.value}"


def parse(text: str) -> Assignment:
    """NAME=VALUE (an integer, decimal or 0x hex, possibly negative, or true/false)."""
    name, sep, raw = (part.strip() for part in text.partition("="))
    if not sep or not name or not raw:
        raise UserError(f"--set-global {text!r}: give NAME=VALUE, e.g. 'cfg_debug=1'")
    if raw.lower() in BOOLEANS:
        return Assignment(name, BOOLEANS[raw.lower()])
    try:
        return Assignment(name, int(raw, 0))
    except ValueError:
        raise UserError(f"--set-global {text!r}: {raw!r} is not an integer (decimal, 0x…, true or false)") from None


def encode(value: int, size: int) -> bytes | None:
    """The variable's bytes (little-endian, two's complement), None if value does not fit."""
    bits = 8 * size
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        return None
    return (value % (1 << bits)).to_bytes(size, "little")


def resolve(assignments: list[Assignment], variables: dict[str, tuple[str, int, int]], obj: str) -> list[dict]:
    """The request's globals for one object (objelf.ElfInfo.variables): the writes into the
    initial value of each variable the object defines; a value too big for it is a UserError."""
    out = []
    for a in assignments:
        if a.name not in variables:
            continue
        section, offset, size = variables[a.name]
        data = encode(a.value, size)
        if data is None:
            raise UserError(f"--set-global {a.to_json()}: {obj}: '{a.name}' has {size} byte(s), too few for {a.value}")
        out.append({"name": a.name, "section": section, "offset": offset, "bytes": data.hex(), "value": a.value})
    return out


def check_defined(assignments: list[Assignment], variables: list[dict[str, tuple[str, int, int]]]) -> None:
    """A UserError when no object defines a variable the user sets (a typo would be silent)."""
    for a in assignments:
        if not any(a.name in v for v in variables):
            raise UserError(f"--set-global {a.to_json()}: no object defines a global variable '{a.name}'")
