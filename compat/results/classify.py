"""Why a program was rejected: one class from a small stable set, and the reason in words.

Kernel and libbpf messages are worded differently across versions and are sometimes
misleading (5.10 reports a missing bpf_loop as "number of funcs in func_info doesn't match
number of subprogs"), so the kernel's probe results come first and the text is parsed
loosely second. The raw line is always kept as the detail.
"""

from __future__ import annotations

import errno as errnos
import os
import re
from dataclasses import dataclass

from compat_agent.wire.verifierlog import error_line

from .inventory import Inventory, helper_label

# libbpf marks calls to unresolved weak kfuncs and failed CO-RE relocations with these (the
# guest agent rewords the kfunc one when it cannot tell which kfunc it is).
_POISON_KFUNC = re.compile(r"unknown#20020000\d\d|calls a kfunc this kernel does not have")
_POISON_CORE = re.compile(r"unknown#195896080|failed to resolve CO-RE relocation|CO-RE relocating .* failed")
_CORE_TARGET = re.compile(
    r"failed to resolve CO-RE relocation <[^>]*> \[\d+\] (?:(?:struct|union|enum|typedef) )?([\w.:]+)"
)
# libbpf's own words, and the guest agent's rewording of the second (a weak kfunc, at load).
_MISSING_EXTERN = re.compile(
    r"extern \((?:func ksym|var ksym|kcfg)\) '(\w+)': not found|kfunc '(\w+)' is referenced but wasn't resolved|"
    r"calls kfunc '(\w+)', which this kernel does not have"
)
_ATTACH_TARGET = re.compile(
    r"failed to find kernel BTF type ID of '(\w+)'|Failed to find BTF for ['\"]?(\w+)|attach_btf_id.*?(\w+)"
)
_MAP_CREATE = re.compile(r"map '([\w.]+)': failed to create")
# An freplace program (or one attached to a BPF program) whose loader did not name its target.
_NO_TARGET_PROGRAM = re.compile(r"attach program FD is not set")
# A tracing/freplace section without a target name: the loader names one at run time.
_NO_TARGET_NAMED = re.compile(r"no BTF-based attach target is specified")
# A typeless or variable __ksym extern (a kernel symbol's address) that the kernel lacks.
_KSYM_UNRESOLVED = re.compile(r"extern '(\w+)' \(strong\): not resolved")
# libbpf 1.5 poisons the references to a map it did not create and says so in the verifier log.
_MAP_REFERENCED = re.compile(r"BPF map '([\w.]+)' is referenced but wasn't created")
_NO_PROG_TYPE = re.compile(r"missing BPF prog type, check ELF section name '([^']*)'")
# libbpf 1.0 dropped struct bpf_map_def maps; in 'maps/<name>' sections (gobpf, iproute2)
# they only show up as relocations against a section libbpf does not know as a map section.
_LEGACY_MAP_RELO = re.compile(r"bad map relo against '[^']*' in section 'maps/[^']*'")
# The agent's own legacy-map loader (legacy.py) could not load the object either, and says why.
_LEGACY_UNSUPPORTED = re.compile(r"compat's legacy-map loader cannot load it either: [^)\n]*")
# Externs that neither the kernel (__ksym) nor its config (__kconfig) resolve: another BPF
# object defines them, and bpftool gen object (libbpf's static linker) joins the two.
_LINKED_EXTERN = re.compile(r"unrecognized extern section '([^']+)'|failed to find BTF for extern '([^']+)'")
_UNKNOWN_FUNC = re.compile(r"(?:invalid func|unknown func) (?:unknown#)?(\w+)#?(\d+)?")
# Helpers a kernel allows only to some programs of a type (iterators, sleepable ones): the probe
# tries each type in one flavour (tracing as fentry, not sleepable), so its "absent" is no proof.
# bpf_seq_printf, bpf_seq_write, bpf_copy_from_user, bpf_seq_printf_btf, bpf_copy_from_user_task.
ATTACH_DEPENDENT_HELPERS = frozenset({126, 127, 148, 150, 191})
_NOT_SLEEPABLE = re.compile(r"^(\S+) is not sleepable$", re.M)
_COMPLEXITY = re.compile(
    r"BPF program is too large|too many states|sequence of \d+ jumps is too complex|"
    r"processed \d{7,} insns|complexity limit"
)
_NO_BTF = re.compile(r"vmlinux BTF is not found|failed to find valid kernel BTF|kernel BTF is missing|BTF is required")
# A kernel before 5.13 refuses any kfunc call instruction (src_reg BPF_PSEUDO_KFUNC_CALL) with this.
_NO_KFUNC_CALLS = re.compile(r"BPF_CALL uses reserved fields")
# An instruction the kernel's verifier does not know: newer instruction sets (clang -mcpu=v3, v4).
_UNKNOWN_INSN = re.compile(
    r"\b(BPF_(?!CALL)\w+) uses reserved fields|unknown opcode [0-9a-f]+|BPF_ATOMIC uses invalid atomic opcode"
)
_KFUNC_NOT_ALLOWED = re.compile(r"calling kernel function (\w+) is not allowed")
# The program reads an argument the kernel's function (or struct_ops callback) does not have.
_NO_ARGUMENT = re.compile(r"func '(\w+)' doesn't have (\d+)-th argument")
_UNSUPPORTED_MEMBER = re.compile(r"attach to unsupported member (\w+) of struct (\w+)")
_NO_SLEEPABLE_TYPE = re.compile(r"Only (.+) programs can be sleepable")
# libbpf resolved a kfunc extern by name, but the kernel declares it with another prototype.
_INCOMPATIBLE_KFUNC = re.compile(r"extern \(func ksym\) '(\w+)': func_proto \[\d+\] incompatible with (\S+) \[")

