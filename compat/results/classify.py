"""Why a program was rejected: one class from a small stable set, and the reason in words.

Read from the facts the guest reports (codes with parameters, see compat_agent.wire.facts: the
guest reads the kernel's and libbpf's own text, where it is, and textfacts.py turns it into
facts), the program record's structured fields, the host's own knowledge (the modules it loaded
first, and for which symbols) and the kernel's probe results; never from text: no regular
expression here, so rewording a message of the agent changes no classification. Kernel and
libbpf messages are sometimes misleading (5.10 reports a missing bpf_loop as "number of funcs in
func_info doesn't match number of subprogs"), so the kernel's probes come first, then the facts.
The raw line is always kept as the detail.
"""

from __future__ import annotations

import collections
import errno as errnos
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from compat_agent.wire.facts import Fact
from compat_agent.wire.features import FEATURES, needs, since

from compat.results.inventory import Inventory, helper_label

# Helpers a kernel allows only to some programs of a type (iterators, sleepable ones): the probe
# tries each type in one flavour (tracing as fentry, not sleepable), so its "absent" is no proof.
# bpf_seq_printf, bpf_seq_write, bpf_copy_from_user, bpf_seq_printf_btf, bpf_copy_from_user_task.
ATTACH_DEPENDENT_HELPERS = frozenset({126, 127, 148, 150, 191})
TESTMOD = "bpf_testmod, the kernel's BPF selftests module, defines it: no distribution kernel ships it"

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Classified:
    """A rejection's class (reason) and its account in words (message), with the helpers (ids) and
    kfuncs (names) it blames as missing or not allowed: their calls locate the rejection in the
    source (objects.sourcemap), so the message is never read back for them."""

    reason: str
    message: str
    helpers: tuple[int, ...] = ()
    kfuncs: tuple[str, ...] = ()


class _Facts:
    """A program's facts (then its object's), looked up by code in the order they were found."""

    def __init__(self, facts: list[Fact]):
        self.all = facts

    def first(self, code: str) -> Fact | None:
        return next((f for f in self.all if f.get("code") == code), None)

    def every(self, *codes: str) -> list[Fact]:
        return [f for f in self.all if f.get("code") in codes]

    def has(self, code: str) -> bool:
        return self.first(code) is not None


def facts_of(program: Record, obj: Record) -> list[Fact]:
    """The facts that bear on a program: its own, then its object's (the open log's)."""
    own = program.get("facts")
    shared = obj.get("facts")
    return [f for f in [*(own if isinstance(own, list) else []), *(shared if isinstance(shared, list) else [])]
            if isinstance(f, dict)]  # fmt: skip


