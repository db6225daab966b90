"""Renderers of a RunResult and its Comparison: one module per format, all pure functions of both
(except that source paths are shown relative to the workspace: $GITHUB_WORKSPACE or the current
directory)."""

from __future__ import annotations

from collections.abc import Callable

from compat.errors import UserError
from compat.results.compare import Comparison, compare
from compat.results.model import RunResult

from . import csv_report, github, json_report, junit, markdown, requirements, sarif, table

RENDERERS: dict[str, Callable[[RunResult, Comparison], str]] = {
    "table": table.render,
    "json": json_report.render,
    "markdown": markdown.render,
    "github": github.render,
    "junit": junit.render,
    "sarif": sarif.render,
    "csv": csv_report.render,
    "requirements": requirements.render,
    "requirements-json": requirements.render_json,
}


# The formats whose findings follow the gate's policy (--fail-on): their renderers take fail_on.
GATED: dict[str, Callable[..., str]] = {"junit": junit.render}


def render(fmt: str, result: RunResult, comparison: Comparison | None = None, fail_on: str = "regression") -> str:
    """The report of result (and its comparison with a baseline) in the format fmt; fail_on is the
    gate's policy (--fail-on), which JUnit's failures follow."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise UserError(f"unknown format '{fmt}'", f"use one of {', '.join(RENDERERS)}") from None
    comparison = comparison if comparison is not None else compare(result)
    if fmt in GATED:
        return GATED[fmt](result, comparison, fail_on=fail_on)
    return renderer(result, comparison)
