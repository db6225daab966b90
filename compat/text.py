"""Untrusted text made visible: the medium-neutral first step of every escaping.

Here, at the base of the tree, so that every layer shows texts from objects, guests and kernels
the same way: the reports' writers (compat/reports/escape.py) build on it for their media, and
the object reader (compat/objects/objfile.py) uses it for its one-line errors.
"""

from __future__ import annotations

# Bidi embeddings, overrides and isolates, and the marks that can reorder what a reader sees
# ("Trojan Source"), plus the separators some viewers break lines at.
_FORMAT_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029]
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_of(code: int) -> str:
    ch = chr(code)
    if ch in _SHORT:
        return _SHORT[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE: dict[int, str] = {
    code: _escape_of(code)
    for code in [
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        *_FORMAT_CONTROLS,
        *range(0xD800, 0xE000),  # lone surrogates: str of a file name decoded with surrogateescape
        0xFFFE,
        0xFFFF,
    ]
}
_TABLES: dict[str, dict[int, str]] = {"": _TABLE}


def visible(text: object, keep: str = "") -> str:
    """text with every control, bidi and surrogate character shown as a visible escape
    (``\\x1b``, ``\\n``, ``\\u202e``); the characters in ``keep`` (e.g. "\\n") are left as they are.
    Idempotent: its output holds no character it would escape (backslashes are not doubled)."""
    table = _TABLES.get(keep)
    if table is None:
        table = {k: v for k, v in _TABLE.items() if chr(k) not in keep}
        _TABLES[keep] = table
    return str(text).translate(table)