# struct_ops: what the guest agent says of a program it could not verify because of its map, and
# what libbpf says when it cannot match a struct_ops map to the kernel's struct.
_SO_SIBLING = re.compile(r"its struct_ops map '([\w.]+)' cannot be created without program '(\w+)'")
_SO_FAILED = re.compile(r"its struct_ops map '([\w.]+)' could not be created")
_SO_UNUSED = re.compile(r"a struct_ops program no struct_ops map uses|program isn't referenced anywhere")
_SO_NO_TYPE = re.compile(r"struct_ops init_kern: struct (\w+) is not found in kernel BTF")
_SO_NO_MEMBER = re.compile(r"struct_ops init_kern ([\w.]+): Cannot find member (\w+) in kernel BTF")
_SO_MISMATCH = re.compile(
    r"struct_ops init_kern ([\w.]+): (?:Unmatched member type|Error in size of member|kernel member|bitfield) (\w+)"
)
# struct_ops types users meet on kernels that lack them, and what those need.
TESTMOD = "bpf_testmod, the kernel's BPF selftests module, defines it: no distribution kernel ships it"
STRUCT_OPS_TYPES = {
    "tcp_congestion_ops": "TCP congestion control in BPF needs Linux 5.6 or later",
    "hid_bpf_ops": "HID-BPF needs Linux 6.11 or later, built with CONFIG_HID_BPF",
    "sched_ext_ops": "sched_ext needs Linux 6.12 or later, built with CONFIG_SCHED_CLASS_EXT",
    "Qdisc_ops": "BPF qdiscs need Linux 6.16 or later, built with CONFIG_NET_SCH_BPF",
}


@dataclass(frozen=True)
class Classified:
    reason: str
    message: str


def last_error_line(log: str) -> str | None:
    """The verifier's own error: the last meaningful line before the stats lines (bounded)."""
    line = error_line(log)
    return line[:300] if line else None


