"""The result file (schema compat/v1)."""

from __future__ import annotations

from ..results import RunResult


def render(result: RunResult) -> str:
    return result.dumps() + "\n"