def classify(
    program: Record,
    obj: Record,
    inventory: Inventory | None,
    helper_names: dict[int, str],
    modules: Mapping[str, str] | None = None,
    _sibling: bool = False,
) -> Classified:
    """Classify one rejected program (a guest program record with its facts) on one kernel.
    modules: symbol -> the module the host loaded first because it defines that symbol."""
    prog_type = program.get("prog_type")
    stage = program.get("stage")
    code = program.get("errno")
    facts = _Facts(facts_of(program, obj))
    inv = inventory or Inventory()

    if stage == "open":
        legacy = facts.first("legacy_maps")
        if legacy:
            what = (
                "it defines maps in legacy 'maps/...' sections (struct bpf_map_def), which libbpf 1.0 and later "
                f"do not support: {legacy['relocation']}"
            )
            unsupported = facts.first("legacy_unsupported")
            if unsupported:
                what += f" (compat's legacy-map loader cannot load it either: {_legacy_unsupported(unsupported)})"
            return Classified("object_error", f"libbpf cannot parse this object: {what}")
        linked = facts.first("linked_extern")
        if linked:
            what = (
                f"extern maps (section '{linked['section']}')"
                if linked.get("section")
                else f"extern '{linked['name']}'"
            )
            return Classified(
                "object_error",
                f"libbpf cannot load this object alone: it declares {what}, defined in another BPF object; link "
                "them first (bpftool gen object linked.o a.bpf.o b.bpf.o) and check the linked object",
            )
        return Classified("object_error", f"libbpf cannot parse this object: {_first(program, obj)}")

    # Before the prog type probes: "unspec" is no kernel's type, the object just does not say.
    option = facts.first("unknown_type_option")
    if option:  # --program-type named a section libbpf does not know
        return Classified(
            "object_error",
            f"--program-type names section '{option['section']}', which libbpf {option['libbpf']} does not know "
            "(a section name such as tc, xdp or lwt_xmit)",
        )
    untyped = facts.first("no_prog_type")
    if untyped or prog_type == "unspec":
        section = untyped["section"] if untyped else program.get("section")
        where = f"section '{section}'" if section else "its section name"
        what = (
            f"libbpf cannot tell the program type from {where} and its context argument does not tell it either: "
            f"its loader sets it (bpf_program__set_type); --program-type '{section or program.get('program')}=TYPE' "
            "checks it as one (tc, xdp, lwt_xmit, ...)"
        )
        return Classified("object_error", what)

    if prog_type and inv.prog_types.get(prog_type) is False:
        return Classified("unsupported_prog_type", f"program type {prog_type} is not supported by this kernel")
    refused = facts.first("not_permitted")  # --privilege caps|unprivileged: EPERM for what the mode lacks
    if refused:
        from .privilege import not_permitted_words

        return Classified("not_permitted", not_permitted_words(refused, prog_type))

    # Helpers first: the verifier's message for a missing helper can be misleading.
    missing = [
        h
        for h in program.get("helpers") or []
        if h not in ATTACH_DEPENDENT_HELPERS and inv.helper_available(prog_type, h) is False
    ]
    if missing:
        labels = f"helper{'s' if len(missing) > 1 else ''} " + ", ".join(helper_label(h, helper_names) for h in missing)
        anywhere = inv.all_helpers()
        if all(h not in anywhere for h in missing):
            return Classified("missing_helper", f"{labels} {_is(missing)} not available on this kernel", tuple(missing))
        what = f"{labels} {_is(missing)} not available to {prog_type} programs on this kernel"
        return Classified("missing_helper", what, tuple(missing))

    kfunc = _kfunc_problem(program, obj, inv, facts, prog_type)
    if kfunc:
        return kfunc

    struct_ops = _struct_ops_problem(obj, inv, facts, helper_names, modules, _sibling)
    if struct_ops:
        return struct_ops

    insn = facts.first("unknown_insn")
    if insn:
        feature = FEATURES["atomics_v3" if insn["atomic"] else "cpu_v4"]
        needed = f"{feature.what} {feature.need} Linux {feature.since}"
        what = f"this kernel does not know an instruction of the program ({insn['insn']}): {needed}"
        return Classified("unsupported_instruction", f"{what}; build with a lower -mcpu for older kernels")

    verified = facts.has("verifier_ran")
    mentioned = {f.get("map") for f in facts.every("map_mentioned")}
    for m in obj.get("maps") or []:
        # A map that failed blames the programs that never reached the verifier (libbpf stops the
        # object at the map) or that name it; others were verified without it and failed on their own.
        if m.get("ok") is False and (not verified or m.get("name") in mentioned):
            mtype = m.get("type")
            if mtype and inv.map_types.get(mtype) is False:
                what = f"map type {mtype} (map {m.get('name')}) is not supported by this kernel"
                return Classified("unsupported_map_type", what)
    uncreated = _map_problem(obj, facts)
    if uncreated:
        return uncreated

    core = facts.first("core_relocation_failed")
    if core:
        what = core.get("target") or "a type or field"
        return Classified("core_relocation", f"CO-RE relocation failed: {what} does not exist on this kernel")

    if facts.has("no_btf"):
        return Classified("missing_btf", "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF) that this object needs")

    if facts.has("no_target_program"):
        what = (
            f"program {program.get('program')} replaces or traces a function of another BPF program, which its "
            "loader loads first and names (bpf_program__set_attach_target): it cannot be verified on its own "
            "(an freplace program whose context argument names its type is checked as that type; "
            f"--program-type '{program.get('program')}=TYPE' names one)"
        )
        return Classified("object_error", what)
    if facts.has("no_target_named"):
        what = (
            f"the section of program {program.get('program')} names no attach target: its loader names one at run "
            "time (bpf_program__set_attach_target), so it cannot be verified on its own"
        )
        return Classified("object_error", what)

    ksym = facts.first("ksym_unresolved")
    if ksym and stage == "prepare" and any(e.get("name") == ksym["name"] for e in obj.get("externs") or []):
        name = ksym["name"]
        module = f" ({TESTMOD})" if "testmod" in name else ""
        what = f"kernel symbol {name} (a __ksym extern of the object) does not exist on this kernel{module}"
        return Classified("missing_attach_target", f"{what}: libbpf fails the whole object")

    target_fact = facts.first("attach_target_missing")
    if target_fact and stage in ("prepare", "load"):
        target = target_fact["target"]
        owner = (modules or {}).get(target)
        if owner:  # the host loaded the module that defines it: its BTF is what is missing
            btf = FEATURES["module_btf"]
            return Classified(
                "missing_attach_target",
                f"attach target {target} is in module {owner}, and this kernel has no BTF for module "
                f"functions ({btf.what}: Linux {btf.since} and later, {', '.join(btf.config)})",
            )
        return Classified("missing_attach_target", f"attach target {target} does not exist on this kernel")

    arg = facts.first("no_argument")
    if arg:  # the kernel's prototype of the function (or struct_ops callback) has fewer arguments
        func, n = arg["func"], arg["n"]
        what = f"{func} takes fewer than {n} arguments on this kernel, and the program reads argument {n}"
        return Classified("missing_attach_target", f"{what} (it was written for another kernel's prototype)")

    member = facts.first("unsupported_member")
    if member:  # the struct_ops type refuses this callback (its check_member), at least for such a program
        what = f"this kernel does not let BPF implement {member['member']} of struct {member['struct']}"
        return Classified("missing_attach_target", f"{what} (not at all, or not with this program, e.g. sleepable)")

    sleepable = facts.first("no_sleepable_type")
    if sleepable:
        what = (
            f"this kernel takes no sleepable {prog_type} programs (only {sleepable['types']} programs can be sleepable)"
        )
        return Classified("missing_attach_target", what)

    not_sleepable = facts.first("not_sleepable")
    if (
        not_sleepable
    ):  # a fact of the kernel's build (Debian's lack CONFIG_FUNCTION_ERROR_INJECTION), not of the program
        return Classified(
            "missing_attach_target",
            f"attach target {not_sleepable['target']} takes no sleepable programs on this kernel: a sleepable fentry/"
            "fexit/fmod_ret needs a function on the kernel's sleepable list or one open to error injection "
            "(CONFIG_FUNCTION_ERROR_INJECTION)",
        )

    complex_ = facts.first("too_complex")
    if code == errnos.E2BIG or complex_:
        insns = facts.first("insns_processed")
        processed = complex_.get("processed") if complex_ else insns.get("insns") if insns else None
        more = f" (processed {processed:,} insns)" if isinstance(processed, int) else ""
        return Classified("complexity_limit", f"the verifier gave up: the program is too complex{more}")

    if stage == "prepare":
        return Classified("object_error", f"libbpf could not prepare the object: {_first(program, obj)}")

    error = facts.first("verifier_error")
    line = error["line"] if error else str(program.get("message") or "no log")
    return Classified("verifier_rejection", f"the verifier rejected the program: {line}")


