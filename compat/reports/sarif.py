"""SARIF 2.1.0 (GitHub code scanning and other static-analysis viewers).

One result per program, rule and source location: a program rejected for one reason on several
kernels at one line is one result listing those kernels (in its message and properties.kernels),
not one result per kernel that GitHub would collapse into one alert anyway (it fingerprints by the
line). The results are the cells that fail the gate: regressions, and rejections on a required
kernel without a baseline cell; located at the failing source line
(physicalLocation.region.startLine), or at the object file when the object carries no line
information. Rule ids are "regression/<failure class>" and "required-rejection/<failure class>";
a selftest program whose annotations are not met is a result of rule "expectation/not-met" at the
object file. Every rule has a shortDescription, a fullDescription and help (text and markdown).

partialFingerprints holds a hash of the rule, the object, the program and the location (not the
kernels: an alert stays the same alert when the kernels it fails on change), under compat's own
key and under primaryLocationLineHash, the key GitHub's upload computes from the line's text alone
when it is absent (which would merge two programs failing at one shared line).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from compat.results.classify import object_findings
from compat.results.compare import Comparison
from compat.results.gate import facts
from compat.results.model import REASONS, RunResult

from . import common, escape
from .escape import json_text as j

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "compatProgram/v2"

_KIND_TEXT = {
    "regression": (
        "Accepted in the baseline, rejected now: {what}",
        "A BPF program that the baseline (an earlier result file or build of the objects) had accepted "
        "on a kernel is now rejected there: {what}. Programs that load today stop loading on that kernel.",
    ),
    "required-rejection": (
        "Rejected on a required kernel: {what}",
        "A BPF program is rejected on a kernel the matrix marks required: true, and the baseline has "
        "no verdict for that cell (always so without a baseline): {what}.",
    ),
}
_HELP = (
    "Read the reason and the verifier log in compat's report (compat report RESULT.json --format "
    "markdown shows the log, and its diff against the baseline for a regression). A missing helper, "
    "kfunc, map or program type needs a newer kernel or a fallback (CO-RE feature probing: "
    "bpf_core_enum_value_exists, bpf_ksym_exists); a verifier rejection needs the code at this line "
    "changed; a required kernel can be made optional in the matrix (required: false)."
)
_EXPECTATION = (
    "A selftest program's annotations are not met",
    "A BPF selftest program's comment:test_expect_* annotations (its expected verdict and verifier "
    "messages, as tools/testing/selftests/bpf/test_loader.c reads them) are not met on a kernel.",
    "The result's expectation record says why (the verdict, or the first expected message not found "
    "in order). Either the kernel changed its verifier, or the annotation is stale.",
)


# Findings of whole objects (classify.object_findings): short and full descriptions, help.
_OBJECT_FINDINGS = {
    "object/does-not-load": (
        "The object as shipped does not load",
        "bpf_object__load with every program and map as the object declares them (its skeleton's load) fails "
        "on this kernel: a map it cannot create, or a program it refuses",
        "Every program may still verify on its own: a loader that switches the failing part off still works.",
    ),
    "object/pt-regs-arch": (
        "The object was built for another architecture's pt_regs",
        "Its BTF describes the struct pt_regs of another architecture than the kernel's (bpf_tracing.h's "
        "__TARGET_ARCH_x86 on an arm64 kernel, or the other way round): its register reads name other fields",
        "Without CO-RE it loads and reads other registers; with CO-RE libbpf poisons the reads. Build one "
        "object per architecture with its own __TARGET_ARCH_*.",
    ),
    "kernel/warning": (
        "The kernel warned while the object was checked",
        "The guest's kernel log got a WARN, BUG, verifier bug, REG INVARIANTS VIOLATION, lockdep or KASAN "
        "report while the object was checked",
        "The verdicts may still be 'accepted': the kernel's own consistency checks failed.",
    ),
}


def _rule(rule_id: str, short: str, full: str, help_text: str) -> dict:
    """A reportingDescriptor with every text GitHub shows: short and full description, help."""
    return {
        "id": rule_id, "name": rule_id.replace("/", "_").replace("-", "_"),
        "shortDescription": {"text": short}, "fullDescription": {"text": full},
        "help": {"text": help_text, "markdown": f"**{escape.markdown(short)}**\n\n{escape.markdown(help_text)}"},
        "defaultConfiguration": {"level": "error"},
    }  # fmt: skip


def _fingerprint(*parts: object) -> str:
    # surrogatepass: a name holding an undecodable byte of a file name still has a fingerprint.
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


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
    """The SARIF 2.1.0 log of the cells that fail the gate, one result per program, rule and location."""
    f = facts(result, comparison)
    objects = {o.object: o for o in result.objects}
    rules: list[dict] = []
    rule_index: dict[str, int] = {}
    # (rule, object, program, uri, line) -> the problems of that program at that place, kernel-axis order
    groups: dict[tuple, list] = {}
    for p in common.problems(result, comparison, f):
        if not p.fails_gate:
            continue
        r = p.result
        kind = "regression" if p.regression else "required-rejection"
        rule_id = f"{kind}/{escape.visible(r.reason or 'rejected')}"
        if rule_id not in rule_index:
            rule_index[rule_id] = len(rules)
            what = REASONS.get(r.reason or "", "rejection")
            short, full = (t.format(what=what) for t in _KIND_TEXT[kind])
            rules.append(_rule(rule_id, short, full, _HELP))
        loc = common.location(r)
        obj = objects.get(r.object)
        uri = _uri(loc.file) if loc is not None else _uri(obj.path if obj else r.object)
        key = (rule_id, r.object, r.program, uri, loc.line if loc is not None else None)
        groups.setdefault(key, []).append(p)
    results = []
    for (rule_id, obj_name, prog, uri, line), members in groups.items():
        first = members[0]
        r = first.result
        names = ", ".join(j(common.kernel_name(p.kernel, p.result.kernel)) for p in members)
        text = f"{j(obj_name)}:{j(prog)} is rejected on {names}"
        if first.regression:
            text += f"; the baseline ({j(first.baseline_object)}) was accepted there"
        else:
            text += " (required kernel(s))"
        text += f". {j(common.reason_words(r.reason))}: {j(r.message)}"
        loc = common.location(r)
        physical: dict = {"artifactLocation": {"uri": uri}}
        if loc is not None:
            region: dict = {"startLine": loc.line}
            if loc.column:
                region["startColumn"] = loc.column
            if loc.text:
                region["snippet"] = {"text": j(loc.text)}
            physical["region"] = region
        fingerprint = _fingerprint(rule_id, obj_name, prog, uri, line)
        results.append({
            "ruleId": rule_id,
            "ruleIndex": rule_index[rule_id],
            "level": "error",
            "message": {"text": text},
            "locations": [{"physicalLocation": physical}],
            "partialFingerprints": {FINGERPRINT_KEY: fingerprint, "primaryLocationLineHash": f"{fingerprint[:16]}:1"},
            "properties": {
                "object": j(obj_name), "program": j(prog),
                "kernels": [j(p.result.kernel) for p in members],
                "kernel_versions": [j(common.kernel_version(p.kernel, p.result.kernel)) for p in members],
                "messages": {j(p.result.kernel): j(p.result.message) for p in members},
                "reason": j(r.reason) if r.reason else None,
                "baseline_object": j(first.baseline_object) if first.baseline_object else None,
            },
        })  # fmt: skip
    unmet: dict[tuple[str, str], list] = {}
    for r in f.unmet:
        unmet.setdefault((r.object, r.program), []).append(r)
    for (obj_name, prog), cells in unmet.items():
        rule_id = "expectation/not-met"
        if rule_id not in rule_index:
            rule_index[rule_id] = len(rules)
            rules.append(_rule(rule_id, *_EXPECTATION))
        obj = objects.get(obj_name)
        uri = _uri(obj.path if obj else obj_name)
        whys = "; ".join(f"{j(r.kernel)}: {j(str((r.expectation or {}).get('why')))}" for r in cells)
        fingerprint = _fingerprint(rule_id, obj_name, prog, uri, None)
        props = {"object": j(obj_name), "program": j(prog), "kernels": [j(r.kernel) for r in cells]}
        text = f"{j(obj_name)}:{j(prog)}: expectation not met on {whys}"
        results.append(_file_result(rule_id, rule_index[rule_id], "error", text, uri, fingerprint, props))
    for obj_name, kernel, kind, words in object_findings(result.results):  # the object as shipped, kernel warnings
        rule_id = {"object_load": "object/does-not-load", "pt_regs": "object/pt-regs-arch"}.get(kind, "kernel/warning")
        if rule_id not in rule_index:
            rule_index[rule_id] = len(rules)
            rules.append(_rule(rule_id, *_OBJECT_FINDINGS[rule_id]))
        obj = objects.get(obj_name)
        uri = _uri(obj.path if obj else obj_name)
        fingerprint = _fingerprint(rule_id, obj_name, kernel, uri)
        text = f"{j(obj_name)} on {j(kernel)}: {j(words)}"
        props = {"object": j(obj_name), "kernels": [j(kernel)]}
        results.append(_file_result(rule_id, rule_index[rule_id], "warning", text, uri, fingerprint, props))
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


def _file_result(
    rule_id: str, index: int, level: str, text: str, uri: str, fingerprint: str, properties: dict[str, Any]
) -> dict[str, Any]:
    """A result about a whole object file (no line: an expectation, the object as shipped, a kernel
    warning), fingerprinted so that GitHub keeps findings of different programs and kernels apart."""
    return {
        "ruleId": rule_id,
        "ruleIndex": index,
        "level": level,
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint, "primaryLocationLineHash": f"{fingerprint[:16]}:1"},
        "properties": properties,
    }
