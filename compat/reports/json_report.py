"""The result file (schema compat/v1), with the comparison section ("comparison")."""

from __future__ import annotations

import json

from ..compare import Comparison
from ..results import RunResult


def document(result: RunResult, comparison: Comparison | None) -> dict:
    doc = result.to_json()
    if comparison is not None:
        doc["comparison"] = comparison.to_json()
    return doc


def render(result: RunResult, comparison: Comparison | None = None) -> str:
    return json.dumps(document(result, comparison), indent=1) + "\n"
