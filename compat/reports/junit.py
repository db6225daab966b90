"""JUnit XML: one test suite per kernel (kernel-axis order), one test case per program × kernel.

A selftest program whose annotations (comment:test_expect_*) are not met is a <failure> of type
"expectation", one that meets them passes whatever its verdict. Otherwise a rejection is a
<failure> (type = the failure class; "regression: " leads the message of a
cell accepted in the baseline), a cell without a verdict an <error>; the failure text holds the
reason, the source line and the log diff (regressions) or the log's last lines.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from compat.results.compare import Comparison
from compat.results.gate import facts
from compat.results.model import ACCEPTED, ERROR, REJECTED, RunResult

from . import common, escape

LOG_TAIL = 40
_clean = escape.xml


def _text(text: str) -> str:
    """Element text: lines kept, each escaped (escape.xml)."""
    return escape.xml(text, multiline=True)


def classname(kernel: str, obj: str) -> str:
    """compat.<kernel>.<object> with the dots of the kernel id and the object name escaped, so that
    viewers that split package and class at the last dot see package compat.<kernel> and class
    <object> (compat.5_10.bpf_loop_o, not package compat.5.10.bpf_loop and class o)."""
    return f"compat.{escape.junit_name(kernel)}.{escape.junit_name(obj)}"


def render(result: RunResult, comparison: Comparison) -> str:
    f = facts(result, comparison)
    problems = {(p.result.object, p.result.program, p.result.kernel): p for p in common.problems(result, comparison, f)}
    root = ET.Element("testsuites", name="compat")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for k in common.kernels(result, comparison):
        suite = ET.SubElement(root, "testsuite", name=_clean(f"compat {common.kernel_name(k)}"))
        props = ET.SubElement(suite, "properties")
        for name, value in (("kernel", k.id), ("version", k.version), ("release", k.release), ("libbpf", k.libbpf),
                            ("required", str(k.required).lower())):  # fmt: skip
            if value:
                ET.SubElement(props, "property", name=name, value=_clean(str(value)))
        counts = {"tests": 0, "failures": 0, "errors": 0}
        seconds = 0.0
        for obj, prog in common.programs(result):
            r = result.cell(obj, prog, k.id)
            if r is None:
                continue
            counts["tests"] += 1
            t = (r.load_ms or 0) / 1000
            seconds += t
            case = ET.SubElement(suite, "testcase", classname=classname(k.id, obj), name=_clean(prog), time=f"{t:.3f}")
            e = r.expectation or {}
            if e.get("met") is False:
                # A selftest whose annotations are not met: the failure is the unmet expectation.
                counts["failures"] += 1
                failure = ET.SubElement(case, "failure", type="expectation",
                                        message=_clean(f"expectation not met: {e.get('why')}"))  # fmt: skip
                text = _failure_text(result, comparison, r) if r.verdict == REJECTED else str(e.get("why"))
                failure.text = _text(text)
            elif e.get("met") is True:
                # A selftest meeting its annotations passes, whatever its verdict (a __failure test
                # rejected as expected).
                out = ET.SubElement(case, "system-out")
                out.text = _text(f"{r.verdict}, as its annotations expect")
            elif r.verdict == REJECTED:
                counts["failures"] += 1
                p = problems.get((obj, prog, k.id))
                reason = common.reason_words(r.reason)
                lead = "regression: " if p and p.regression else ("required kernel: " if p and p.required else "")
                failure = ET.SubElement(case, "failure", type=_clean(r.reason or "rejected"),
                                        message=_clean(f"{lead}{reason}: {r.message}"))  # fmt: skip
                failure.text = _text(_failure_text(result, comparison, r))
            elif r.verdict == ERROR:
                counts["errors"] += 1
                error = ET.SubElement(case, "error", type=_clean(r.reason or "error"), message=_clean(str(r.message)))
                error.text = _text(r.log[-4000:]) if r.log else None
            elif r.verdict == ACCEPTED and r.attach.get("status") == "failed":
                out = ET.SubElement(case, "system-out")
                out.text = _text(f"loads, but attach failed: {r.attach.get('reason')}")
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{seconds:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root, space="  ")
    text = escape.xml_document(ET.tostring(root, encoding="unicode"))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n"


def _failure_text(result: RunResult, comparison: Comparison, r) -> str:
    """The failure's text: one line per fact (its values escaped to one line each), then log lines."""
    x = _clean
    lines = [f"{x(r.object)}:{x(r.program)} on {x(r.kernel)}: {x(common.reason_words(r.reason))}", x(r.message)]
    if r.detail and r.detail not in (r.message or ""):
        lines.append(f"kernel/libbpf: {x(r.detail)}")
    loc = common.location(r)
    if loc is not None:
        lines.append(f"at {x(common.display_path(loc.file))}:{loc.line}" + (f": {x(loc.text)}" if loc.text else ""))
    change = comparison.cell(r.object, r.program, r.kernel)
    if change is not None and change.log_diff is not None:
        d = change.log_diff
        lines.append(f"accepted in the baseline ({x(change.baseline_object)}); verifier log diff (normalized):")
        if d.divergence is not None:
            lines.append(f"first divergent instruction: {x(d.divergence.describe())}")
        lines.extend(x(line) for line in common.clip(d.diff, 200))
    elif r.log:
        lines.append("verifier log (last lines):")
        lines.extend(x(line) for line in r.log.rstrip().splitlines()[-LOG_TAIL:])
    return "\n".join(lines)
