"""Renderers of a RunResult and its Comparison: one module per format, all pure functions of both
(except that source paths are shown relative to the workspace: $GITHUB_WORKSPACE or the current
directory)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping

from compat.errors import UserError
from compat.results.compare import Comparison, compare
from compat.results.model import RunResult

Renderer = Callable[[RunResult, Comparison], str]

# format -> (module of this package, function): a format's module is imported when it is first
# rendered, so a command pays for the formats it writes, not for all nine (a re-check served from
# the result cache writes one).
_FORMATS: dict[str, tuple[str, str]] = {
    "table": ("table", "render"),
    "json": ("json_report", "render"),
    "markdown": ("markdown", "render"),
    "github": ("github", "render"),
    "junit": ("junit", "render"),
    "sarif": ("sarif", "render"),
    "csv": ("csv_report", "render"),
    "requirements": ("requirements", "render"),
    "requirements-json": ("requirements", "render_json"),
}


class _Renderers(Mapping[str, Renderer]):
    """The renderer of each format, by name, imported on first use."""

    def __getitem__(self, fmt: str) -> Renderer:
        module, function = _FORMATS[fmt]
        found: Renderer = getattr(importlib.import_module(f"{__name__}.{module}"), function)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(_FORMATS)

    def __len__(self) -> int:
        return len(_FORMATS)


RENDERERS: Mapping[str, Renderer] = _Renderers()

# The formats whose findings follow the gate's policy (--fail-on): their renderers take fail_on.
GATED = frozenset({"junit"})


def render(fmt: str, result: RunResult, comparison: Comparison | None = None, fail_on: str = "regression") -> str:
    """The report of result (and its comparison with a baseline) in the format fmt; fail_on is the
    gate's policy (--fail-on), which JUnit's failures follow."""
    if fmt not in _FORMATS:
        raise UserError(f"unknown format '{fmt}'", f"use one of {', '.join(_FORMATS)}")
    renderer: Callable[..., str] = RENDERERS[fmt]
    comparison = comparison if comparison is not None else compare(result)
    if fmt in GATED:
        return renderer(result, comparison, fail_on=fail_on)
    return renderer(result, comparison)
