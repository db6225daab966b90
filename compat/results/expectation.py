"""Judging a program's verdict against the expectation its selftest annotations declare.

The spec is compat/objects/expectations.py's Spec as plain data (Spec.to_json()); the rules are
test_loader.c's (tools/testing/selftests/bpf): the verdict (success or failure), then every
expected message found in the verifier log, in order (a message is searched after the end of
the previous match; its {{…}} parts are regular expressions).

The privileged mode is judged in the root column, the unprivileged mode (its own expectations,
or the privileged ones it defaults to) in the column of --privilege unprivileged; the caps column
has no expectation of its own (test_loader knows those two modes only).

What compat cannot judge it says so instead of guessing (``met`` is None and ``why`` says why):
- a mode the test does not run in (test_loader skips it), and the caps column;
- program flags beyond test_loader's testing flags (compat cannot set BPF_F_* load flags);
- messages of an accepted program: compat keeps a full verifier log for rejections only;
- messages a test reads from a level-2 log that compat's level-1 log does not show;
- a cell without a verdict (an infrastructure error).
"""

from __future__ import annotations

import re
from typing import Any

from .model import ACCEPTED, ERROR, REJECTED, ProgramResult
from .privilege import CAPS, UNPRIVILEGED

# (--privilege unprivileged judges the unprivileged mode in a column of its own)
NO_UNPRIV = "not judged in the root column (no unprivileged mode)"
NO_UNPRIV_MODE = "not judged: the test has no unprivileged mode (test_loader runs it privileged only)"
NO_CAPS = "not judged: selftests declare privileged and unprivileged expectations only (no caps mode)"


def _regex(text: str) -> re.Pattern[str]:
    """test_loader's compile_regex: {{…}} parts are regular expressions, the rest literal."""
    parts, pos = [], 0
    while pos < len(text):
        start = text.find("{{", pos)
        end = text.find("}}", start + 2) if start >= 0 else -1
        if start < 0 or end < 0:
            parts.append(re.escape(text[pos:]))
            break
        parts += [re.escape(text[pos:start]), text[start + 2 : end]]
        pos = end + 2
    return re.compile("".join(parts), re.MULTILINE)


def match_in_order(log: str, messages: list[str]) -> int | None:
    """The index of the first message not found in the log after the previous one's match
    (validate_msgs), None when every message is found."""
    pos = 0
    for i, message in enumerate(messages):
        if "{{" in message:
            try:
                m = _regex(message).search(log, pos)
            except re.error:
                return i
            if m is None:
                return i
            pos = m.end()
        else:
            at = log.find(message, pos)
            if at < 0:
                return i
            pos = at + len(message)
    return None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def judge(spec: dict[str, Any], r: ProgramResult) -> dict[str, Any] | None:
    """The ``expectation`` record of one program's result: {"expected", "met", "why", ...}, or
    None for a program that is no test (auxiliary). A result of the unprivileged column
    (--privilege unprivileged) is judged against the test's unprivileged mode, as test_loader runs
    it without capabilities; every other column against the privileged mode."""
    if spec.get("malformed"):
        return {"expected": None, "met": None, "why": f"annotation malformed: {spec['malformed']}"}
    if spec.get("auxiliary"):
        return None
    if r.privilege == UNPRIVILEGED:
        return _judge_unpriv(spec, r)
    if r.privilege == CAPS:
        return {"expected": None, "met": None, "why": NO_CAPS}
    priv, unpriv = spec.get("priv"), spec.get("unpriv")
    out: dict[str, Any] = {}
    if spec.get("description"):
        out["description"] = spec["description"]
    if unpriv is not None:
        out["unpriv"] = {"expected": unpriv["expect"], "met": None, "why": NO_UNPRIV}
    if spec.get("unjudged"):
        out["unjudged"] = list(spec["unjudged"])
    if priv is None:  # an unprivileged-only test
        return {"expected": unpriv["expect"] if unpriv else None, "met": None, "why": NO_UNPRIV, **out}
    expected = priv["expect"]
    messages: list[str] = priv.get("messages") or []
    met, why = _judge_priv(spec, expected, messages, r)
    return {"expected": expected, "met": met, "why": why, **out}


def _judge_unpriv(spec: dict[str, Any], r: ProgramResult) -> dict[str, Any]:
    """A result of the unprivileged column against the test's unprivileged mode (whose verdict and
    messages default to the privileged ones: expectations.parse_tags does as test_loader does)."""
    unpriv = spec.get("unpriv")
    out: dict[str, Any] = {"mode": UNPRIVILEGED}
    if spec.get("description"):
        out["description"] = spec["description"]
    if spec.get("unjudged"):
        out["unjudged"] = list(spec["unjudged"])
    if unpriv is None:  # test_loader runs it privileged only
        return {"expected": None, "met": None, "why": NO_UNPRIV_MODE, **out}
    expected = unpriv["expect"]
    met, why = _judge_priv(spec, expected, unpriv.get("messages") or [], r)
    return {"expected": expected, "met": met, "why": why, **out}


def _judge_priv(
    spec: dict[str, Any], expected: str, messages: list[str], r: ProgramResult
) -> tuple[bool | None, str | None]:
    if r.verdict == ERROR:
        return None, "not judged: no verdict (" + _short(r.message or "infrastructure error") + ")"
    if r.verdict != expected:
        return False, f"expected {expected}, {r.verdict}" + (f" ({_short(r.message)})" if r.message else "")
    if not messages:
        return True, None
    # The agent loads a program that expects messages at the test's log level (the request's
    # tests: check.selftest_loads); a log of level 4 only (the statistics line) means it could not
    # keep that log (too large, over its time or size budget).
    if not r.log or (r.log_level is not None and r.log_level & 3 == 0):
        return None, (f"verdict as expected; {len(messages)} message(s) not judged: "
                      "the verifier log could not be collected")  # fmt: skip
    missing = match_in_order(r.log, messages)
    if missing is None:
        return True, None
    wanted = int(spec.get("log_level") or 0) & 3
    if wanted > (r.log_level or 1):
        have = r.log_level or 1
        return None, (f"verdict as expected; message {missing + 1} of {len(messages)} not in compat's level-{have} "
                      f"log (the test reads a level-{wanted} log): not judged")  # fmt: skip
    order = " after the previous one" if missing else ""
    text = _short(messages[missing])
    return False, f"expected message {missing + 1} of {len(messages)} not in the verifier log{order}: {text!r}"


def apply(specs: dict[str, dict[str, Any]], results: list[ProgramResult], malformed: str | None = None) -> None:
    """Set ``expectation`` on the results of an object's annotated programs (in place)."""
    for r in results:
        if malformed:
            r.expectation = {"expected": None, "met": None, "why": malformed}
        elif r.program in specs:
            r.expectation = judge(specs[r.program], r)


def not_met(results: list[ProgramResult]) -> list[ProgramResult]:
    """The results whose expectation is not met."""
    return [r for r in results if r.expectation is not None and r.expectation.get("met") is False]


def mark(r: ProgramResult | None) -> str:
    """A short mark of a cell's expectation for matrix reports: "" (none), "✓", "✗" or "?"."""
    if r is None or r.expectation is None:
        return ""
    met = r.expectation.get("met")
    return "✓" if met is True else "✗" if met is False else "?"


__all__ = ["ACCEPTED", "REJECTED", "apply", "judge", "mark", "match_in_order", "not_met"]
