"""The one place where the kernel's and libbpf's own words become facts (see facts.py).

Kernel and libbpf messages are worded differently across versions, so they are matched loosely
here, once, on the side that has the text (the guest agent); the host classifies from the
facts. ``program_facts`` takes a program's texts in the order the host has always read them
(the agent's message, libbpf's lines, the verifier log, the object's open log) and returns the
facts in the order they occur, so "the first one" means what it meant when the host searched
the joined text.

Only the kernel's and libbpf's words are read here. What the agent knows itself (its rewording
of a weak kfunc, the struct_ops notes, --program-type, --attach-target, the legacy loader's
reason) it sends as facts directly (checker/state.py, checker/check.py), so rewording one of its
sentences changes no fact. A message of the agent that quotes libbpf's line (the reason of a
failed map, the --attach-target line in libbpf's own words) still yields libbpf's fact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .facts import FACT_REPEAT_MAX, Fact
from .verifierlog import error_line

# libbpf marks calls to unresolved weak kfuncs and failed CO-RE relocations with these.
_POISON_KFUNC = re.compile(r"unknown#20020000\d\d")
_POISON_CORE = re.compile(r"unknown#195896080|failed to resolve CO-RE relocation|CO-RE relocating .* failed")
_CORE_TARGET = re.compile(
    r"failed to resolve CO-RE relocation <[^>]*> \[\d+\] (?:(?:struct|union|enum|typedef) )?([\w.:]+)"
)
# libbpf's own words: an extern it could not resolve, a weak kfunc whose call it poisoned.
_MISSING_EXTERN = re.compile(
    r"extern \((func ksym|var ksym|kcfg)\) '(\w+)': not found|kfunc '(\w+)' is referenced but wasn't resolved"
)
# libbpf's words (which the agent's --attach-target line quotes; it sends the fact itself as well).
_ATTACH_TARGET = re.compile(
    r"failed to find kernel BTF type ID of '(\w+)'|Failed to find BTF for ['\"]?(\w+)|attach_btf_id.*?(\w+)"
)
_MAP_CREATE = re.compile(r"map '([\w.]+)': failed to create")
_MAP_CREATE_DETAIL = re.compile(r": failed to create: ([^\n]*?\(-?\d+\)|[^\n)]*)")
_INNER_FAILED = re.compile(r"map '([\w.]+)': failed to create inner map")
_NO_TARGET_PROGRAM = re.compile(r"attach program FD is not set")
_NO_TARGET_NAMED = re.compile(r"no BTF-based attach target is specified")
_KSYM_UNRESOLVED = re.compile(r"extern '(\w+)' \(strong\): not resolved")
_MAP_REFERENCED = re.compile(r"BPF map '([\w.]+)' is referenced but wasn't created")
_NO_PROG_TYPE = re.compile(r"missing BPF prog type, check ELF section name '([^']*)'")
# libbpf 1.0 dropped struct bpf_map_def maps; in 'maps/<name>' sections (gobpf, iproute2)
# they only show up as relocations against a section libbpf does not know as a map section.
_LEGACY_MAP_RELO = re.compile(r"bad map relo against '[^']*' in section 'maps/[^']*'")
_LINKED_EXTERN = re.compile(r"unrecognized extern section '([^']+)'|failed to find BTF for extern '([^']+)'")
_NOT_SLEEPABLE = re.compile(r"^(\S+) is not sleepable$", re.M)
_COMPLEXITY = re.compile(
    r"BPF program is too large|too many states|sequence of \d+ jumps is too complex|"
    r"processed \d{7,} insns|complexity limit"
)
_PROCESSED = re.compile(r"processed (\d+) insns")
_NO_BTF = re.compile(r"vmlinux BTF is not found|failed to find valid kernel BTF|kernel BTF is missing|BTF is required")
_NO_KFUNC_CALLS = re.compile(r"BPF_CALL uses reserved fields")
_UNKNOWN_INSN = re.compile(
    r"\b(BPF_(?!CALL)\w+) uses reserved fields|unknown opcode [0-9a-f]+|BPF_ATOMIC uses invalid atomic opcode"
)
_KFUNC_NOT_ALLOWED = re.compile(r"calling kernel function (\w+) is not allowed")
_NO_ARGUMENT = re.compile(r"func '(\w+)' doesn't have (\d+)-th argument")
_UNSUPPORTED_MEMBER = re.compile(r"attach to unsupported member (\w+) of struct (\w+)")
_NO_SLEEPABLE_TYPE = re.compile(r"Only (.+) programs can be sleepable")
_INCOMPATIBLE_KFUNC = re.compile(r"extern \(func ksym\) '(\w+)': func_proto \[\d+\] incompatible with (\S+) \[")
# struct_ops: libbpf's words on a program no map uses, and when it cannot match a map to the kernel.
_SO_UNREFERENCED = re.compile(r"program isn't referenced anywhere")
_SO_NO_TYPE = re.compile(r"struct_ops init_kern: struct (\w+) is not found in kernel BTF")
_SO_NO_MEMBER = re.compile(r"struct_ops init_kern ([\w.]+): Cannot find member (\w+) in kernel BTF")
_SO_MISMATCH = re.compile(
    r"struct_ops init_kern ([\w.]+): (?:Unmatched member type|Error in size of member|kernel member|bitfield) (\w+)"
)


def _first(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """The matches of a pattern, at most FACT_REPEAT_MAX of them (the host reads the first)."""
    for i, m in enumerate(pattern.finditer(text)):
        if i >= FACT_REPEAT_MAX:
            return
        yield m


def program_facts(
    message: str | None,
    libbpf_log: str | None,
    log: str | None,
    open_log: str | None = None,
    map_names: Iterable[str] = (),
) -> list[Fact]:
    """The facts the kernel's and libbpf's words give in a rejected program's texts: its message,
    libbpf's lines, its verifier log and the object's open log (libbpf's, at bpf_object__open).
    map_names: the object's maps, so that a text naming one says so (map_mentioned)."""
    message, libbpf_log, log = message or "", libbpf_log or "", log or ""
    text = "\n".join((message, libbpf_log, log)) + "\n" + (open_log or "")
    out: list[Fact] = []
    add = out.append

    for m in _first(_LEGACY_MAP_RELO, text):
        add({"code": "legacy_maps", "relocation": m.group(0)})
    for m in _first(_LINKED_EXTERN, text):
        add({"code": "linked_extern", "section": m.group(1), "name": m.group(2)})
    for m in _first(_NO_PROG_TYPE, text):
        add({"code": "no_prog_type", "section": m.group(1)})

    for m in _first(_MISSING_EXTERN, text):
        if m.group(2):
            add({"code": "missing_extern", "name": m.group(2), "kind": m.group(1)})
        else:
            add({"code": "kfunc_unresolved", "name": m.group(3)})
    for m in _first(_INCOMPATIBLE_KFUNC, text):
        add({"code": "incompatible_kfunc", "kfunc": m.group(1), "proto": m.group(2)})
    if _POISON_KFUNC.search(text):
        add({"code": "poisoned_kfunc_call"})
    if _NO_KFUNC_CALLS.search(log):
        add({"code": "no_kfunc_calls"})
    for m in _first(_KFUNC_NOT_ALLOWED, text):
        add({"code": "kfunc_not_allowed", "kfunc": m.group(1)})

    for _ in _first(_SO_UNREFERENCED, text):
        add({"code": "struct_ops_unused", "referenced": True})
    for m in _first(_SO_NO_TYPE, text):
        add({"code": "struct_ops_no_type", "type": m.group(1)})
    for m in _first(_SO_NO_MEMBER, text):
        add({"code": "struct_ops_no_member", "map": m.group(1), "member": m.group(2)})
    for m in _first(_SO_MISMATCH, text):
        line = next(line for line in text.splitlines() if m.group(0) in line).strip()[:300]
        add({"code": "struct_ops_mismatch", "map": m.group(1), "member": m.group(2), "line": line})

    for m in _first(_UNKNOWN_INSN, log):
        atomic = m.group(1) in ("BPF_STX", "BPF_XADD") or "ATOMIC" in m.group(0)
        add({"code": "unknown_insn", "insn": m.group(0), "atomic": atomic})

    for name in dict.fromkeys(map_names):
        if f"'{name}'" in text:
            add({"code": "map_mentioned", "map": name})
    for m in _first(_MAP_REFERENCED, text):
        add({"code": "map_referenced", "map": m.group(1)})
    for m in _first(_MAP_CREATE, text):
        detail = _MAP_CREATE_DETAIL.match(text, m.end() - len(": failed to create"))
        add({"code": "map_create_failed", "map": m.group(1), "detail": detail.group(1).strip() if detail else None})
    for m in _first(_INNER_FAILED, text):
        add({"code": "inner_map_failed", "map": m.group(1)})
    if "inner map" in text.lower():
        add({"code": "inner_map_mentioned"})

    targets = [m.group(1) for m in _first(_CORE_TARGET, text)]
    if targets or _POISON_CORE.search(text):
        add({"code": "core_relocation_failed", "target": targets[0] if targets else None})
    if _NO_BTF.search(text):
        add({"code": "no_btf"})
    if _NO_TARGET_PROGRAM.search(text):
        add({"code": "no_target_program"})
    if _NO_TARGET_NAMED.search(text):
        add({"code": "no_target_named"})
    for m in _first(_KSYM_UNRESOLVED, text):
        add({"code": "ksym_unresolved", "name": m.group(1)})
    for m in _first(_ATTACH_TARGET, text):
        add({"code": "attach_target_missing", "target": next((g for g in m.groups() if g), "?")})
    for m in _first(_NO_ARGUMENT, text):
        add({"code": "no_argument", "func": m.group(1), "n": int(m.group(2))})
    for m in _first(_UNSUPPORTED_MEMBER, text):
        add({"code": "unsupported_member", "member": m.group(1), "struct": m.group(2)})
    for m in _first(_NO_SLEEPABLE_TYPE, log):
        add({"code": "no_sleepable_type", "types": m.group(1)})
    for m in _first(_NOT_SLEEPABLE, log):
        add({"code": "not_sleepable", "target": m.group(1)})
    processed = _PROCESSED.search(text)
    if processed:
        add({"code": "insns_processed", "insns": int(processed.group(1))})
    if _COMPLEXITY.search(text):
        add({"code": "too_complex", "processed": int(processed.group(1)) if processed else None})
    if log.strip():
        add({"code": "verifier_ran"})
    error = error_line(log)
    if error:
        add({"code": "verifier_error", "line": error[:300]})
    return out
