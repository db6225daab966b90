"""compat: cross-kernel BPF program compatibility checker.

The Python API (compat/api.py): compat.check, compat.compare, compat.report, compat.gate.
They are loaded on first use: `import compat` stays cheap and boots nothing.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

API = ("check", "compare", "report", "gate")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> object:
    """compat.check and the rest of the API, imported from compat.api when first asked for
    (importlib, not an import statement: the API is the top layer, this package the base)."""
    if name in API:
        return getattr(importlib.import_module("compat.api"), name)
    raise AttributeError(f"module 'compat' has no attribute {name!r}")
