"""The fact table: what a kernel, libbpf or the agent said about a program, as codes with parameters.

The guest reads the kernel's and libbpf's text (it has it) and sends facts such as
``{"code": "missing_helper", ...}`` or ``{"code": "map_create_failed", "map": "arena", "detail":
"Invalid argument(-22)"}``; the host classifies and words a rejection from the codes alone, so
rewording a message changes no classification. Each entry names its parameters and their types;
``check_fact`` validates an untrusted fact from the same table. ``origin`` says whose words the
fact comes from: the kernel's verifier log, libbpf's log, or the agent's own knowledge (which the
agent emits directly rather than writing it as prose for the host to parse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from .validate import TEXT_MAX, Max, WireError, check_value, kind

Origin = Literal["kernel", "libbpf", "agent"]
FACTS_MAX = 256  # facts on one program or object (each code is sent at most a few times)
FACT_REPEAT_MAX = 16  # occurrences of one code kept by textfacts (the host reads the first ones)


@dataclass(frozen=True)
class FactDef:
    """One code: its parameters (name -> type, ``str | None`` when it may be absent), whose words
    it comes from, and what it means."""

    code: str
    params: dict[str, Any]
    origin: Origin
    doc: str


_S = str
_OS = str | None
_TEXT = Annotated[str, Max(TEXT_MAX)]  # a line of a log, not a short name

FACTS: dict[str, FactDef] = {
    d.code: d
    for d in (
        # -- the object cannot be opened ----------------------------------------------------------
        FactDef("legacy_maps", {"relocation": _TEXT}, "libbpf",
                "maps in legacy 'maps/...' sections: libbpf's 'bad map relo against ...' line"),
        FactDef("legacy_unsupported", {"kind": _S, "error": _OS, "map": _OS, "size": int | None, "program": _OS,
                                       "target": _OS, "section": _OS}, "agent",
                "the agent's legacy-map loader cannot load the object either, and why (kind: malformed_elf "
                "(error), not_elf64le, core_relocations, mixed_maps, map_definition_size (map, size), "
                "foreign_reference (program, target, section))"),
        FactDef("linked_extern", {"section": _OS, "name": _OS}, "libbpf",
                "an extern another BPF object defines: an extern section, or a BTF extern name"),
        # -- the program's type ---------------------------------------------------------------------
        FactDef("no_prog_type", {"section": _S}, "libbpf", "libbpf cannot tell the program type from the section"),
        FactDef("unknown_type_option", {"section": _S, "libbpf": _S}, "agent",
                "--program-type names a section this libbpf does not know"),
        # -- kfuncs and externs -----------------------------------------------------------------------
        FactDef("missing_extern", {"name": _S, "kind": _S}, "libbpf",
                "libbpf found no kernel symbol for an extern (kind: func ksym, var ksym, kcfg)"),
        FactDef("kfunc_unresolved", {"name": _S}, "libbpf",
                "a weak kfunc libbpf could not resolve, whose call it poisoned (and the verifier refused)"),
        FactDef("poisoned_kfunc_call", {}, "libbpf", "the verifier refused a poisoned call to an unnamed weak kfunc"),
        FactDef("incompatible_kfunc", {"kfunc": _S, "proto": _S}, "libbpf",
                "a kfunc the kernel declares with another prototype (proto: the kernel's module or vmlinux)"),
        FactDef("no_kfunc_calls", {}, "kernel", "the kernel refuses any kfunc call instruction (before 5.13)"),
        FactDef("kfunc_not_allowed", {"kfunc": _S}, "kernel", "the kernel does not allow this kfunc here"),
        FactDef("ksym_unresolved", {"name": _S}, "libbpf", "a strong typeless or variable __ksym the kernel lacks"),
        # -- struct_ops -----------------------------------------------------------------------------
        FactDef("struct_ops_sibling", {"map": _S, "program": _S}, "agent",
                "not verified: the struct_ops map cannot be created without another, rejected, program"),
        FactDef("struct_ops_map_failed", {"map": _S}, "agent", "not verified: its struct_ops map could not be created"),
        FactDef("struct_ops_unused", {"referenced": bool}, "agent",
                "no struct_ops map uses the program (referenced: its section asks libbpf to load it anyway, "
                "libbpf's 'program isn't referenced anywhere')"),
        FactDef("struct_ops_no_type", {"type": _S}, "libbpf", "the kernel's BTF has no such struct_ops struct"),
        FactDef("struct_ops_no_member", {"map": _S, "member": _S}, "libbpf",
                "the kernel's struct lacks a member the map sets"),
        FactDef("struct_ops_mismatch", {"map": _S, "member": _S, "line": _TEXT}, "libbpf",
                "a member differs from the kernel's (type, size, bitfield): libbpf's whole line"),
        # -- instructions, BTF, targets -----------------------------------------------------------------
        FactDef("unknown_insn", {"insn": _S, "atomic": bool}, "kernel",
                "an instruction the verifier does not know (atomic: an atomic operation, -mcpu=v3)"),
        FactDef("core_relocation_failed", {"target": _OS}, "libbpf",
                "a CO-RE relocation libbpf could not resolve (target: the type or field, when named)"),
        FactDef("no_btf", {}, "libbpf", "the kernel has no BTF"),
        FactDef("no_target_program", {}, "libbpf", "an freplace-like program whose target program is not set"),
        FactDef("no_target_named", {}, "libbpf", "a tracing section without a target name"),
        FactDef("attach_target_missing", {"target": _S}, "libbpf",
                "the kernel's BTF has no such attach target (also the agent's --attach-target retarget failure)"),
        FactDef("no_argument", {"func": _S, "n": int}, "kernel", "the kernel's function has no n-th argument"),
        FactDef("unsupported_member", {"member": _S, "struct": _S}, "kernel",
                "the struct_ops type refuses a BPF implementation of this member"),
        FactDef("no_sleepable_type", {"types": _S}, "kernel", "only these program types can be sleepable"),
        FactDef("not_sleepable", {"target": _S}, "kernel", "the attach target takes no sleepable programs"),
        FactDef("too_complex", {"processed": int | None}, "kernel",
                "the verifier gave up on complexity (processed: insns processed, as the text says)"),
        # -- maps -------------------------------------------------------------------------------------------
        FactDef("map_referenced", {"map": _S}, "libbpf", "the program references a map libbpf did not create"),
        FactDef("map_create_failed", {"map": _S, "detail": _OS}, "libbpf",
                "libbpf could not create a map (detail: what follows 'failed to create: ', when said)"),
        FactDef("inner_map_failed", {"map": _S}, "libbpf", "the map's inner map failed to create"),
        FactDef("inner_map_mentioned", {}, "libbpf", "the texts speak of an inner map"),
        FactDef("map_mentioned", {"map": _S}, "libbpf", "the texts name one of the object's maps (quoted)"),
        FactDef("insns_processed", {"insns": int}, "kernel",
                "the first 'processed N insns' of the texts (what a complexity message quotes)"),
        FactDef("verifier_ran", {}, "kernel", "the verifier ran on the program itself (its log is not empty)"),
        # -- privilege (--privilege caps|unprivileged) -----------------------------------------------------
        FactDef("not_permitted", {"privilege": _S, "map": _OS, "map_type": _OS, "target": _OS, "module": _OS},
                "agent", "the kernel refused with EPERM under a reduced privilege: the program's type, or (map) the "
                "creation of that map, needs capabilities the privilege does not hold; or (target, module) the "
                "attach target is in a module whose BTF only CAP_SYS_ADMIN may look up (BPF_BTF_GET_NEXT_ID)"),
        # -- the verifier's own verdict line -----------------------------------------------------------------
        FactDef("verifier_error", {"line": _TEXT}, "kernel",
                "the verifier's error: the last line of its log that is not a statistic"),
    )
}  # fmt: skip

Fact = dict[str, Any]  # {"code": ..., **params}


def fact(code: str, **params: Any) -> Fact:
    """A fact of a known code (its parameters checked against the table)."""
    made = {"code": code, **params}
    check_fact(made, code)
    return made


def check_fact(value: Any, where: str = "fact") -> None:
    """Check one untrusted fact against the table: a known code, its parameters of their types
    (absent optional ones allowed, extra ones ignored)."""
    if not isinstance(value, dict):
        raise WireError(where, f"expected an object, got {kind(value)}")
    code = value.get("code")
    check_value(str, code, f"{where}.code")
    found = FACTS.get(code)  # type: ignore[arg-type]
    if found is None:
        raise WireError(f"{where}.code", f"unknown fact code {str(code)[:40]!r}")
    for name, tp in found.params.items():
        if name not in value:
            if tp in (_OS, int | None):
                continue
            raise WireError(f"{where}.{name}", "missing")
        check_value(tp, value[name], f"{where}.{name}")


def check_facts(value: Any, where: str) -> None:
    """Check a list of untrusted facts (bounded)."""
    if not isinstance(value, list):
        raise WireError(where, f"expected a list, got {kind(value)}")
    if len(value) > FACTS_MAX:
        raise WireError(where, f"list of {len(value)} items (at most {FACTS_MAX})")
    for i, f in enumerate(value):
        check_fact(f, f"{where}[{i}]")
