"""Verifier-log diffs: normalize two logs, diff them, and find the first instruction where they part.

Two logs of the same program differ in much that means nothing: register and pointer ids
("id=3", "ref_obj_id=2"), kernel addresses (map pointers), and timings. Those are normalized or
removed before the unified diff (difflib), so what is left is what the verifier did differently.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field

MAX_DIFF_LINES = 2000  # kept in the result file; reports show fewer

_TIMING = re.compile(r"^\s*verification time \d+ usec")
_SUBSTITUTIONS = [
    # register, pointer and reference ids: id=3, ref_obj_id=2, dynptr_id=1, parent_id=4
    (re.compile(r"\b((?:ref_obj_|dynptr_|parent_|ref_)?id)=\d+"), r"\1=#"),
    # kernel addresses: 0xffff888004a1c000, ffff888004a1c000 (map_ptr=…); immediates stay
    (re.compile(r"\b(?:0x)?ffff[0-9a-f]{12}\b"), "ADDR"),
    # compat's own bookkeeping lines
    (re.compile(r"^\[compat: .*\]$"), ""),
]
# "12: (85) call bpf_loop#181", "12: (85) call bpf_loop#181    ; R0=…" (state after ';') or
# "11: <invalid CO-RE relocation>"
_INSN = re.compile(r"^(\d+): (\([0-9a-f]{2}\) [^;]*?|<[^>]*>)\s*(?:;.*)?$")


def normalize(log: str) -> list[str]:
    """The log's lines without ids, addresses, timings and blank lines."""
    out = []
    for raw in log.splitlines():
        line = raw.rstrip()
        if not line.strip() or _TIMING.match(line):
            continue
        for rx, repl in _SUBSTITUTIONS:
            line = rx.sub(repl, line)
        if line.strip():
            out.append(line)
    return out


def instructions(lines: list[str]) -> list[tuple[int, str]]:
    """The traced instructions of a (normalized) log, in trace order: (index, instruction text)."""
    out = []
    for line in lines:
        m = _INSN.match(line)
        if m:
            out.append((int(m.group(1)), m.group(2).strip()))
    return out


@dataclass
class Divergence:
    """The first traced instruction where two logs part (instruction text, not register state:
    state formats differ between kernels)."""

    old_insn: int | None  # instruction index in the old log (None: the old trace had ended)
    new_insn: int | None
    old: str | None  # the instruction as the old log shows it
    new: str | None
    step: int  # position in the trace (0 = the first traced instruction)
    last_insn: int | None = None  # the last instruction both traces share, when one of them ends
    last: str | None = None

    def describe(self) -> str:
        if self.old_insn is None or self.new_insn is None:
            ended, goes_on = ("old", "new") if self.old_insn is None else ("new", "old")
            insn, text = (self.new_insn, self.new) if self.old_insn is None else (self.old_insn, self.old)
            where = f"at insn {self.last_insn} ({self.last})" if self.last_insn is not None else "before any insn"
            return f"the {ended} log stops {where}; the {goes_on} one goes on with insn {insn}: {text}"
        if self.old_insn == self.new_insn:
            return f"insn {self.new_insn}: {self.old}  →  {self.new}"
        return f"insn {self.old_insn} → {self.new_insn}: {self.old}  →  {self.new}"


@dataclass
class LogDiff:
    """A unified diff of two normalized verifier logs."""

    old_label: str
    new_label: str
    diff: list[str] = field(default_factory=list)
    left_off: int = 0  # diff lines not kept
    divergence: Divergence | None = None
    note: str | None = None  # why there is no divergent instruction, when there is none

    def to_json(self) -> dict:
        return asdict(self)


def first_divergence(old: list[str], new: list[str]) -> Divergence | None:
    """The first step where the two instruction traces differ (or one ends), None if they agree."""
    a, b = instructions(old), instructions(new)
    for step, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return Divergence(x[0], y[0], x[1], y[1], step)
    if len(a) == len(b):
        return None
    step = min(len(a), len(b))
    last = a[step - 1] if step else (None, None)
    if len(a) > len(b):
        return Divergence(a[step][0], None, a[step][1], None, step, *last)
    return Divergence(None, b[step][0], None, b[step][1], step, *last)


def diff_logs(
    old_log: str, new_log: str, old_label: str, new_label: str, max_lines: int = MAX_DIFF_LINES, context: int = 3
) -> LogDiff:
    """Normalize both logs and diff them; find the first instruction where they part."""
    old, new = normalize(old_log), normalize(new_log)
    lines = list(difflib.unified_diff(old, new, fromfile=old_label, tofile=new_label, lineterm="", n=context))
    result = LogDiff(old_label, new_label, lines[:max_lines], max(len(lines) - max_lines, 0))
    if not instructions(old) or not instructions(new):
        side = old_label if not instructions(old) else new_label
        result.note = (
            f"no instruction trace in the log of {side} (accepted programs are logged with statistics only; "
            "some rejections happen before the first instruction)"
        )
        return result
    result.divergence = first_divergence(old, new)
    if result.divergence is None:
        result.note = "the instruction traces are the same"
    return result
