"""The result file (schema compat/v1), with the comparison section ("comparison")."""

from __future__ import annotations

import json

from compat.results.compare import Comparison
from compat.results.model import RunResult

from . import escape


def document(result: RunResult, comparison: Comparison | None) -> dict:
    doc = result.to_json()
    if comparison is not None:
        doc["comparison"] = comparison.to_json()
    return doc


def render(result: RunResult, comparison: Comparison | None = None) -> str:
    # The result file is the record: its strings stay exact (compat report re-renders from it).
    # ensure_ascii writes every control character, surrogate and non-ASCII character as a \u
    # escape, so no value can break a line or carry a terminal sequence.
    return escape.json_document(json.dumps(document(result, comparison), indent=1, ensure_ascii=True)) + "\n"
