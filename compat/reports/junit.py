"""JUnit XML: one test suite per kernel (kernel-axis order), one test case per program × kernel.

The failures follow the gate (--fail-on, results/gate.py): a test case is a <failure> exactly when
its cell is one that makes the gate fail, so a build passes in Jenkins or GitLab exactly when
compat exits 0 for its verdicts:
  regression (default)  a regression against the baseline ("regression: " leads the message), and
                        a rejection on a required kernel the baseline has no verdict for;
  rejection             every rejection;
  expectation           every selftest program whose annotations are not met (type "expectation");
  never                 none.
Any other rejection is a passing test case with its verdict, reason and message in <system-out>:
the program ran on that kernel and was rejected as the policy allows (the kernel predates a
feature it uses). It is not <skipped>: in Jenkins and GitLab a skipped test is one that did not
run, counted apart as work left to do, while this one ran and its outcome is final. A cell
without a verdict is an <error> under every policy (compat exits 3 for it). The failure text
holds the reason, the source line and the log diff (regressions) or the log's last lines.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from compat.results.classify import warning_words
from compat.results.compare import Comparison
from compat.results.gate import Facts, facts
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


def failing_cells(f: Facts, fail_on: str) -> set[tuple[str, str, str]]:
    """(object, program, kernel) of the cells that make the gate fail under the policy fail_on."""
    if fail_on == "rejection":
        cells = [(r.object, r.program, r.kernel) for r in f.rejections]
    elif fail_on == "regression":
        cells = [(c.object, c.program, c.kernel) for c in f.regressions]
        cells += [(r.object, r.program, r.kernel) for r in f.required_rejections]
    elif fail_on == "expectation":
        cells = [(r.object, r.program, r.kernel) for r in f.unmet]
    elif fail_on == "warning":
        cells = [(r.object, r.program, r.kernel) for r in f.warned]
    else:
        cells = []
    return set(cells)


def render(result: RunResult, comparison: Comparison, fail_on: str = "regression") -> str:
    """The JUnit XML document; fail_on is the gate's policy (--fail-on), which the failures follow."""
    f = facts(result, comparison)
    failing = failing_cells(f, fail_on)
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
            fails = (obj, prog, k.id) in failing
            if r.verdict == ERROR:
                counts["errors"] += 1
                error = ET.SubElement(case, "error", type=_clean(r.reason or "error"), message=_clean(str(r.message)))
                error.text = _text(r.log[-4000:]) if r.log else None
            elif fails and fail_on == "expectation":
                # A selftest whose annotations are not met: the failure is the unmet expectation.
                counts["failures"] += 1
                failure = ET.SubElement(case, "failure", type="expectation",
                                        message=_clean(f"expectation not met: {e.get('why')}"))  # fmt: skip
                text = _failure_text(result, comparison, r) if r.verdict == REJECTED else str(e.get("why"))
                failure.text = _text(text)
            elif fails and fail_on == "warning":  # the kernel warned while the object was checked
                counts["failures"] += 1
                said = warning_words(r.kernel_warnings) or "the kernel warned"
                failure = ET.SubElement(case, "failure", type="kernel_warning", message=_clean(said))
                failure.text = _text("\n".join(line for w in r.kernel_warnings or [] for line in w.get("lines", [])))
            elif fails:
                counts["failures"] += 1
                p = problems.get((obj, prog, k.id))
                reason = common.reason_words(r.reason)
                lead = "regression: " if p and p.regression else ("required kernel: " if p and p.required else "")
                failure = ET.SubElement(case, "failure", type=_clean(r.reason or "rejected"),
                                        message=_clean(f"{lead}{reason}: {r.message}"))  # fmt: skip
                failure.text = _text(_failure_text(result, comparison, r))
            else:
                lines = _passing_lines(r, fail_on)
                if lines:
                    out = ET.SubElement(case, "system-out")
                    out.text = _text("\n".join(lines))
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{seconds:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root, space="  ")
    text = escape.xml_document(ET.tostring(root, encoding="unicode"))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n"


def _passing_lines(r, fail_on: str) -> list[str]:
    """What a passing test case says of its cell: a rejection the gate allows, an expectation's
    judgement, a failed attach."""
    lines = []
    e = r.expectation or {}
    if r.verdict == REJECTED:
        lines.append(f"rejected ({common.reason_words(r.reason)}): {r.message}")
        lines.append(f"not a failure under --fail-on {fail_on}")
    if e.get("met") is True:
        lines.append(f"{r.verdict}, as its annotations expect")
    elif e.get("met") is False:
        lines.append(f"expectation not met: {e.get('why')} (a failure under --fail-on expectation)")
    if r.verdict == ACCEPTED and r.attach.get("status") == "failed":
        lines.append(f"loads, but attach failed: {r.attach.get('reason')}")
    # the object's own findings: it does not load as shipped, the kernel warned
    lines += [w for w in common.cell_findings(r) if w]
    return lines


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