def _kfunc_problem(
    program: Record, obj: Record, inv: Inventory, facts: _Facts, prog_type: str | None
) -> Classified | None:
    externs = [e for e in obj.get("externs") or [] if e.get("kind") == "kfunc"]
    # Named by the facts: libbpf could not resolve them (in order, without repeats).
    named = facts.every("missing_extern", "kfunc_unresolved")
    unresolved = list(dict.fromkeys(f["name"] for f in named))
    weak_calls = list(dict.fromkeys(f["name"] for f in named if f["code"] == "kfunc_unresolved"))  # call poisoned
    missing = [e["name"] for e in externs if e["name"] in unresolved or _absent(e["name"], inv)]
    missing += [k for k in unresolved if k not in missing]
    mine = set(program.get("kfuncs") or [])
    incompatible = facts.first("incompatible_kfunc")
    if incompatible and program.get("stage") == "prepare":  # a strong extern: libbpf fails the whole object
        what = (
            f"kfunc {incompatible['kfunc']} has another prototype on this kernel ({incompatible['proto']}) than the "
            "object declares"
        )
        return Classified("missing_kfunc", f"{what} (libbpf fails the whole object)")
    if missing and program.get("stage") == "prepare":
        # A strong kfunc extern that libbpf could not resolve fails the whole object.
        own = [k for k in missing if k in mine]
        if own:
            what = f"{_kfuncs(own)} {_is(own)} not available on this kernel"
            return Classified("missing_kfunc", what, kfuncs=tuple(own))
        what = f"the object needs {_kfuncs(missing)}, which this kernel lacks (libbpf fails the whole object)"
        return Classified("missing_kfunc", what, kfuncs=tuple(missing))
    if weak_calls and program.get("stage") == "load":
        # Only a weak kfunc gets this far unresolved: libbpf poisons the call and the verifier refuses it.
        return Classified("missing_kfunc", _unguarded(weak_calls), kfuncs=tuple(weak_calls))
    if facts.has("poisoned_kfunc_call"):
        weak = [e["name"] for e in externs if e.get("weak") and (not mine or e["name"] in mine)]
        absent = [k for k in weak if _absent(k, inv)] or weak
        return Classified("missing_kfunc", _unguarded(absent), kfuncs=tuple(absent))
    if mine and facts.has("no_kfunc_calls"):
        what = (
            f"this kernel cannot call kfuncs (Linux {since('kfunc_calls')} and later can): the program calls "
            f"{', '.join(sorted(mine))}"
        )
        return Classified("missing_kfunc", what)
    allowed = facts.first("kfunc_not_allowed")
    if allowed and allowed["kfunc"] in mine:  # for the program types the probe does not load (struct_ops, ext)
        return Classified(
            "missing_kfunc",
            f"kfunc {allowed['kfunc']} is not allowed in {prog_type} programs on this kernel",
            kfuncs=(allowed["kfunc"],),
        )
    for name in sorted(mine):
        # A kfunc the kernel lacks is "not allowed" in every program type: that is not the reason.
        if name in unresolved or _absent(name, inv):
            continue
        if inv.kfunc_allowed.get(name, {}).get(prog_type or "") is False:
            what = f"kfunc {name} is not allowed in {prog_type} programs on this kernel"
            return Classified("missing_kfunc", what, kfuncs=(name,))
    return None


def _struct_ops_problem(
    obj: Record,
    inv: Inventory,
    facts: _Facts,
    helper_names: dict[int, str],
    modules: Mapping[str, str] | None,
    sibling: bool,
) -> Classified | None:
    """A struct_ops program the agent could not verify because of its map, or a struct_ops map libbpf
    could not match to the kernel's struct: the real cause, in words."""
    unused = facts.every("struct_ops_unused")
    if unused:  # the object's own doing, on any kernel
        what = "no struct_ops map of the object uses this struct_ops program (libbpf loads one only for its maps)"
        if any(f.get("referenced") for f in unused):  # SEC("struct_ops/<name>") asks for it to be loaded all the same
            what += ", and its section asks libbpf to load it: that fails the whole object unless the loader turns "
            what += "it off (bpf_program__set_autoload)"
        return Classified("object_error", what)
    so_sibling = facts.first("struct_ops_sibling")
    if so_sibling and not sibling:  # the map needs every program it names: the rejected one is the cause
        name, culprit = so_sibling["map"], so_sibling["program"]
        programs = [p for p in obj.get("programs") or [] if isinstance(p, dict)]
        record = next((p for p in programs if p.get("program") == culprit and p.get("verdict") == "rejected"), None)
        if record is not None:
            c = classify(record, obj, inv, helper_names, modules, _sibling=True)
            what = f"not verified: struct_ops map {name} cannot be created without {culprit}, which this kernel rejects"
            return Classified(c.reason, f"{what}: {c.message}", c.helpers, c.kfuncs)
    no_type = facts.first("struct_ops_no_type")
    if no_type:
        tname = str(no_type["type"]).removeprefix("bpf_struct_ops_")
        return Classified(
            "missing_attach_target", f"struct_ops type {tname} does not exist on this kernel{_needs(tname)}"
        )
    no_member = facts.first("struct_ops_no_member")
    if no_member:
        name, member = no_member["map"], no_member["member"]
        what = (
            f"struct_ops map {name} sets {member}, which this kernel's struct {_struct_ops(obj, name)['type']} "
            "does not have (libbpf leaves out a member the kernel lacks only when the object leaves it NULL or zero)"
        )
        return Classified("missing_attach_target", what)
    mismatch = facts.first("struct_ops_mismatch")
    if mismatch:
        name, member = mismatch["map"], mismatch["member"]
        what = f"member {member} of struct {_struct_ops(obj, name)['type']} differs on this kernel ({mismatch['line']})"
        return Classified("missing_attach_target", what)
    failed = facts.first("struct_ops_map_failed")
    link = failed and _struct_ops(obj, failed["map"])["link"] and inv.features.get("struct_ops_link") is False
    if failed and link and inv.map_types.get("struct_ops") is not False:  # else the map type is the reason
        what = (
            f'struct_ops map {failed["map"]} is declared SEC(".struct_ops.link"), which creates it with BPF_F_LINK '
            f"to attach it as a BPF link: that needs Linux {since('struct_ops_link')} or later "
            '(SEC(".struct_ops") works on older kernels)'
        )
        return Classified("unsupported_map_type", what)
    return None


def _struct_ops(obj: Record, name: str) -> dict[str, Any]:
    """What the guest says of a struct_ops map of the object: its kernel struct and whether it has BPF_F_LINK."""
    for m in obj.get("maps") or []:
        so = m.get("struct_ops") if isinstance(m, dict) and m.get("name") == name else None
        if isinstance(so, dict):
            tname = so.get("type")
            return {"type": tname[:200] if isinstance(tname, str) else "?", "link": so.get("link") is True}
    return {"type": "?", "link": False}


def _needs(tname: str) -> str:
    """What a struct_ops type the kernel lacks needs, when it is a known one."""
    known = FEATURES.get(tname)
    if known is not None and known.kind == "struct_ops":
        return f" ({needs(tname)})"
    if tname.startswith("bpf_testmod"):
        return f" ({TESTMOD})"
    return " (not in the BTF of the kernel or of a loaded module)"


def _unguarded(names: list[str]) -> str:
    what = _kfuncs(names) if names else "a weak kfunc"
    return f"{what} {_is(names)} not available on this kernel and the call is not guarded by bpf_ksym_exists()"


def _map_problem(obj: Record, facts: _Facts) -> Classified | None:
    """A map the program uses that libbpf could not create (the program itself was never the problem)."""
    found = facts.first("map_referenced") or facts.first("map_create_failed")
    if not found:
        return None
    name = str(found["map"])
    outer = name.removesuffix(".inner")  # libbpf names an object-defined inner map after its outer map
    record: Record = next((r for r in obj.get("maps") or [] if r.get("name") == outer), {})
    detail = next(
        (f["detail"] for f in facts.every("map_create_failed") if f["map"] == name and f.get("detail") is not None),
        None,
    )
    if detail is not None:
        why = f" (failed to create: {detail})"
    elif isinstance(record.get("errno"), int) and record["errno"]:
        code = abs(record["errno"])
        why = f" (failed to create: {os.strerror(code)}(-{code}))"
    else:
        why = ""
    if name != outer or any(f["map"] == outer for f in facts.every("inner_map_failed")):
        # The object defines the inner map itself (__array(values, ...)) and that one failed.
        what = f"map {outer} could not be created: its inner map failed to create{why}, so the program cannot load"
    elif facts.has("inner_map_mentioned") or str(record.get("type")) in ("hash_of_maps", "array_of_maps"):
        # A map of maps without an inner map in the object: its loader supplies one before loading.
        what = (
            f"map {outer} could not be created{why}: it is a map of maps whose inner map its loader must supply "
            "at run time (bpf_map__set_inner_map_fd), so the program cannot load here"
        )
    else:
        what = f"map {name} could not be created{why}, so the program cannot load"
    return Classified("object_error", what)


# Why compat's legacy-map loader cannot load an object either, by the legacy_unsupported fact's kind.
LEGACY_UNSUPPORTED = {
    "malformed_elf": "its ELF file is malformed ({error})",
    "not_elf64le": "not a 64-bit little-endian ELF file",
    "core_relocations": "it also has CO-RE relocations, which need libbpf 1.x",
    "mixed_maps": "it defines maps both the legacy way and in a BTF '.maps' section",
    "map_definition_size": "map '{map}' has a definition of {size} bytes",
    "foreign_reference": "program '{program}' refers to {target} in {section}, beyond legacy maps",
}


def _legacy_unsupported(fact: dict[str, Any]) -> str:
    """The legacy_unsupported fact in words (a kind this host does not know: said as such)."""
    template = LEGACY_UNSUPPORTED.get(fact["kind"])
    if template is None:
        return f"reason {fact['kind']!r}"
    return template.format_map(collections.defaultdict(lambda: "?", fact))


def _absent(kfunc: str, inv: Inventory) -> bool:
    """Known to be missing: looked up by name in the kernel's BTF and not found."""
    return kfunc in inv.kfuncs_checked and kfunc not in inv.kfuncs


def _kfuncs(names: list[str]) -> str:
    return f"kfunc{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _is(names: list[Any]) -> str:
    return "are" if len(names) > 1 else "is"


def _first(program: Record, obj: Record) -> str:
    msg = program.get("message") or (obj.get("open") or {}).get("message") or "no message"
    return str(msg).strip().splitlines()[0][:300] if str(msg).strip() else "no message"


def _errno_name(err: Any) -> str | None:
    """An errno as its symbol (EINVAL), or its number when it has none; None when absent."""
    if not isinstance(err, int) or isinstance(err, bool) or not err:
        return None
    return errnos.errorcode.get(abs(err), str(abs(err)))


def uncreated_maps(reply: Record) -> list[dict[str, Any]]:
    """The maps of a check reply the kernel could not create (even those no program uses): name,
    type, the upstream release that brought the type (None when the feature table has no entry)
    and errno."""
    out = []
    for m in reply.get("maps") or []:
        if not isinstance(m, Mapping) or m.get("ok") is not False:
            continue
        kind = str(m.get("type")) if m.get("type") is not None else None
        feature = FEATURES.get(kind or "")
        out.append({
            "name": str(m.get("name")),
            "type": kind,
            "since": feature.since if feature is not None and feature.kind == "map_type" else None,
            "errno": m.get("errno") if isinstance(m.get("errno"), int) else None,
        })  # fmt: skip
    return out


def map_words(m: Mapping[str, Any]) -> str:
    """An uncreated map in words: "map arena (arena, Linux 6.9): EINVAL"."""
    inside = ", ".join(str(x) for x in (m.get("type"), f"Linux {m['since']}" if m.get("since") else None) if x)
    err = _errno_name(m.get("errno"))
    return f"map {m.get('name')}" + (f" ({inside})" if inside else "") + (f": {err}" if err else "")