def classify(
    program: dict,
    obj: dict,
    inventory: Inventory | None,
    helper_names: dict[int, str],
    _sibling: bool = False,
) -> Classified:
    """Classify one rejected program (a guest program record) on one kernel."""
    prog_type = program.get("prog_type")
    stage = program.get("stage")
    code = program.get("errno")
    text = "\n".join(str(program.get(k) or "") for k in ("message", "libbpf_log", "log"))
    text += "\n" + str((obj.get("open") or {}).get("libbpf_log") or "")
    inv = inventory or Inventory()

    if stage == "open":
        legacy = _LEGACY_MAP_RELO.search(text)
        if legacy:
            what = (
                "it defines maps in legacy 'maps/...' sections (struct bpf_map_def), which libbpf 1.0 and later "
                f"do not support: {legacy.group(0)}"
            )
            unsupported = _LEGACY_UNSUPPORTED.search(text)
            what += f" ({unsupported.group(0)})" if unsupported else ""
            return Classified("object_error", f"libbpf cannot parse this object: {what}")
        linked = _LINKED_EXTERN.search(text)
        if linked:
            what = f"extern maps (section '{linked.group(1)}')" if linked.group(1) else f"extern '{linked.group(2)}'"
            return Classified(
                "object_error",
                f"libbpf cannot load this object alone: it declares {what}, defined in another BPF object; link "
                "them first (bpftool gen object linked.o a.bpf.o b.bpf.o) and check the linked object",
            )
        return Classified("object_error", f"libbpf cannot parse this object: {_first(program, obj)}")

    # Before the prog type probes: "unspec" is no kernel's type, the object just does not say.
    if (program.get("message") or "").startswith("--program-type names"):  # the agent's: an unknown section
        return Classified("object_error", program["message"])
    untyped = _NO_PROG_TYPE.search(text)
    if untyped or prog_type == "unspec":
        section = untyped.group(1) if untyped else program.get("section")
        where = f"section '{section}'" if section else "its section name"
        what = (
            f"libbpf cannot tell the program type from {where} and its context argument does not tell it either: "
            f"its loader sets it (bpf_program__set_type); --program-type '{section or program.get('program')}=TYPE' "
            "checks it as one (tc, xdp, lwt_xmit, ...)"
        )
        return Classified("object_error", what)

    if prog_type and inv.prog_types.get(prog_type) is False:
        return Classified("unsupported_prog_type", f"program type {prog_type} is not supported by this kernel")

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
            return Classified("missing_helper", f"{labels} {_is(missing)} not available on this kernel")
        what = f"{labels} {_is(missing)} not available to {prog_type} programs on this kernel"
        return Classified("missing_helper", what)

    kfunc = _kfunc_problem(program, obj, inv, text, prog_type)
    if kfunc:
        return kfunc

    struct_ops = _struct_ops_problem(program, obj, inv, text, helper_names, _sibling)
    if struct_ops:
        return struct_ops

    m = _UNKNOWN_INSN.search(str(program.get("log") or ""))
    if m:
        atomic = m.group(1) in ("BPF_STX", "BPF_XADD") or "ATOMIC" in m.group(0)
        needs = (
            "atomic operations other than a plain add (fetch-and-add/and/or/xor, xchg, cmpxchg: clang -mcpu=v3) "
            "need Linux 5.12"
            if atomic
            else "sign-extending loads and moves, byte swaps, signed division and long jumps (clang -mcpu=v4) need "
            "Linux 6.6"
        )
        what = f"this kernel does not know an instruction of the program ({m.group(0)}): {needs}"
        return Classified("unsupported_instruction", f"{what}; build with a lower -mcpu for older kernels")

    verified = bool(str(program.get("log") or "").strip())  # the verifier ran on the program itself
    for m in obj.get("maps") or []:
        # A map that failed blames the programs that never reached the verifier (libbpf stops the
        # object at the map) or that name it; others were verified without it and failed on their own.
        if m.get("ok") is False and (not verified or f"'{m.get('name')}'" in text):
            mtype = m.get("type")
            if mtype and inv.map_types.get(mtype) is False:
                what = f"map type {mtype} (map {m.get('name')}) is not supported by this kernel"
                return Classified("unsupported_map_type", what)
    uncreated = _map_problem(obj, text)
    if uncreated:
        return uncreated

    if _POISON_CORE.search(text):
        target = _CORE_TARGET.search(text)
        what = target.group(1) if target else "a type or field"
        return Classified("core_relocation", f"CO-RE relocation failed: {what} does not exist on this kernel")

    if _NO_BTF.search(text):
        return Classified("missing_btf", "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF) that this object needs")

    if _NO_TARGET_PROGRAM.search(text):
        what = (
            f"program {program.get('program')} replaces or traces a function of another BPF program, which its "
            "loader loads first and names (bpf_program__set_attach_target): it cannot be verified on its own "
            "(an freplace program whose context argument names its type is checked as that type; "
            f"--program-type '{program.get('program')}=TYPE' names one)"
        )
        return Classified("object_error", what)
    if _NO_TARGET_NAMED.search(text):
        what = (
            f"the section of program {program.get('program')} names no attach target: its loader names one at run "
            "time (bpf_program__set_attach_target), so it cannot be verified on its own"
        )
        return Classified("object_error", what)

    m = _KSYM_UNRESOLVED.search(text)
    if m and stage == "prepare" and any(e.get("name") == m.group(1) for e in obj.get("externs") or []):
        name = m.group(1)
        module = f" ({TESTMOD})" if "testmod" in name else ""
        what = f"kernel symbol {name} (a __ksym extern of the object) does not exist on this kernel{module}"
        return Classified("missing_attach_target", f"{what}: libbpf fails the whole object")

    m = _ATTACH_TARGET.search(text)
    if m and stage in ("prepare", "load"):
        target = next((g for g in m.groups() if g), "?")
        module = re.search(rf"module (\S+) loaded first: it defines (?:\S+, )*{re.escape(target)}\b", text)
        if module:  # the host loaded the module that defines it: its BTF is what is missing
            return Classified(
                "missing_attach_target",
                f"attach target {target} is in module {module.group(1)}, and this kernel has no BTF for module "
                "functions (module BTF: Linux 5.11 and later, CONFIG_DEBUG_INFO_BTF_MODULES)",
            )
        return Classified("missing_attach_target", f"attach target {target} does not exist on this kernel")

    m = _NO_ARGUMENT.search(text)
    if m:  # the kernel's prototype of the function (or struct_ops callback) has fewer arguments
        func, n = m.group(1), int(m.group(2))
        what = f"{func} takes fewer than {n} arguments on this kernel, and the program reads argument {n}"
        return Classified("missing_attach_target", f"{what} (it was written for another kernel's prototype)")

    m = _UNSUPPORTED_MEMBER.search(text)
    if m:  # the struct_ops type refuses this callback (its check_member), at least for such a program
        what = f"this kernel does not let BPF implement {m.group(1)} of struct {m.group(2)}"
        return Classified("missing_attach_target", f"{what} (not at all, or not with this program, e.g. sleepable)")

    m = _NO_SLEEPABLE_TYPE.search(str(program.get("log") or ""))
    if m:
        what = f"this kernel takes no sleepable {prog_type} programs (only {m.group(1)} programs can be sleepable)"
        return Classified("missing_attach_target", what)

    m = _NOT_SLEEPABLE.search(str(program.get("log") or ""))
    if m:  # a fact of the kernel's build (Debian's lack CONFIG_FUNCTION_ERROR_INJECTION), not of the program
        return Classified(
            "missing_attach_target",
            f"attach target {m.group(1)} takes no sleepable programs on this kernel: a sleepable fentry/fexit/"
            "fmod_ret needs a function on the kernel's sleepable list or one open to error injection "
            "(CONFIG_FUNCTION_ERROR_INJECTION)",
        )

    if code == errnos.E2BIG or _COMPLEXITY.search(text):
        processed = re.search(r"processed (\d+) insns", text)
        more = f" (processed {int(processed.group(1)):,} insns)" if processed else ""
        return Classified("complexity_limit", f"the verifier gave up: the program is too complex{more}")

    if stage == "prepare":
        return Classified("object_error", f"libbpf could not prepare the object: {_first(program, obj)}")

    line = last_error_line(str(program.get("log") or "")) or str(program.get("message") or "no log")
    return Classified("verifier_rejection", f"the verifier rejected the program: {line}")


def _kfunc_problem(program: dict, obj: dict, inv: Inventory, text: str, prog_type: str | None) -> Classified | None:
    externs = [e for e in obj.get("externs") or [] if e.get("kind") == "kfunc"]
    # Named by the text: libbpf could not resolve them (in order, without repeats).
    found = _MISSING_EXTERN.findall(text)
    unresolved = list(dict.fromkeys(name for groups in found for name in groups if name))
    weak_calls = list(dict.fromkeys(name for _, *kfunc in found for name in kfunc if name))  # the call was poisoned
    missing = [e["name"] for e in externs if e["name"] in unresolved or _absent(e["name"], inv)]
    missing += [k for k in unresolved if k not in missing]
    mine = set(program.get("kfuncs") or [])
    m = _INCOMPATIBLE_KFUNC.search(text)
    if m and program.get("stage") == "prepare":  # a strong extern: libbpf fails the whole object
        what = f"kfunc {m.group(1)} has another prototype on this kernel ({m.group(2)}) than the object declares"
        return Classified("missing_kfunc", f"{what} (libbpf fails the whole object)")
    if missing and program.get("stage") == "prepare":
        # A strong kfunc extern that libbpf could not resolve fails the whole object.
        own = [k for k in missing if k in mine]
        if own:
            return Classified("missing_kfunc", f"{_kfuncs(own)} {_is(own)} not available on this kernel")
        what = f"the object needs {_kfuncs(missing)}, which this kernel lacks (libbpf fails the whole object)"
        return Classified("missing_kfunc", what)
    if weak_calls and program.get("stage") == "load":
        # Only a weak kfunc gets this far unresolved: libbpf poisons the call and the verifier refuses it.
        return Classified("missing_kfunc", _unguarded(weak_calls))
    if _POISON_KFUNC.search(text):
        weak = [e["name"] for e in externs if e.get("weak") and (not mine or e["name"] in mine)]
        absent = [k for k in weak if _absent(k, inv)] or weak
        return Classified("missing_kfunc", _unguarded(absent))
    if mine and _NO_KFUNC_CALLS.search(str(program.get("log") or "")):
        what = f"this kernel cannot call kfuncs (Linux 5.13 and later can): the program calls {', '.join(sorted(mine))}"
        return Classified("missing_kfunc", what)
    m = _KFUNC_NOT_ALLOWED.search(text)
    if m and m.group(1) in mine:  # for the program types the probe does not load (struct_ops, ext)
        return Classified("missing_kfunc", f"kfunc {m.group(1)} is not allowed in {prog_type} programs on this kernel")
    for name in sorted(mine):
        # A kfunc the kernel lacks is "not allowed" in every program type: that is not the reason.
        if name in unresolved or _absent(name, inv):
            continue
        if inv.kfunc_allowed.get(name, {}).get(prog_type or "") is False:
            return Classified("missing_kfunc", f"kfunc {name} is not allowed in {prog_type} programs on this kernel")
    return None


