"""What the two loaders of a check share: a program's state while it is checked, its record in
the reply, and the wording of libbpf-internal messages.

Apart from check.py (libbpf's loader) so that legacy.py (the legacy-map loader, which check.py
calls) can build the same records without importing check.py back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from compat_agent.elf.sections import OPTION, SECTION, attach_target
from compat_agent.wire.facts import Fact, fact
from compat_agent.wire.stats import STATS

_POISON_KFUNC_RE = re.compile(r"unknown#2002\d{6}")
_UNRESOLVED_KFUNC_RE = re.compile(r"kfunc '([^']+)' is referenced but wasn't resolved")


def explain(message: str | None, weak_kfuncs: list[str], facts: list[Fact] | None = None) -> str | None:
    """Reword messages that speak libbpf-internal language (poisoned instructions) for display;
    what the rewording says is added to facts as codes (the host classifies from those)."""
    if not message:
        return message
    m = _UNRESOLVED_KFUNC_RE.search(message)
    if m:
        if facts is not None:
            facts.append(fact("kfunc_unresolved", name=m.group(1)))
        return (
            f"calls kfunc '{m.group(1)}', which this kernel does not have "
            "(a __weak extern: guard the call with bpf_ksym_exists())"
        )
    if _POISON_KFUNC_RE.search(message):
        if facts is not None:
            facts.append(fact("poisoned_kfunc_call"))
        names = "', '".join(weak_kfuncs) if weak_kfuncs else "?"
        return f"calls a kfunc this kernel does not have (weak extern '{names}'): guard the call with bpf_ksym_exists()"
    return message


@dataclass
class ProgState:
    """Everything known about one program while the check runs."""

    name: str
    section: str
    prog_type: int
    type_name: str
    eat: int
    attach_type: str | None
    attach_target: str | None
    insn_cnt: int
    helpers: list[int]
    kfuncs: list[str]
    initial_autoload: bool
    type_from: str = SECTION  # progtype: where the type it is loaded as came from
    type_note: str | None = None  # why it is loaded as another type than its section says
    target_from: str = SECTION  # OPTION: attach_target is --attach-target's, not the section's
    target_note: str | None = None  # what --attach-target did to it
    verdict: str | None = None
    stage: str | None = None
    errno: int | None = None
    message: str | None = None
    libbpf_log: list[str] = field(default_factory=list)
    log: str = ""
    log_level: int = 4
    stats: dict = field(default_factory=dict)
    load_ms: float = 0.0
    attach: dict | None = None
    loaded: bool = True  # False: accepted in a load that failed later on (not in the final object)
    facts: list[Fact] = field(default_factory=list)  # what the agent itself knows of a rejection (facts.py)
    explained: list[Fact] = field(default_factory=list)  # what the rewording of its message says (explain)

    def reject(self, stage: str, errno: int | None, message: str | None, lines: list[str]) -> None:
        """Record a rejection at a stage (prepare: no verifier ran; load: the kernel refused)."""
        self.verdict, self.stage, self.errno, self.message = "rejected", stage, errno, message
        self.libbpf_log = lines

    def explain(self, message: str | None, weak_kfuncs: list[str]) -> str | None:
        """explain() for this program's message: the facts of the rewording go with the message
        it returns (a later message that is not reworded keeps none of them)."""
        found: list[Fact] = []
        said = explain(message, weak_kfuncs, found)
        if said:
            self.explained = found
        return said

    def retarget(self, target: str, loaded: bool = False) -> None:
        """Take --attach-target's target instead of the section's (loaded: libbpf loads the
        program against it, else only its attach check uses it), and say so in its results."""
        how = "loaded with attach target" if loaded else "attach target"
        own = attach_target(self.section) or "none"
        self.target_note = f"{how} {target} (--attach-target; its section names {own})"
        self.attach_target, self.target_from = target, OPTION

    def record(self) -> dict:
        """The program's record in the check_result reply."""
        # Every statistic of the table, in its order (None: the log did not say); insn_cnt is libbpf's.
        stats = {**dict.fromkeys(s.json for s in STATS), **self.stats, "insn_cnt": self.insn_cnt}
        return {
            "program": self.name,
            "section": self.section,
            "prog_type": self.type_name,
            "prog_type_from": self.type_from,
            "attach_type": self.attach_type,
            "attach_target": self.attach_target,
            "verdict": self.verdict,
            "stage": self.stage,
            "errno": self.errno,
            "message": self.message,
            "libbpf_log": "\n".join(
                [f"[compat: {note}]" for note in (self.type_note, self.target_note) if note] + self.libbpf_log
            ),
            "log": self.log,
            "log_level": self.log_level,
            "stats": stats,
            "helpers": self.helpers,
            "kfuncs": self.kfuncs,
            "load_ms": round(self.load_ms, 3),
            "attach": self.attach or not_attempted("the program was not loaded"),
            # the agent's own facts; check.add_facts() adds what the kernel's and libbpf's texts say
            **({"facts": [*self.explained, *self.facts]} if self.verdict == "rejected" else {}),
        }


def not_attempted(reason: str) -> dict:
    """An attach record for a program that was not attached."""
    return {"status": "not_attempted", "errno": None, "reason": reason}
