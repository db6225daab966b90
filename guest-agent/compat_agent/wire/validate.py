"""Checking untrusted JSON against typed definitions: the bounds live next to the types.

A message is a dataclass; each field's type annotation says what JSON it takes, and
``typing.Annotated`` metadata adds its bounds (``Max``), the decimal keys of a map (``DIGITS``)
or that an optional field, when present, may not be null (``NOT_NULL``). ``check(cls, value)``
walks the definition and the value together and raises WireError with a path such as
``programs[3].stats.insns_processed: expected an integer, got str``; ``build(cls, value)`` then
makes the dataclass. The rules are those the host has always applied to the guest's replies:
strings are bounded and valid Unicode, integers are in a 64-bit range and never booleans,
numbers are finite, lists and maps are bounded, choices are closed (``Literal``), a field
without a default is required, and unknown extra fields are ignored (a newer agent may add
some).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

NAME_MAX = 4096  # program, section, map, type, kfunc names; short words
TEXT_MAX = 1 << 20  # messages, reasons, libbpf's lines
LOG_MAX = 32 << 20  # verifier logs (a frame's JSON is bounded at 32 MiB anyway)
ITEMS_MAX = 1 << 16  # programs, maps, externs, helpers, ... in one reply
KFUNCS_MAX = 1 << 18  # kfuncs a kernel's BTF declares
INT_LIMIT = 1 << 63


class WireError(ValueError):
    """A message that does not match its definition; str() is ``path: problem``."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where or 'reply'}: {problem}")
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class Max:
    """The most characters of a string, or items of a list or map."""

    limit: int


@dataclass(frozen=True)
class _Marker:
    name: str


NOT_NULL = _Marker("not null")  # an optional field that may be absent but, when present, not null
DIGITS = _Marker("digits")  # a map whose keys are decimal numbers (helper ids)


def kind(value: Any) -> str:
    """The JSON-ish name of a value's type, for error messages."""
    return "null" if value is None else type(value).__name__


def _string(value: Any, where: str, limit: int) -> None:
    if not isinstance(value, str):
        raise WireError(where, f"expected a string, got {kind(value)}")
    if len(value) > limit:
        raise WireError(where, f"string of {len(value)} characters (at most {limit})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError(where, "string is not valid Unicode (lone surrogate)") from None


def _integer(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(where, f"expected an integer, got {kind(value)}")
    if not -INT_LIMIT < value < INT_LIMIT:
        raise WireError(where, "integer out of range")


def _number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(where, f"expected a number, got {kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise WireError(where, "number is not finite")
    if isinstance(value, int) and not -INT_LIMIT < value < INT_LIMIT:
        raise WireError(where, "integer out of range")


def _split(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """A type without its Annotated wrapper, and the metadata."""
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        return base, tuple(meta)
    return tp, ()


def _limit(meta: tuple[Any, ...], default: int) -> int:
    return next((m.limit for m in meta if isinstance(m, Max)), default)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved annotations (resolved once: get_type_hints is dear)."""
    module = sys.modules.get(cls.__module__)
    return get_type_hints(cls, globalns=vars(module) if module else None, include_extras=True)


def check_value(tp: Any, value: Any, where: str) -> None:
    """Check value against type tp (an annotation); WireError on the first problem."""
    base, meta = _split(tp)
    if _is_union(base):
        options = [a for a in get_args(base) if a is not type(None)]
        nullable = len(options) < len(get_args(base)) and NOT_NULL not in meta
        if value is None and nullable:
            return
        if set(options) == {int, float}:  # a number
            _number(value, where)
            return
        if len(options) != 1:
            raise TypeError(f"unsupported union {tp!r}")
        check_value(Annotated[(options[0], *meta)] if meta else options[0], value, where)
        return
    origin = get_origin(base)
    if base is str:
        _string(value, where, _limit(meta, NAME_MAX))
    elif base is bool:
        if not isinstance(value, bool):
            raise WireError(where, f"expected true or false, got {kind(value)}")
    elif base is int:
        _integer(value, where)
    elif base is float:
        _number(value, where)
    elif origin is Literal:
        choices = get_args(base)
        _string(value, where, NAME_MAX)
        if value not in choices:
            raise WireError(where, f"{value[:40]!r} is not one of {', '.join(choices)}")
    elif origin is list:
        (item,) = get_args(base)
        if not isinstance(value, list):
            raise WireError(where, f"expected a list, got {kind(value)}")
        limit = _limit(meta, ITEMS_MAX)
        if len(value) > limit:
            raise WireError(where, f"list of {len(value)} items (at most {limit})")
        for i, v in enumerate(value):
            check_value(item, v, f"{where}[{i}]")
    elif origin is dict:
        _, item = get_args(base)
        if not isinstance(value, dict):
            raise WireError(where, f"expected an object, got {kind(value)}")
        limit = _limit(meta, ITEMS_MAX)
        if len(value) > limit:
            raise WireError(where, f"object of {len(value)} entries (at most {limit})")
        for k, v in value.items():
            if DIGITS in meta:
                _string(k, f"{where} key", 20)
                if not (k.isascii() and k.isdigit()):
                    raise WireError(f"{where} key", "expected a decimal helper id")
            else:
                _string(k, f"{where} key", NAME_MAX)
            check_value(item, v, f"{where}.{k[:40]}")
    elif base is Any or base is object:
        return  # JSON the host made itself (the ELF analysis it sends): not checked here
    elif dataclasses.is_dataclass(base):
        check_record(typing.cast(type, base), value, where)
    else:
        raise TypeError(f"unsupported type {tp!r}")


def check_record(cls: type, value: Any, where: str = "") -> None:
    """Check a JSON object against a dataclass: required fields present, known ones well formed."""
    if not isinstance(value, dict):
        raise WireError(where, f"expected an object, got {kind(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    for name, f in fields.items():
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in value:
            raise WireError(f"{where}.{name}" if where else name, "missing")
    for name in fields:
        if name in value:
            check_value(hints[name], value[name], f"{where}.{name}" if where else name)


def _build_value(tp: Any, value: Any) -> Any:
    base, _ = _split(tp)
    if value is None:
        return None
    if _is_union(base):
        options = [a for a in get_args(base) if a is not type(None)]
        return value if len(options) != 1 else _build_value(options[0], value)
    origin = get_origin(base)
    if origin is list:
        (item,) = get_args(base)
        return [_build_value(item, v) for v in value]
    if origin is dict:
        _, item = get_args(base)
        return {k: _build_value(item, v) for k, v in value.items()}
    if base is float and isinstance(value, int):
        return value  # JSON has one number type: keep what was sent
    if dataclasses.is_dataclass(base):
        return build(typing.cast(type, base), value)
    return value


T = typing.TypeVar("T")


def build(cls: type[T], value: dict[str, Any]) -> T:
    """The dataclass for a JSON object that check_record accepted (unknown fields dropped)."""
    hints = _hints(typing.cast(type, cls))
    kwargs = {
        f.name: _build_value(hints[f.name], value[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in value
    }
    return cls(**kwargs)


def to_json(obj: Any) -> Any:
    """The JSON value of a dataclass (its fields by name; absent NOT_NULL fields left out)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        hints = _hints(type(obj))
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None and NOT_NULL in _split(hints[f.name])[1]:
                continue
            out[f.name] = to_json(value)
        return out
    if isinstance(obj, list):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj
