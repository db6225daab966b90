"""The guest side of `compat check`: load one BPF object, give every program a verdict.

bpf_object__load loads the programs in order and stops at the first one the kernel refuses,
unloading the rest: the programs before it were accepted (their logs carry the verifier's
stats), so the object is reopened and reloaded with every program that has a verdict left
out, until all have one: each program is verified once for its verdict. Accepted programs of
a failed load are loaded once more for the attach checks, in the next load when verifying them
costs less than the fixed part of a load (BTF, maps, relocations, vmlinux BTF), else in a load
of their own at the end; without attach checks, never. (libbpf 1.6's bpf_object__prepare does
not change this: a failed load still ends the object.) The verdict loads run the verifier at log
level 4 (stats only: cheap, and it keeps E2BIG visible); a rejection that is not E2BIG gets
one more load at level 1 with a bounded buffer for the full log (see DESIGN.md section 5).
Every load bounds each program's verification by the request's program time limit
(timelimit.py): a program over it gets no verdict ("timeout"), and the loads go on without it.

What the object calls (helpers, kfuncs) is read from its ELF file directly (objelf.py); the
host sends that analysis with the request (the same code, run once per object instead of
once per guest under emulation).
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import re
import struct
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from compat_agent.bpf import kernelbtf
from compat_agent.bpf import libbpf as lb
from compat_agent.bpf.logbuf import FULL_LOG_SIZE, STATS_LOG_SIZE, log_buffers
from compat_agent.bpf.timelimit import program_time_limit
from compat_agent.elf.analysis import ElfInfo, analyze_elf, elf_from_json, helpers_from_insns
from compat_agent.elf.sections import (
    ATTACH_TIME_TYPES,
    BTF_TARGET_TYPES,
    OPTION,
    attach_target,
    choose,
    first_match,
    parse_rules,
)
from compat_agent.wire.facts import FACTS_MAX, Fact, fact
from compat_agent.wire.stats import parse_stats
from compat_agent.wire.textfacts import program_facts
from compat_agent.wire.validate import TEXT_MAX
from compat_agent.wire.verifierlog import error_line

from . import legacy, privilege
from .kmsg import inject_test_splat, kernel_log, splats
from .resources import FILE_ERRNOS, MEMORY, OPEN_FILES, Exhausted, exhausted, from_libbpf_lines, map_bytes
from .resources import reply as exhausted_reply
from .state import ProgState, not_attempted

FULL_LOG_BUDGET = 16 << 20  # all full logs of one reply (a frame's JSON is bounded at 32 MiB)
FULL_LOG_MAX_INSNS = 250_000  # above this, a level-1 reload costs more than its log is worth
E2BIG = errno_mod.E2BIG
# A map with max_entries 0 in the object is sized by its loader at run time (nr of CPUs, a
# configured size); it is checked with the smallest valid size, as veristat does: 1, a page for
# ring buffers, and 0 (left alone) where 0 is the only valid value or libbpf sizes it itself.
RUNTIME_SIZE = {
    "ringbuf": 4096,
    "user_ringbuf": 4096,
    "perf_event_array": 0,
    "struct_ops": 0,
    "cgroup_storage": 0,
    "percpu_cgroup_storage": 0,
    "sk_storage": 0,
    "inode_storage": 0,
    "task_storage": 0,
    "cgrp_storage": 0,
}
# A stack trace map without value_size in the object gets its stack depth from its loader
# (libbpf-tools, bcc: --perf-max-stack-depth); checked with the kernel's default depth, 127
# frames (sysctl kernel.perf_event_max_stack) of 8 bytes.
STACK_TRACE_VALUE_SIZE = 127 * 8


# -- libbpf messages ---------------------------------------------------------------------------
_FAILED_LOAD_RE = re.compile(r"^prog '([^']+)': failed to load: (-?\w+)")
_PROG_LINE_RE = re.compile(r"^prog '([^']+)': ")
_MAP_FAILED_RE = re.compile(r"^map '([^']+)': failed to (create|initialize|set initial|freeze|mmap)")
# libbpf fails a struct_ops map it cannot match to the kernel's struct naming the map, or the type.
_STRUCT_OPS_MAP_RE = re.compile(r"^struct_ops init_kern ([\w.]+)[: ]")
_STRUCT_OPS_TYPE_RE = re.compile(r"^struct_ops init_kern: struct (\w+)")
# A program failure in which no verifier ran: libbpf gave up preparing it.
_PREPARE_RE = re.compile(
    r"failed to prepare load attributes|failed to find kernel BTF type ID|failed to find BPF program|"
    r"missing BPF prog type|program isn't referenced anywhere|"
    r"failed to relocate|failed to perform|failed to bind map|failed to initialize"
)


def _prog_lines(lines: list[str], name: str) -> list[str]:
    tag = f"prog '{name}': "
    return [line for line in lines if line.startswith(tag)]


def _object_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if not _PROG_LINE_RE.match(line)]


# -- the check ---------------------------------------------------------------------------------
def _attach_type_name(prog_type_name: str, eat: int) -> str | None:
    # expected_attach_type 0 is BPF_CGROUP_INET_INGRESS: meaningful only for cgroup_skb programs.
    if eat == 0 and prog_type_name != "cgroup_skb":
        return None
    return lb.attach_type_str(eat) or str(eat)


class Checker:
    """One check request: open, load until every program has a verdict, attach, report."""

    def __init__(
        self,
        data: bytes,
        name: str,
        attach: bool,
        kconfig: str | None = None,
        elf: dict | None = None,
        program_timeout: float | None = None,
        program_types: list[tuple[str, str]] | None = None,
        global_values: list[dict] | None = None,
        attach_targets: list[tuple[str, str]] | None = None,
        knobs: Knobs | None = None,
    ):
        self.data = data
        self.name = name
        self.want_attach = attach
        self.given_elf = elf  # the host's analyze_elf() of these bytes (elf_to_json), if it sent one
        self.kconfig = kconfig
        self.program_timeout = program_timeout  # seconds of verification per program (None: no limit)
        self.type_rules = program_types or []  # (glob, libbpf section): --program-type
        self.retyped: dict[str, tuple[int, int]] = {}  # program -> (type, attach type) it is loaded as
        self.target_rules = attach_targets or []  # (glob, target): --attach-target
        self.retargeted: dict[str, str] = {}  # program -> the BTF attach target libbpf loads it with
        self.global_values = global_values or []  # --set-global: {name, section, offset, bytes, value}
        self.global_notes: dict[str, str] = {}  # variable -> what was set, or why it could not be
        self.knobs = knobs or Knobs()  # --prog-flags, --inner-map, --map-size
        self.inner_fds: dict[str, int] = {}  # outer map -> the inner map compat created for it (--inner-map)
        self.progs: list[ProgState] = []
        self.maps: dict[str, dict] = {}
        self.failed_maps: set[str] = set()
        self.map_messages: dict[str, str] = {}  # failed map -> libbpf's line about it
        self.weak_kfuncs: set[str] = set()
        self.first: lb.Object | None = None  # the object opened for the inventory, loaded first
        self.map_notes: dict[str, str] = {}  # map -> how open() sized it
        self.map_needs: dict[str, int] = {}  # map -> the least memory it takes, as open() sized it
        self.no_inner_map: dict[str, str] = {}  # map of maps -> why it cannot be created
        self.struct_ops: dict[str, dict] = {}  # struct_ops map -> its type, link flag, programs (ElfInfo)
        self.contexts: dict[str, list[str]] = {}  # program -> its context type's names (ElfInfo)
        self.full_log_budget = FULL_LOG_BUDGET
        self.timing: dict = {"loads": []}  # where the request's time went (ms), for benchmarks
        self.load_overhead_ms = 0.0  # what the last failed load spent besides verifying programs
        self.verify_again = True
        # The object as shipped: whether bpf_object__load with every program and map as the object
        # declares them (what its skeleton does) succeeds, and if not, what failed first (None: unknown).
        self.object_load: dict | None = None

    def open(self) -> lb.Object:
        """A freshly opened bpf_object of the checked bytes (a load can be attempted once), with
        the maps its loader sizes at run time sized, pinned maps unpinned (as veristat does: a
        check's verdicts must not depend on what an earlier check left in bpffs) and programs
        retyped (progtype.py). Exhausted when libbpf ran out of open files or memory opening it
        (it takes an fd per map already)."""
        try:
            obj = lb.Object(self.data, self.name, self.kconfig)
        except lb.LibbpfError as e:
            found = exhausted(e.errno, "open")
            if found:
                raise found from None
            raise
        for m in obj.maps():
            if m.pinned:  # a map pinned by an earlier check in this guest must not stand in for this one's
                m.unpin()
            kind = lb.map_type_str(m.map_type) or ""
            given = []  # what the knobs did to it (--inner-map, --map-size)
            inner = self.knobs.inner_maps.get(m.name)
            if inner is not None and kind in ("array_of_maps", "hash_of_maps"):
                given.append(self._give_inner_map(m, inner))
            if m.name in self.knobs.map_sizes:  # before the run-time sizing below: it no longer applies
                m.set_max_entries(self.knobs.map_sizes[m.name])
                given.append(f"max_entries {self.knobs.map_sizes[m.name]} (--map-size)")
            given = [g for g in given if g]
            if given:
                self.map_notes[m.name] = f"map '{m.name}' given " + " and ".join(given)
            if kind in ("array_of_maps", "hash_of_maps") and not m.has_inner_map and inner is None:
                self.no_inner_map[m.name] = (
                    f"map '{m.name}' is a map of maps without an inner map in the object: its loader supplies "
                    "one at run time (bpf_map__set_inner_map_fd), so compat cannot create it"
                )
                continue
            sized = []
            size = RUNTIME_SIZE.get(kind, 1)
            if size and m.max_entries == 0:
                m.set_max_entries(size)
                sized.append(
                    f"max_entries 0 in the object (its loader sizes it at run time): checked with max_entries {size}"
                )
            if kind == "stack_trace" and m.value_size == 0:
                m.set_value_size(STACK_TRACE_VALUE_SIZE)
                sized.append(
                    "value_size 0 in the object (its loader sets the stack depth at run time): checked with "
                    f"value_size {STACK_TRACE_VALUE_SIZE} (127 frames, the kernel's default perf_event_max_stack)"
                )
            if sized:
                note = f"map '{m.name}' has " + "; and ".join(sized)
                self.map_notes[m.name] = f"{self.map_notes[m.name]}; {note}" if given else note
        knobs = self.knobs
        for prog in obj.programs() if self.retyped or self.retargeted or knobs.prog_flags or knobs.tests else []:
            rules = knobs.prog_flags
            flags = next((f for g, f in rules if fnmatchcase(prog.name, g) or fnmatchcase(prog.section, g)), None)
            test_flags = knobs.tests.get(prog.name, (0, 0))[0]  # what the selftest's loader sets (__flag)
            if flags is not None or test_flags:  # added to what its section gives (".s": sleepable), as loaders do
                prog.set_flags(prog.flags | int(flags or 0) | test_flags)
            if prog.name in self.retyped:
                prog.set_type(*self.retyped[prog.name])
            if prog.name in self.retargeted:
                prog.set_attach_target(self.retargeted[prog.name])
        for g in self.global_values:
            m = obj.map_named(g["section"])
            done = m is not None and m.write_initial(g["offset"], bytes.fromhex(g["bytes"]))
            self.global_notes[g["name"]] = (
                f"global variable '{g['name']}' ({g['section']}) set to {g['value']} (--set-global)"
                if done
                else f"global variable '{g['name']}' could not be set: libbpf has no initial value for {g['section']}"
            )
        return obj

    def _give_inner_map(self, m: lb.Map, inner: tuple[int, int, int, int]) -> str:
        """--inner-map: create the inner map (once per check) and hand it to the map of maps before
        load, as its loader does; a kernel that cannot create it leaves the outer map uncreatable.
        What was given, in words ("" when it could not be created)."""
        fd = self.inner_fds.get(m.name)
        kind, key, value, entries = inner
        what = f"{lb.map_type_str(kind) or kind}:{key}:{value}:{entries}"
        if fd is None:
            try:
                fd = self.inner_fds[m.name] = lb.map_create(kind, key, value, entries)
            except lb.LibbpfError as e:
                self.no_inner_map[m.name] = (
                    f"map '{m.name}': its inner map ({what}, --inner-map) could not be created: {e.message}"
                )
                return ""
        m.set_inner_map_fd(fd)
        return f"an inner map {what} (--inner-map)"

    def close_inner_maps(self) -> None:
        """Close the inner maps --inner-map made (each outer map holds its own reference)."""
        for fd in self.inner_fds.values():
            os.close(fd)
        self.inner_fds.clear()

    def inventory(self, obj: lb.Object, elf: ElfInfo | None) -> None:
        """Programs and maps of the object, with what each program calls and the type it is
        loaded as (its section's, or one --program-type or its context gives it: progtype.py)."""
        for prog in obj.programs():
            type_name = lb.prog_type_str(prog.prog_type) or str(prog.prog_type)
            if elf and (prog.section, prog.name) in elf.calls:
                helpers, kfuncs = elf.calls[(prog.section, prog.name)]
            else:
                helpers, kfuncs = helpers_from_insns(prog.insns()), []
            choice = choose(prog.name, prog.section, type_name, self.contexts.get(prog.name), self.type_rules, helpers)
            retyped = lb.prog_type_by_name(choice.section) if choice else None
            if retyped:
                prog.set_type(*retyped)
                self.retyped[prog.name] = retyped
                type_name = lb.prog_type_str(retyped[0]) or str(retyped[0])
            state = ProgState(
                name=prog.name,
                section=prog.section,
                prog_type=prog.prog_type,
                type_name=type_name,
                eat=prog.expected_attach_type,
                attach_type=_attach_type_name(type_name, prog.expected_attach_type),
                attach_target=None if retyped else attach_target(prog.section),
                insn_cnt=prog.insn_cnt,
                helpers=helpers,
                kfuncs=kfuncs,
                initial_autoload=prog.autoload,
            )
            if choice and retyped:
                state.type_from, state.type_note = choice.source, choice.note(prog.section, type_name)
            elif choice and choice.source == OPTION:  # a section libbpf does not know: no type to load it as
                why = f"--program-type names section '{choice.section}', which libbpf {lb.version()} does not know"
                state.reject("prepare", None, why + " (a section name such as tc, xdp or lwt_xmit)", [])
                state.facts.append(fact("unknown_type_option", section=choice.section, libbpf=lb.version()))
            target = first_match(prog.name, prog.section, self.target_rules)
            if target and state.verdict is None:
                self._retarget(prog, state, target)
            self.progs.append(state)
        for m in obj.maps():
            self.map_needs[m.name] = map_bytes(m.max_entries, m.value_size)
            self.maps[m.name] = {
                "name": m.name,
                "type": lb.map_type_str(m.map_type) or str(m.map_type),
                "ok": None,
                "errno": None,
            }
            so = self.struct_ops.get(m.name)
            if so is not None and not m.autocreate:  # SEC("?.struct_ops"): created only when its loader asks
                del self.struct_ops[m.name]
            elif so is not None:  # what the host needs to say why it failed: the kernel struct, and BPF_F_LINK
                self.maps[m.name]["struct_ops"] = {"type": so["type"], "link": so["link"]}

    def _configure(
        self, obj: lb.Object, level: int, only: str | None = None, names: set[str] | None = None
    ) -> dict[str, ctypes.Array]:
        """Autoload the programs without a verdict (or only one, or the named ones), each with its
        own log buffer."""
        by_name = {p.name: p for p in self.progs}
        bufs: dict[str, ctypes.Array] = {}
        pool = log_buffers(FULL_LOG_SIZE if level == 1 else STATS_LOG_SIZE)
        for prog in obj.programs():
            state = by_name.get(prog.name)
            if state is None:
                continue
            if only:
                wanted = prog.name == only
            elif names is not None:
                wanted = prog.name in names
            else:
                wanted = state.verdict is None
            if not (wanted and state.prog_type == lb.PROG_TYPE["struct_ops"] and not state.initial_autoload):
                # libbpf itself decides which struct_ops programs load (those a struct_ops map uses).
                prog.set_autoload(wanted)
            if wanted:
                buf = next(pool)
                prog.set_log(level, buf)
                bufs[prog.name] = buf
        # libbpf loads every program of a struct_ops map it creates: once one is rejected, the maps
        # that use it stay out and libbpf no longer loads their other programs (reported as such).
        # (Not when reloading one rejected program for its log: it needs its own maps, all of them
        # when it is unknown which.)
        dropped = self._struct_ops_dropped()
        if only:
            dropped = {n for n in dropped if only not in self.struct_ops[n]["programs"]} if self.struct_ops else set()
        for m in obj.maps():
            if m.name in self.failed_maps or m.name in dropped:
                m.set_autocreate(False)
        return bufs

    def _struct_ops_rejected(self) -> list[str]:
        return [p.name for p in self.progs if p.prog_type == lb.PROG_TYPE["struct_ops"] and p.verdict == "rejected"]

    def _struct_ops_dropped(self) -> set[str]:
        """The struct_ops maps that use a rejected program (all of them when the ELF was not read)."""
        rejected = set(self._struct_ops_rejected())
        if not rejected:
            return set()
        if not self.struct_ops:
            return {name for name, m in self.maps.items() if m["type"] == "struct_ops"}
        return {name for name, so in self.struct_ops.items() if rejected & set(so["programs"])}

    def _struct_ops_not_loaded(self, p: ProgState, rejected: list[str]) -> str:
        """Why libbpf left a struct_ops program out of a load that succeeded: its maps' fate (a
        rejected program of the map, or the map's failure)."""
        maps = [name for name, so in self.struct_ops.items() if p.name in so["programs"]]
        for name in maps:
            culprit = next((r for r in rejected if r in self.struct_ops[name]["programs"]), None)
            if culprit:
                p.facts.append(fact("struct_ops_sibling", map=name, program=culprit))
                return (
                    f"not verified: its struct_ops map '{name}' cannot be created without program '{culprit}', "
                    "which was rejected"
                )
        for name in maps:
            if name in self.failed_maps:
                p.facts.append(fact("struct_ops_map_failed", map=name))
                return f"not verified: its struct_ops map '{name}' could not be created"  # run() adds why
        if rejected and not self.struct_ops:  # the ELF was not read: which map is unknown
            names = ", ".join(f"'{n}'" for n in rejected)
            return f"not verified: its struct_ops map cannot be created because {names} was rejected"
        p.facts.append(fact("struct_ops_unused", referenced=False))
        return "libbpf did not load this program (a struct_ops program no struct_ops map uses)"

    def _struct_ops_failed(self, lines: list[str]) -> dict[str, str]:
        """The struct_ops maps libbpf could not match to the kernel's struct (a type or member the
        kernel lacks), by libbpf's line about it; the load failed before any map or program."""
        for line in reversed(lines):
            named = _STRUCT_OPS_MAP_RE.match(line)
            typed = _STRUCT_OPS_TYPE_RE.match(line)
            if named and named.group(1) in self.struct_ops:
                return {named.group(1): line}
            if typed:
                tname = typed.group(1).removeprefix("bpf_struct_ops_")
                maps = [name for name, so in self.struct_ops.items() if so["type"] == tname]
                return {name: line for name in maps if name not in self.failed_maps}
        return {}

    def _retarget(self, prog: lb.Program, state: ProgState, target: str) -> None:
        """--attach-target: the program attaches to target instead of what its section names, as
        its loader has it (a placeholder such as SEC("fentry/dummy_file_read") that the loader
        points at the function of the moment). BTF-based programs (fentry, fexit, tp_btf, lsm,
        iter...) are loaded against it; kprobes and tracepoints are attached to it."""
        if state.type_name in BTF_TARGET_TYPES:
            err = prog.set_attach_target(target)
            if err:  # libbpf says nothing here: say what it would say at load, for the classifier
                line = f"bpf_program__set_attach_target: failed to find kernel BTF type ID of '{target}': {err}"
                state.reject("prepare", -err, None, [f"[compat: {line}]"])
                state.facts.append(fact("attach_target_missing", target=target))
                return
            self.retargeted[prog.name] = target
            state.retarget(target, loaded=True)
        elif state.type_name in ATTACH_TIME_TYPES:
            state.retarget(target)
        else:
            state.target_note = (
                f"--attach-target {target} ignored for this {state.type_name} program: it names the targets of "
                "fentry/fexit/tp_btf/LSM/iter, kprobe, uprobe and tracepoint programs"
            )

    def _split_time(self, total_ms: float, stats: dict[str, dict]) -> dict[str, float]:
        """Share one bpf_object__load's wall time out: each program's own verification time plus
        an equal part of what the load spent on everything else (BTF, maps, relocations)."""
        own = {n: (s.get("verification_time_us") or 0) / 1000 for n, s in stats.items()}
        rest = max(total_ms - sum(own.values()), 0.0) / max(len(stats), 1)
        return {n: own[n] + rest for n in stats}

    def load_all(self) -> lb.Object | None:
        """Load until every program has a verdict; returns the loaded object of accepted ones.

        libbpf loads an object's programs in order and stops at the first the kernel refuses:
        the programs before it were accepted (their stats-only logs prove the verifier ran), so
        the next load leaves them out with the refused one, and no program is verified twice
        to get its verdict (attach_checks() loads the accepted programs of failed loads once
        more, when attach checks are wanted).
        """
        obj, self.first = self.first, None
        obj_order = [p.name for p in self.progs]  # libbpf's order (inventory() listed them so)
        for attempt in range(len(self.progs) + len(self.maps) + 3):
            if obj is None:
                obj = self.open()
            pending = [p for p in self.progs if p.verdict is None]
            known = all(m["ok"] is not None or m["name"] in self.failed_maps for m in self.maps.values())
            if not pending and known:
                obj.close()  # every verdict and every map's fate is known
                return None
            again = self._verify_again()
            bufs = self._configure(obj, 4, names={p.name for p in pending} | again if again else None)
            ret, lines, elapsed, stopped = self._load(obj, bufs, 4)
            if attempt == 0 and self._as_declared():  # the skeleton's load: its outcome is the object's
                self.object_load = first_failure(ret, lines, self.struct_ops)
            logs = {n: b.value.decode("utf-8", "replace") for n, b in bufs.items()}
            stats = {n: parse_stats(log) for n, log in logs.items()}
            times = self._split_time(elapsed, {n: s for n, s in stats.items() if logs[n]} or stats)
            if ret == 0:
                struct_ops_rejected = self._struct_ops_rejected()  # before this load's own verdicts
                for p in self.progs:
                    if p.name in again:
                        p.loaded = obj_prog_fd(obj, p.name) >= 0
                for p in pending:
                    p.log, p.stats, p.load_ms = logs.get(p.name, ""), stats.get(p.name, {}), times.get(p.name, 0.0)
                    p.libbpf_log = _prog_lines(lines, p.name)
                    if obj_prog_fd(obj, p.name) >= 0:
                        p.verdict = "accepted"
                    else:
                        reason = "libbpf did not load this program"
                        if p.prog_type == lb.PROG_TYPE["struct_ops"]:
                            reason = self._struct_ops_not_loaded(p, struct_ops_rejected)
                        p.reject("prepare", None, reason, p.libbpf_log)
                for m in obj.maps():
                    # Created if asked to be (libbpf gives every map a placeholder fd at open).
                    if m.name in self.maps and m.name not in self.failed_maps:
                        self.maps[m.name]["ok"] = True if m.autocreate else None
                return obj
            obj.close()
            obj = None
            failed = [m.group(1) for line in lines if (m := _FAILED_LOAD_RE.match(line))]
            if failed and failed[-1] in again:
                self.verify_again = False  # refused where it had passed: each program is verified once from now on
                continue
            verified = sum((s.get("verification_time_us") or 0) for s in stats.values()) / 1000
            self.load_overhead_ms = max(elapsed - verified, 0.0)
            self._accepted_before_failure(obj_order, lines, logs, stats, times)
            if not self._blame(-ret, lines, logs, stats, times, stopped):
                return None
        return None

    def _as_declared(self) -> bool:
        """Whether the first load of load_all() loads what the object declares: every program
        without a verdict from the inventory autoloads, and only those (SEC("?...") ones do not;
        libbpf decides for struct_ops programs either way), with every map."""
        for p in self.progs:
            struct_ops = p.prog_type == lb.PROG_TYPE["struct_ops"]
            wanted = p.verdict is None
            effective = p.initial_autoload if struct_ops and wanted and not p.initial_autoload else wanted
            if effective != p.initial_autoload:
                return False
        return True

    def load_as_declared(self) -> dict | None:
        """One more load, of the object as it declares itself (every program's autoload and every
        map as in the object), for its object-level verdict when load_all()'s first load was not
        that load. None when it cannot be opened again."""
        try:
            obj = self.open()
        except lb.LibbpfError:
            return None
        try:
            pool = log_buffers(STATS_LOG_SIZE)  # a log buffer: level 0 makes libbpf retry with bigger ones
            bufs: dict[str, ctypes.Array] = {}
            for prog in obj.programs():
                if prog.autoload:
                    bufs[prog.name] = next(pool)
                    prog.set_log(4, bufs[prog.name])
            t0 = time.monotonic()
            ret, lines, _, _ = self._load(obj, bufs, 4)
            self.timing["as_declared_ms"] = round((time.monotonic() - t0) * 1000, 3)
            del bufs
        except Exhausted:
            return None
        finally:
            obj.close()
        return first_failure(ret, lines, self.struct_ops)

    def _verify_again(self) -> set[str]:
        """Accepted programs of failed loads to load again in the next load, so that they end up
        in the object the attach checks use: when verifying them costs less than a load of their
        own would (the fixed part of the last load: BTF, maps, relocations), else none."""
        if not self.want_attach or not self.verify_again:
            return set()
        unloaded = [p for p in self.progs if p.verdict == "accepted" and not p.loaded]
        cost = sum((p.stats.get("verification_time_us") or 0) for p in unloaded) / 1000
        return {p.name for p in unloaded} if unloaded and cost < self.load_overhead_ms else set()

    def _accepted_before_failure(
        self, order: list[str], lines: list[str], logs: dict, stats: dict, times: dict
    ) -> None:
        """After a load that failed on one program: the programs libbpf loaded before it were
        accepted by the kernel (their logs carry the verifier's stats), and every map was created."""
        failed = [m.group(1) for line in lines if (m := _FAILED_LOAD_RE.match(line))]
        culprit = failed[-1] if failed else None
        if culprit not in order:
            return
        by_name = {p.name: p for p in self.progs}
        for name in order[: order.index(culprit)]:
            p = by_name.get(name)
            if p is None or p.verdict is not None or name not in logs:
                continue
            if p.prog_type == lb.PROG_TYPE["struct_ops"] or stats.get(name, {}).get("insns_processed") is None:
                continue  # libbpf decides which struct_ops programs load; no stats: not verified
            p.verdict, p.loaded = "accepted", False
            p.log, p.stats, p.load_ms = logs[name], stats[name], times.get(name, 0.0)
            p.libbpf_log = _prog_lines(lines, name)
        for m in self.maps.values():
            if m["name"] not in self.failed_maps and m["ok"] is None:
                m["ok"] = True  # programs load after every map is created

    def attach_checks(self, obj: lb.Object | None) -> None:
        """Attach every accepted program (and close obj): those of the last load in it, those
        accepted in loads that failed later on in one more load of just them."""
        accepted = [p for p in self.progs if p.verdict == "accepted"]
        try:
            if not self.want_attach:
                for p in accepted:
                    p.attach = not_attempted("attach not requested")
                return
            from compat_agent.attach.attach import attach_all

            if obj is not None:
                attach_all(obj, [p for p in accepted if p.loaded])
        finally:
            if obj is not None:
                obj.close()
        later = [p for p in accepted if not p.loaded and p.attach is None]
        if not later:
            return
        try:
            again = self._load_for_attach(self.open(), later)
        except lb.LibbpfError:
            return
        if again is not None:
            try:
                attach_all(again, later)
            finally:
                again.close()

    def _load_for_attach(self, obj: lb.Object, accepted: list[ProgState]) -> lb.Object | None:
        """Load the accepted programs that are not loaded yet, for their attach checks."""
        bufs = self._configure(obj, 4, names={p.name for p in accepted})  # alive while libbpf writes to them
        ret, lines, _, stopped = self._load(obj, bufs, 4)
        del bufs
        if ret == 0:
            for p in accepted:
                p.loaded = obj_prog_fd(obj, p.name) >= 0
            return obj
        obj.close()
        why = self._over_limit() if stopped else (_object_lines(lines) or [lb.errno_text(-ret)])[-1]
        for p in accepted:
            p.attach = not_attempted(f"loading the accepted programs again for the attach check failed: {why}")
        return None

    def _load(self, obj: lb.Object, bufs: dict[str, ctypes.Array], level: int) -> tuple[int, list[str], float, bool]:
        """bpf_object__load, each program's verification bounded by the program time limit:
        0 or -errno, libbpf's messages, the wall time (ms), and whether a program was stopped."""

        def loaded() -> int:  # polled by the time limit's watcher only (bufs: programs of obj)
            return sum(obj.program(n).fd >= 0 for n in bufs)

        with lb.capture() as sink, program_time_limit(self.program_timeout, loaded) as w:
            t0 = time.monotonic()
            ret = obj.load()
            elapsed = (time.monotonic() - t0) * 1000
        self.timing["loads"].append({"ms": round(elapsed, 3), "programs": len(bufs), "level": level, "ok": ret == 0})
        lines = lb.lines(sink)
        found = from_libbpf_lines(lines)  # libbpf went on without the object's BTF or a feature
        if found:
            obj.close()
            raise found
        return ret, lines, elapsed, ret != 0 and w is not None and w.fired

    def _over_limit(self) -> str:
        return f"the verifier did not finish within the program time limit ({self.program_timeout:g} s)"

    def _blame(self, err: int, lines: list[str], logs: dict, stats: dict, times: dict, stopped: bool) -> bool:
        """Record who made a load fail; False when the failure is the whole object's. Exhausted
        when what failed ran out of the guest's open files or memory (resources.py): no verdict."""
        by_name = {p.name: p for p in self.progs}
        failed = [m.group(1) for line in lines if (m := _FAILED_LOAD_RE.match(line))]
        culprit = failed[-1] if failed else None
        if culprit is None:
            # No program reached the kernel: a program-specific preparation failure, if libbpf named one.
            named = [m.group(1) for line in lines if (m := _PROG_LINE_RE.match(line)) and _PREPARE_RE.search(line)]
            culprit = named[-1] if named else None
        if culprit in by_name and by_name[culprit].verdict is None:
            p = by_name[culprit]
            plines = _prog_lines(lines, culprit)
            log = logs.get(culprit, "")
            found = exhausted(err, "program", culprit, log)
            if found:
                raise found
            prepare = not log.strip() and any(_PREPARE_RE.search(line) for line in plines)
            if prepare:
                message = next((line.split(": ", 1)[1] for line in reversed(plines) if _PREPARE_RE.search(line)), None)
                message = message or (plines[-1] if plines else lb.errno_text(err))
                p.reject("prepare", err, _describe_prepare(plines, message), plines)
            else:
                weak = [e for e in p.kfuncs if e in self.weak_kfuncs]
                p.reject("load", err, p.explain(error_line(log), weak) or lb.errno_text(err), plines)
                p.log, p.stats = log, stats.get(culprit, {})
                if stopped and err == errno_mod.EAGAIN:  # no verdict: the verifier was stopped
                    # (what the log and stats say is of libbpf's last retry, stopped at once)
                    p.verdict, p.message, p.log, p.stats = "timeout", self._over_limit(), "", {}
                p.load_ms = times.get(culprit, 0.0)
            return True
        maps = [m.group(1) for line in lines if (m := _MAP_FAILED_RE.match(line))]
        if maps and maps[-1] in self.maps and maps[-1] not in self.failed_maps:
            name = maps[-1]
            found = exhausted(err, "map", name, needs=self.map_needs.get(name))
            if found:
                raise found
            self.failed_maps.add(name)
            self.maps[name].update(ok=False, errno=err)
            self.map_messages[name] = self.no_inner_map.get(name) or next(
                line for line in reversed(lines) if line.startswith(f"map '{name}'")
            )
            return True
        struct_ops = self._struct_ops_failed(lines)
        if struct_ops:  # the rest of the object loads without those maps
            for name, line in struct_ops.items():
                self.failed_maps.add(name)
                self.maps[name].update(ok=False, errno=err)
                self.map_messages[name] = line
            return True
        # The whole object failed before any program was loaded (externs, BTF, struct_ops...).
        found = exhausted(err, "object")
        if found:
            raise found
        obj_lines = _object_lines(lines)
        interesting = [line for line in obj_lines if not line.startswith("failed to load object")]
        message = (interesting or obj_lines or [lb.errno_text(err)])[-1]
        if "failed to open system Kconfig" in message:
            message += (
                ": the object reads CONFIG_* values (__kconfig externs) and this kernel's config is not in "
                "the guest (a local kernel without a config file next to it?)"
            )
        for p in self.progs:
            if p.verdict is None:
                p.reject("prepare", err, message, obj_lines + _prog_lines(lines, p.name))
        return False

    def full_logs(self) -> None:
        """Reload each load-stage rejection alone at log level 1 for its full verifier log, and each
        selftest whose annotations expect messages at the test's own level, even when accepted
        (test_loader searches the log of every load)."""
        for p in self.progs:
            level = self.knobs.tests.get(p.name, (0, 0))[1]
            rejected = p.verdict == "rejected" and p.stage == "load" and p.errno != E2BIG
            if not (rejected or (level and p.verdict == "accepted")):
                continue
            level = max(level, 1)
            if (p.stats.get("insns_processed") or 0) > FULL_LOG_MAX_INSNS or self.full_log_budget <= 0:
                p.log += "\n[compat: full verifier log not collected: the program is too large to log]\n"
                continue
            try:
                obj = self.open()
            except lb.LibbpfError:
                continue
            try:
                bufs = self._configure(obj, level, only=p.name)
                ret, _, _, stopped = self._load(obj, bufs, level)
                log = bufs[p.name].value.decode("utf-8", "replace") if p.name in bufs else ""
            finally:
                obj.close()
            if stopped:
                p.log += f"\n[compat: full verifier log not collected: {self._over_limit()} at log level {level}]\n"
                continue
            if not log.strip():
                continue
            if ret == -errno_mod.ENOSPC or len(log) >= FULL_LOG_SIZE - 1:
                log += f"\n[compat: log truncated at {FULL_LOG_SIZE} bytes]\n"
            elif rejected:
                # The full log names what the stats-only one cannot: libbpf rewrites a poisoned
                # instruction's error (missing weak kfunc, failed CO-RE relocation, map not created)
                # only where the log shows the instruction.
                weak = [e for e in p.kfuncs if e in self.weak_kfuncs]
                p.message = p.explain(error_line(log), weak) or p.message
            p.log, p.log_level = log, level
            self.full_log_budget -= len(log)

    def _lap(self, what: str, since: float) -> float:
        now = time.monotonic()
        self.timing[what] = round(self.timing.get(what, 0.0) + (now - since) * 1000, 3)
        return now

    def run(self) -> dict:
        """The check, as the check_result fields (without type and id)."""
        t = time.monotonic()
        elf = elf_from_json(self.given_elf) if self.given_elf else None
        if elf is None:
            try:
                elf = analyze_elf(self.data)
            except (ValueError, struct.error, IndexError):
                elf = None
        t = self._lap("elf_ms", t)
        externs = elf.externs if elf else []
        self.weak_kfuncs = {e["name"] for e in externs if e["kind"] == "kfunc" and e["weak"]}
        self.struct_ops = elf.struct_ops if elf else {}
        self.contexts = elf.contexts if elf else {}
        result: dict = {"libbpf": lb.version(), "externs": externs, "maps": [], "programs": [], "timing": self.timing}
        try:
            self.first = self.open()
        except lb.LibbpfError as e:
            result["open"] = {"ok": False, "errno": e.errno, "message": e.message, "libbpf_log": "\n".join(e.messages)}
            if legacy.is_legacy(result["open"]["libbpf_log"]):  # libbpf 1.x refuses it; older loaders did not
                try:
                    result.update(legacy.check(self, e.messages))
                    result["open"].update(ok=True, errno=None, message=None)
                except legacy.Unsupported as why:
                    result["facts"] = [fact("legacy_unsupported", kind=why.kind, **why.params)]
            add_facts(result)
            return result
        result["open"] = {"ok": True, "errno": None, "message": None, "libbpf_log": "\n".join(self.first.open_log)}
        self.inventory(self.first, elf)
        t = self._lap("open_ms", t)
        obj = self.load_all()
        t = self._lap("load_all_ms", t)
        self.attach_checks(obj)
        t = self._lap("attach_ms", t)
        self.full_logs()
        t = self._lap("full_logs_ms", t)
        for name in self.failed_maps:
            for p in self.progs:
                if p.verdict == "rejected" and f"'{name}'" in (p.message or ""):
                    p.message = f"{p.message} ({self.map_messages.get(name, 'the map failed to create')})"
        for name, note in self.map_notes.items():
            if name in self.maps:
                self.maps[name]["note"] = note
        result["maps"] = list(self.maps.values())
        result["programs"] = [p.record() for p in self.progs]
        if self.object_load is None and self.progs:
            self.object_load = self.load_as_declared()
            t = self._lap("as_declared_ms", t)
        if self.object_load is not None:
            result["object_load"] = self.object_load
        notes = [*self.map_notes.values(), *self.global_notes.values()]
        if notes:  # every verdict of the object rests on those sizes and values: each says so
            notes = [f"[compat: {note}]" for note in notes]
            for record in result["programs"]:
                record["libbpf_log"] = "\n".join([*notes, record["libbpf_log"]]).rstrip("\n")
        add_facts(result)
        return result


def add_facts(result: dict) -> None:
    """The facts of a check result (wire/facts.py): on every rejected program, the agent's own
    (its record's) then what the texts the host used to read say (its message, libbpf's lines,
    its verifier log, the object's open log: textfacts.py reads them here, where they are); on the
    object, when libbpf could not open it, what its open failure says. The host classifies from
    these alone."""
    opened = result.get("open") or {}
    open_log = opened.get("libbpf_log") or ""
    if not opened.get("ok"):
        said = program_facts(opened.get("message"), None, None, open_log)
        result["facts"] = _bounded([*said, *result.get("facts", [])])
    maps = [str(m.get("name")) for m in result.get("maps") or []]
    for record in result.get("programs") or []:
        if record.get("verdict") == "rejected":
            said = program_facts(record.get("message"), record.get("libbpf_log"), record.get("log"), open_log, maps)
            record["facts"] = _bounded([*record.get("facts", []), *said])


def _bounded(facts: list[Fact]) -> list[Fact]:
    """At most FACTS_MAX facts (what the host takes): the maps a text names give way first (an
    object with thousands of maps), then the last facts."""
    if len(facts) <= FACTS_MAX:
        return facts
    named = [f for f in facts if f["code"] == "map_mentioned"]
    room = max(FACTS_MAX - (len(facts) - len(named)), 0)
    kept = {id(f) for f in named[:room]}
    return [f for f in facts if f["code"] != "map_mentioned" or id(f) in kept][:FACTS_MAX]


def first_failure(ret: int, lines: list[str], struct_ops: dict[str, dict]) -> dict:
    """The object-level verdict of a load as declared (the object_load record of the reply): it
    loaded, or what made it fail first: a program (the kernel refused it, or libbpf could not
    prepare it), a map the kernel could not create, or the object as a whole (externs, BTF)."""
    if ret == 0:
        return {"ok": True}
    err = -ret
    failed = [m.group(1) for line in lines if (m := _FAILED_LOAD_RE.match(line))]
    if not failed:
        failed = [m.group(1) for line in lines if (m := _PROG_LINE_RE.match(line)) and _PREPARE_RE.search(line)]
    if failed:
        return {"ok": False, "stage": "program", "name": failed[-1], "errno": err}
    maps = [m.group(1) for line in lines if (m := _MAP_FAILED_RE.match(line))]
    if maps:
        return {"ok": False, "stage": "map", "name": maps[-1], "errno": err}
    for line in reversed(lines):
        named = _STRUCT_OPS_MAP_RE.match(line)
        if named and named.group(1) in struct_ops:
            return {"ok": False, "stage": "map", "name": named.group(1), "errno": err}
    obj_lines = [line for line in _object_lines(lines) if not line.startswith("failed to load object")]
    message = (obj_lines or [lb.errno_text(err)])[-1]
    return {"ok": False, "stage": "object", "errno": err, "message": message[:TEXT_MAX]}


def obj_prog_fd(obj: lb.Object, name: str) -> int:
    """The fd of a loaded program of obj, -1 if it is not loaded."""
    prog = obj.program(name)
    return prog.fd if prog is not None else -1


def _describe_prepare(lines: list[str], message: str) -> str:
    """A prepare-stage failure in words."""
    for line in reversed(lines):
        m = re.search(r"failed to find kernel BTF type ID of '([^']+)'", line)
        if m:
            return f"attach target '{m.group(1)}' is not in this kernel's BTF ({message})"
    return message


def _u32(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32


@dataclass
class Knobs:
    """A request's loader knobs: --prog-flags ((glob, flags) rules, the first match wins),
    --inner-map (outer map -> (type, key size, value size, entries)), --map-size (map -> entries),
    and a selftest's own load settings (program -> (flags, log level): see CheckRequest.tests).
    Malformed entries of a request are left out (the host sends them well formed)."""

    prog_flags: list[tuple[str, int]] = field(default_factory=list)
    inner_maps: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    map_sizes: dict[str, int] = field(default_factory=dict)
    tests: dict[str, tuple[int, int]] = field(default_factory=dict)  # selftest program -> (flags, log level)

    @classmethod
    def from_request(cls, message: dict) -> Knobs:
        """The knobs of a check request."""
        knobs = cls()
        for r in message.get("prog_flags") or []:
            if isinstance(r, dict) and isinstance(r.get("glob"), str) and _u32(r.get("flags")):
                knobs.prog_flags.append((r["glob"], r["flags"]))
        for r in message.get("inner_maps") or []:
            names = ("type", "key_size", "value_size", "max_entries")
            shape = [x for k in names if isinstance(r, dict) and _u32(x := r.get(k)) and isinstance(x, int)]
            if len(shape) == len(names) and isinstance(r.get("map"), str):
                knobs.inner_maps[r["map"]] = (shape[0], shape[1], shape[2], shape[3])
        for r in message.get("map_sizes") or []:
            if isinstance(r, dict) and isinstance(r.get("map"), str) and _u32(r.get("max_entries")):
                knobs.map_sizes[r["map"]] = r["max_entries"]
        for r in message.get("tests") or []:
            if isinstance(r, dict) and isinstance(r.get("program"), str) and _u32(r.get("flags")):
                level = r.get("log_level")
                knobs.tests[r["program"]] = (r["flags"], level if isinstance(level, int) and 0 <= level <= 3 else 0)
        return knobs


def _global_value(g: object) -> bool:
    """Whether a request's --set-global write is well formed."""
    if not isinstance(g, dict) or not all(isinstance(g.get(k), str) for k in ("name", "section", "bytes")):
        return False
    try:
        bytes.fromhex(g["bytes"])
    except ValueError:
        return False
    return isinstance(g.get("offset"), int) and isinstance(g.get("value"), int)


def check(message: dict, payload: bytes) -> dict:
    """Answer a check request: per-program verdicts for the object in payload, under each
    privilege the request names (--privilege; root when it names none). The first privilege's
    check is the reply; with more than one, the reply's ``privileges`` holds the others' replies
    (a check_result, or an error reply when the kernel does not let it run), by privilege."""
    wanted = message.get("privileges")
    privileges = [p for p in wanted if p in privilege.PRIVILEGES] if isinstance(wanted, list) else []
    privileges = list(dict.fromkeys(privileges)) or [privilege.ROOT]
    replies = {p: _check_as(message, payload, p) for p in privileges}
    # The reply is the first check that gave a result (a mode the kernel refused does not hide the others').
    lead = next((p for p in privileges if replies[p].get("type") == "check_result"), privileges[0])
    first = replies.pop(lead)
    if len(privileges) > 1 or lead != privilege.ROOT:
        first["privilege"] = lead
    if replies:
        first["privileges"] = replies
    return first


def _check_as(message: dict, payload: bytes, mode: str) -> dict:
    """One check of the object under one privilege: the check_result, or an error reply. The
    kernel's log is read here, in the agent (reading /dev/kmsg takes CAP_SYSLOG under Debian's
    dmesg_restrict); the check itself runs in a child holding only mode's capabilities."""
    t0 = time.monotonic()
    btf = kernelbtf.install()  # once per guest (normally before the snapshot): libbpf's loads share it
    name = str(message.get("object") or "object.o")
    log = kernel_log()
    log.read()  # what came before this check is not its doing
    inject_test_splat(name)  # the test build of the image only
    if mode == privilege.ROOT:
        outcome = _check(message, payload)
    else:

        def work() -> dict:
            # The forked child has no time-limit watcher thread (threads do not survive fork): a new one.
            from compat_agent.bpf import timelimit

            timelimit._watcher = None
            return _check(message, payload)

        try:
            outcome = privilege.run_as(mode, work)
        except privilege.Unavailable as e:
            return privilege.unavailable_reply(mode, str(e), message.get("id"))
    if "error" in outcome:
        return outcome["error"]
    result = outcome["result"]
    privilege.add_permission_facts(result, mode)
    warned = splats(log.read())
    if warned:  # the kernel warned while this object was checked (its verdicts may still be accepted)
        result["kernel_warnings"] = warned
    reply = {
        "type": "check_result",
        "id": message.get("id"),
        "object": name,
        "duration_ms": round((time.monotonic() - t0) * 1000, 3),
        "kernel_btf": btf,
        **result,
    }
    if mode != privilege.ROOT:
        reply["privilege"] = mode
    return reply


def _check(message: dict, payload: bytes) -> dict:
    """The check of the object in this process (the agent as root, or the child holding a
    privilege's capabilities): {"result": the check_result's fields} or {"error": an error reply}."""
    name = str(message.get("object") or "object.o")
    elf = message.get("elf") if isinstance(message.get("elf"), dict) else None
    limit = message.get("program_timeout")
    limit = float(limit) if isinstance(limit, (int, float)) and limit > 0 else None
    rules = parse_rules(message.get("program_types"))
    values = [g for g in message.get("globals") or [] if _global_value(g)]
    targets = parse_rules(message.get("attach_targets"))
    checker = Checker(
        payload, name, bool(message.get("attach", True)), message.get("kconfig"), elf, limit, rules, values, targets,
        Knobs.from_request(message),
    )  # fmt: skip
    try:
        return {"result": checker.run()}
    except Exhausted as e:  # the guest's limit, not the object's verdict
        return {"error": exhausted_reply(e, message.get("id"))}
    except MemoryError:  # the agent's own allocations (buffers, logs)
        return {"error": exhausted_reply(Exhausted(MEMORY, errno_mod.ENOMEM, "agent"), message.get("id"))}
    except OSError as e:
        if e.errno not in FILE_ERRNOS:
            raise
        return {"error": exhausted_reply(Exhausted(OPEN_FILES, e.errno, "agent"), message.get("id"))}
    finally:
        checker.close_inner_maps()
