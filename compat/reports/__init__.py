"""Renderers of a RunResult: one module per format, all pure functions of the result."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError
from ..results import RunResult
from . import json_report, table

RENDERERS: dict[str, Callable[[RunResult], str]] = {
    "table": table.render,
    "json": json_report.render,
}


def render(fmt: str, result: RunResult) -> str:
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise UserError(f"unknown format '{fmt}'", f"use one of {', '.join(RENDERERS)}") from None
    return renderer(result)