def _struct_ops_problem(
    program: dict, obj: dict, inv: Inventory, text: str, helper_names: dict[int, str], sibling: bool
) -> Classified | None:
    """A struct_ops program the agent could not verify because of its map, or a struct_ops map libbpf
    could not match to the kernel's struct: the real cause, in words."""
    if _SO_UNUSED.search(text):  # the object's own doing, on any kernel
        what = "no struct_ops map of the object uses this struct_ops program (libbpf loads one only for its maps)"
        if "isn't referenced anywhere" in text:  # SEC("struct_ops/<name>") asks for it to be loaded all the same
            what += ", and its section asks libbpf to load it: that fails the whole object unless the loader turns "
            what += "it off (bpf_program__set_autoload)"
        return Classified("object_error", what)
    m = _SO_SIBLING.search(text)
    if m and not sibling:  # the map needs every program it names: the rejected one is the cause
        name, culprit = m.groups()
        programs = [p for p in obj.get("programs") or [] if isinstance(p, dict)]
        record = next((p for p in programs if p.get("program") == culprit and p.get("verdict") == "rejected"), None)
        if record is not None:
            c = classify(record, obj, inv, helper_names, _sibling=True)
            what = f"not verified: struct_ops map {name} cannot be created without {culprit}, which this kernel rejects"
            return Classified(c.reason, f"{what}: {c.message}")
    m = _SO_NO_TYPE.search(text)
    if m:
        tname = m.group(1).removeprefix("bpf_struct_ops_")
        return Classified(
            "missing_attach_target", f"struct_ops type {tname} does not exist on this kernel{_needs(tname)}"
        )
    m = _SO_NO_MEMBER.search(text)
    if m:
        name, member = m.groups()
        what = (
            f"struct_ops map {name} sets {member}, which this kernel's struct {_struct_ops(obj, name)['type']} "
            "does not have (libbpf leaves out a member the kernel lacks only when the object leaves it NULL or zero)"
        )
        return Classified("missing_attach_target", what)
    m = _SO_MISMATCH.search(text)
    if m:
        name, member = m.groups()
        line = next(line for line in text.splitlines() if m.group(0) in line).strip()[:300]
        what = f"member {member} of struct {_struct_ops(obj, name)['type']} differs on this kernel ({line})"
        return Classified("missing_attach_target", what)
    m = _SO_FAILED.search(text)
    link = m and _struct_ops(obj, m.group(1))["link"] and inv.features.get("struct_ops_link") is False
    if link and inv.map_types.get("struct_ops") is not False:  # else the map type is the reason (classify)
        what = (
            f'struct_ops map {m.group(1)} is declared SEC(".struct_ops.link"), which creates it with BPF_F_LINK '
            'to attach it as a BPF link: that needs Linux 6.4 or later (SEC(".struct_ops") works on older kernels)'
        )
        return Classified("unsupported_map_type", what)
    return None


def _struct_ops(obj: dict, name: str) -> dict:
    """What the guest says of a struct_ops map of the object: its kernel struct and whether it has BPF_F_LINK."""
    for m in obj.get("maps") or []:
        so = m.get("struct_ops") if isinstance(m, dict) and m.get("name") == name else None
        if isinstance(so, dict):
            tname = so.get("type")
            return {"type": tname[:200] if isinstance(tname, str) else "?", "link": so.get("link") is True}
    return {"type": "?", "link": False}


def _needs(tname: str) -> str:
    """What a struct_ops type the kernel lacks needs, when it is a known one."""
    if tname in STRUCT_OPS_TYPES:
        return f" ({STRUCT_OPS_TYPES[tname]})"
    if tname.startswith("bpf_testmod"):
        return f" ({TESTMOD})"
    return " (not in the BTF of the kernel or of a loaded module)"


def _unguarded(names: list[str]) -> str:
    what = _kfuncs(names) if names else "a weak kfunc"
    return f"{what} {_is(names)} not available on this kernel and the call is not guarded by bpf_ksym_exists()"


def _map_problem(obj: dict, text: str) -> Classified | None:
    """A map the program uses that libbpf could not create (the program itself was never the problem)."""
    m = _MAP_REFERENCED.search(text) or _MAP_CREATE.search(text)
    if not m:
        return None
    name = m.group(1)
    outer = name.removesuffix(".inner")  # libbpf names an object-defined inner map after its outer map
    record = next((r for r in obj.get("maps") or [] if r.get("name") == outer), {})
    line = re.search(rf"map '{re.escape(name)}': failed to create: ([^\n]*?\(-?\d+\)|[^\n)]*)", text)
    if line:
        why = f" (failed to create: {line.group(1).strip()})"
    elif isinstance(record.get("errno"), int) and record["errno"]:
        code = abs(record["errno"])
        why = f" (failed to create: {os.strerror(code)}(-{code}))"
    else:
        why = ""
    if name != outer or re.search(rf"map '{re.escape(outer)}': failed to create inner map", text):
        # The object defines the inner map itself (__array(values, ...)) and that one failed.
        what = f"map {outer} could not be created: its inner map failed to create{why}, so the program cannot load"
    elif "inner map" in text.lower() or str(record.get("type")) in ("hash_of_maps", "array_of_maps"):
        # A map of maps without an inner map in the object: its loader supplies one before loading.
        what = (
            f"map {outer} could not be created{why}: it is a map of maps whose inner map its loader must supply "
            "at run time (bpf_map__set_inner_map_fd), so the program cannot load here"
        )
    else:
        what = f"map {name} could not be created{why}, so the program cannot load"
    return Classified("object_error", what)


def _absent(kfunc: str, inv: Inventory) -> bool:
    """Known to be missing: looked up by name in the kernel's BTF and not found."""
    return kfunc in inv.kfuncs_checked and kfunc not in inv.kfuncs


def _kfuncs(names: list[str]) -> str:
    return f"kfunc{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _is(names: list) -> str:
    return "are" if len(names) > 1 else "is"


def _first(program: dict, obj: dict) -> str:
    msg = program.get("message") or (obj.get("open") or {}).get("message") or "no message"
    return str(msg).strip().splitlines()[0][:300] if str(msg).strip() else "no message"
