"""SARIF 2.1.0 (GitHub code scanning and other static-analysis viewers).

One result per regression (and per rejection on a required kernel that fails the gate without a
baseline cell), located at the failing source line (physicalLocation.region.startLine), or at
the object file when the object carries no line information. Rule ids are
"regression/<failure class>" and "required-rejection/<failure class>"; a selftest program whose
annotations are not met is a result of rule "expectation/not-met" at the object file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote

from compat.results.compare import Comparison
from compat.results.gate import facts
from compat.results.model import REASONS, RunResult

from . import common, escape
from .escape import json_text as j

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(path: str) -> str:
    """A URI reference of a path: percent-encoded from its bytes (a control character, a space or an
    undecodable byte of a file name must not make the SARIF file invalid)."""
    shown = Path(common.display_path(path)).as_posix()
    try:
        raw = os.fsencode(shown)
    except UnicodeEncodeError:  # a surrogate that no byte of a file name decodes to
        raw = shown.encode("utf-8", "surrogatepass")
    return ("file://" if shown.startswith("/") else "") + quote(raw, safe="/")


def render(result: RunResult, comparison: Comparison) -> str:
    f = facts(result, comparison)
    objects = {o.object: o for o in result.objects}
    rules: list[dict] = []
    rule_index: dict[str, int] = {}
    results = []
    for p in common.problems(result, comparison, f):
        if not p.fails_gate:
            continue
        r = p.result
        kind = "regression" if p.regression else "required-rejection"
        rule_id = f"{kind}/{escape.visible(r.reason or 'rejected')}"
        if rule_id not in rule_index:
            rule_index[rule_id] = len(rules)
            what = REASONS.get(r.reason or "", "rejection")
            short = (f"Accepted in the baseline, rejected now: {what}" if p.regression
                     else f"Rejected on a required kernel: {what}")  # fmt: skip
            rules.append({"id": rule_id, "name": rule_id.replace("/", "_"), "shortDescription": {"text": short},
                          "defaultConfiguration": {"level": "error"}})  # fmt: skip
        kname = j(common.kernel_name(p.kernel, r.kernel))
        text = f"{j(r.object)}:{j(r.program)} is rejected on {kname}"
        base = j(p.baseline_object)
        text += f"; the baseline ({base}) was accepted there" if p.regression else " (a required kernel)"
        text += f". {j(common.reason_words(r.reason))}: {j(r.message)}"
        loc = common.location(r)
        if loc is not None:
            region: dict = {"startLine": loc.line}
            if loc.column:
                region["startColumn"] = loc.column
            if loc.text:
                region["snippet"] = {"text": j(loc.text)}
            physical = {"artifactLocation": {"uri": _uri(loc.file)}, "region": region}
        else:
            obj = objects.get(r.object)
            physical = {"artifactLocation": {"uri": _uri(obj.path if obj else r.object)}}
        # surrogatepass: a name holding an undecodable byte of a file name still has a fingerprint.
        cell = f"{rule_id}\0{r.object}\0{r.program}\0{r.kernel}".encode("utf-8", "surrogatepass")
        fingerprint = hashlib.sha256(cell).hexdigest()[:32]
        results.append({
            "ruleId": rule_id,
            "ruleIndex": rule_index[rule_id],
            "level": "error",
            "message": {"text": text},
            "locations": [{"physicalLocation": physical}],
            "partialFingerprints": {"compatCell/v1": fingerprint},
            "properties": {
                "object": j(r.object), "program": j(r.program), "kernel": j(r.kernel),
                "kernel_version": j(common.kernel_version(p.kernel, r.kernel)),
                "reason": j(r.reason) if r.reason else None,
                "baseline_object": j(p.baseline_object) if p.baseline_object else None,
            },
        })  # fmt: skip
    for r in f.unmet:
        rule_id = "expectation/not-met"
        if rule_id not in rule_index:
            rule_index[rule_id] = len(rules)
            rules.append({"id": rule_id, "name": "expectation_not_met", "defaultConfiguration": {"level": "error"},
                          "shortDescription": {"text": "A selftest program's annotations are not met"}})  # fmt: skip
        obj = objects.get(r.object)
        why = (r.expectation or {}).get("why")
        cell = f"{rule_id}\0{r.object}\0{r.program}\0{r.kernel}".encode("utf-8", "surrogatepass")
        results.append({
            "ruleId": rule_id,
            "ruleIndex": rule_index[rule_id],
            "level": "error",
            "message": {"text": f"{j(r.object)}:{j(r.program)} on {j(r.kernel)}: expectation not met: {j(str(why))}"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(obj.path if obj else r.object)}}}],
            "partialFingerprints": {"compatCell/v1": hashlib.sha256(cell).hexdigest()[:32]},
            "properties": {"object": j(r.object), "program": j(r.program), "kernel": j(r.kernel)},
        })  # fmt: skip
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "compat", "version": result.compat_version, "rules": rules}},
                "results": results,
                "properties": {
                    "kernels": [j(k) for k in comparison.kernel_order],
                    "baseline": j(comparison.baseline.label) if comparison.baseline else None,
                },
            }
        ],
    }
    return escape.json_document(json.dumps(doc, indent=1, ensure_ascii=False)) + "\n"