def object_load(reply: Record, program_messages: Mapping[str, str | None]) -> dict[str, Any] | None:
    """The object-level verdict of a check reply (the object as shipped: bpf_object__load with every
    program and map as declared), with the reason in words and the maps the kernel could not
    create; None when the agent did not say (an older agent, the legacy-map loader).
    program_messages: each program's classified message (the words of a program that failed it)."""
    record = reply.get("object_load")
    if not isinstance(record, Mapping) or not isinstance(record.get("ok"), bool):
        return None
    maps = uncreated_maps(reply)
    out: dict[str, Any] = {"loads": record["ok"]}
    if not record["ok"]:
        stage, name = record.get("stage"), record.get("name")
        err = _errno_name(record.get("errno"))
        if stage == "map":
            m = next((m for m in maps if m["name"] == name), None)
            m = m or {"name": name, "type": None, "since": None, "errno": record.get("errno")}
            why = map_words(m)
        elif stage == "program":
            said = program_messages.get(str(name))
            said = said.strip().splitlines()[0][:300] if said and said.strip() else None
            why = f"program {name}" + (f": {said}" if said else (f": {err}" if err else ""))
        else:
            why = str(record.get("message") or err or "the object failed to load")
        out.update(stage=stage, name=name, errno=record.get("errno"), reason=why)
    if maps:
        out["maps"] = maps
    return out


def object_load_words(load: Mapping[str, Any] | None, program: str | None = None) -> str | None:
    """What the cell of `program` says of an object that does not load as shipped ("object does
    not load: map arena (arena, Linux 6.9): EINVAL"); None when it loads, nothing is known, or the
    program is the one whose rejection failed the object (its cell says that already). Without a
    program: the words for the object as a whole, None when a program's rejection failed it (that
    program's own finding says it)."""
    if not isinstance(load, Mapping) or load.get("loads") is not False:
        return None
    if load.get("stage") == "program" and (program is None or load.get("name") == program):
        return None
    return f"object does not load: {load.get('reason') or 'unknown reason'}"


# The kinds of kernel splats the agent reports (compat_agent/checker/kmsg.py's table), in words.
WARNING_KINDS = {
    "reg_invariants": "verifier bug (REG INVARIANTS VIOLATION)",
    "verifier_bug": "verifier bug",
    "kasan": "KASAN report",
    "ubsan": "UBSAN report",
    "lockdep": "lockdep report",
    "bug": "BUG",
    "warning": "WARNING",
}


def kernel_warnings(reply: Record) -> list[dict[str, Any]] | None:
    """The splats the kernel logged while the object was checked (a validated reply's
    kernel_warnings: {kind, lines}), None when it logged none."""
    found = [
        {"kind": str(w["kind"]), "lines": [str(line) for line in w.get("lines") or []]}
        for w in reply.get("kernel_warnings") or []
        if isinstance(w, Mapping) and w.get("kind") in WARNING_KINDS
    ]
    return found or None


def warning_words(warnings: list[Mapping[str, Any]] | None) -> str | None:
    """What a cell says of a check during which the kernel warned ("the kernel warned: verifier bug
    (REG INVARIANTS VIOLATION): verifier bug: REG INVARIANTS VIOLATION (false_reg1): …"); None when
    it did not."""
    if not warnings:
        return None
    first = warnings[0]
    lines = [str(line).strip() for line in first.get("lines") or [] if "[ cut here ]" not in str(line)]
    said = WARNING_KINDS.get(str(first.get("kind")), "WARNING")
    more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return f"the kernel warned: {said}" + (f": {lines[0][:200]}" if lines else "") + more


def object_findings(results: list[Any]) -> list[tuple[str, str, str, str]]:
    """The findings of whole objects on kernels, once per object, kernel and kind, in result
    order: (object, kernel, kind, words), kind "object_load" (the object as shipped does not load),
    "kernel_warning" (the kernel warned during its check) or "pt_regs" (built for another
    architecture's pt_regs than the kernel's). results: ProgramResults."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for r in results:
        for kind, words in (("object_load", object_load_words(r.object_load)),
                            ("kernel_warning", warning_words(r.kernel_warnings)),
                            ("pt_regs", getattr(r, "pt_regs", None))):  # fmt: skip
            if words and (r.object, r.kernel, kind) not in seen:
                seen.add((r.object, r.kernel, kind))
                out.append((r.object, r.kernel, kind, words))
    return out
