"""`compat check`: every program of every object on every kernel of the matrix.

objects (validated on the host) ─► fleet (one warm guest per kernel) ─► per kernel: probe
(cached) + one check request per object ─► classify rejections ─► RunResult.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compat_agent.elf.analysis import ElfInfo, analyze_elf, elf_to_json
from compat_agent.elf.sections import CONTEXT, OPTION

from compat.cache import Cache, sha256_json
from compat.errors import CompatError
from compat.guest import guestmsg
from compat.guest.fleet import Fleet, Outcome, Session
from compat.guest.guestmsg import TIMEOUT
from compat.guest.vm import DEFAULT_MEMORY_MB, GuestError, GuestTimeout
from compat.kernels.matrix import KernelSpec
from compat.kernels.modsyms import ModuleIndex, retargeted_section, wanted_functions
from compat.kernels.sources import Kernel
from compat.kernels.version import version_key
from compat.objects.globalvars import Assignment
from compat.objects.objfile import BadObject, BpfObject, NoPrograms, objects_in, read_objects
from compat.objects.sourcemap import locate
from compat.progress import Stage
from compat.results.classify import Classified, classify, kernel_warnings, object_load
from compat.results.inventory import Inventory, merged_helper_names
from compat.results.model import ACCEPTED, ERROR, REJECTED, KernelInfo, ObjectInfo, ProgramResult, RunResult
from compat.results.privilege import ROOT, UNPRIVILEGED, UNPRIVILEGED_CMDLINE, column, columns

from .options import DEFAULT_PROGRAM_TIMEOUT, RequestContext, cache_key, recorded, request_fields
from .options import OPTIONS as CHECK_OPTIONS
from .privileges import privilege_parts, privilege_reply
from .resultcache import CachedResult, ResultCache, apply_kfunc_slice
from .schedule import COLD_BOOT_SECONDS, RESTORE_SECONDS, History, KernelQueue, Scheduler
from .shard import Shard, baseline_plan, plan

PROBE_KIND = "probes"
# In a validated check_result: symbol -> the module the host loaded first because it defines it
# (set by the host after validation, so never the guest's word; cached with the reply).
HOST_MODULES = "host_modules"
DEFAULT_OBJECT_TIMEOUT = 900.0  # big multi-program objects under software emulation are slow
PROBE_TIMEOUT = 300.0


@dataclass
class CheckOptions:
    """Everything a check is told. The fields named in run/options.py's table (attach, memory_mb,
    program_timeout, program_types, global_values, attach_targets) come from its rows: the
    command line, the request, the result cache key and the recorded options follow the table."""

    attach: bool = True
    jobs: int | None = None
    refresh: bool = False
    object_timeout: float = DEFAULT_OBJECT_TIMEOUT
    program_timeout: float | None = DEFAULT_PROGRAM_TIMEOUT  # seconds of verification per program
    memory_mb: int = DEFAULT_MEMORY_MB  # per guest
    deadline: float | None = None  # time.monotonic() when the whole run must end (--timeout)
    test_faults: bool = False  # compat's own tests only: the fault-injection guest image
    result_cache: bool = True  # reuse the guest's verdicts on unchanged objects (--no-cache: off)
    shard: Shard | None = None  # check only this part of the kernel × object matrix (--shard I/N)
    program_types: tuple[tuple[str, str], ...] = ()  # (glob, libbpf section): --program-type
    global_values: tuple[Assignment, ...] = ()  # --set-global
    attach_targets: tuple[tuple[str, str], ...] = ()  # (glob, target): --attach-target
    prog_flags: tuple[tuple[str, int], ...] = ()  # (glob, BPF_F_* or-ed): --prog-flags
    inner_maps: tuple[tuple[str, int, int, int, int], ...] = ()  # (outer, type, key, value, entries): --inner-map
    map_sizes: tuple[tuple[str, int], ...] = ()  # (map, max_entries): --map-size
    privileges: tuple[str, ...] = ()  # --privilege's modes, each a column (): root alone, as always
    # Directories source lines may be read from (sourcemap.source_roots: the current directory and
    # --source-root); None: the current directory. Not in the result cache key: no verdict depends on it.
    source_roots: tuple[Path, ...] | None = None

    def values(self) -> dict[str, Any]:
        """The values of the table's options, by row name (what run/options.py's functions take)."""
        return {o.name: getattr(self, o.name) for o in CHECK_OPTIONS}


@dataclass
class KernelWork:
    """What one kernel's guest produced: guest replies per object, or the error that stopped one."""

    inventory: Inventory = field(default_factory=Inventory)
    replies: dict[str, dict] = field(default_factory=dict)  # object sha256 -> check_result
    failures: dict[str, GuestError] = field(default_factory=dict)  # object sha256 -> what killed the guest
    stage: Stage | None = None  # the kernel's live progress (objects checked), advanced by its helpers too


def locate_sources(
    obj: BpfObject,
    judged: list[tuple[ProgramResult, Classified | None]],
    roots: tuple[Path, ...] | None = None,
) -> None:
    """Record the source line of each rejection while the object is at hand (reports need no object),
    at the call of a helper or kfunc its classification blamed when there is one; source files are
    read only under roots (sourcemap.source_roots; None: the current directory)."""
    for r, c in judged:
        if r.verdict == REJECTED and r.reason != "not_permitted":  # the type's, not a line's (--privilege)
            helpers, kfuncs = (c.helpers, c.kfuncs) if c else ((), ())
            loc = locate(obj.data, obj.path, r.program, r.section or None, r.log, roots, helpers, kfuncs)
            r.source = loc.to_json() if loc else None


def selftest_loads(obj: BpfObject) -> list[dict[str, Any]]:
    """How a kernel selftest object's own loader (test_loader) loads its annotated programs:
    their __flag()s, and the log level their expected messages are read at (the check request's
    ``tests``; [] for an object without annotations). The agent loads them so, as test_loader
    would, and keeps the log of an accepted one too, so that its messages can be judged."""
    out = []
    for name, spec in obj.test_specs.specs.items():
        flags, level = spec.load()
        if flags or level:
            out.append({"program": name, "flags": flags, "log_level": level})
    return out


def judge_expectations(obj: BpfObject, results: list[ProgramResult]) -> None:
    """Judge the results of a selftest object's annotated programs against their annotations
    (the kernel's BPF selftests declare their expected verdicts and messages as BTF decl tags)."""
    from compat.results.expectation import apply

    found = obj.test_specs
    if found.annotated:
        apply({name: spec.to_json() for name, spec in found.specs.items()}, results, found.malformed)


def load_objects(paths: list[str]) -> tuple[list[BpfObject], list[ObjectInfo], list[str]]:
    """Validate every input; bad ones become one-line errors, the rest are checked. A file given
    twice is checked once; a binary stands for the BPF objects embedded in it, a directory for
    the BPF object files under it (those without programs left out)."""
    objects, infos, errors = [], [], []
    given: dict[str, str] = {}  # absolute path -> the first spelling of that file
    from_directory: set[str] = set()
    for p in paths:
        if not os.path.isdir(p):
            given.setdefault(os.path.abspath(p), p)
            continue
        try:
            inside = objects_in(Path(p))
            if not inside:
                errors.append(f"{p}: no BPF object file under this directory")
        except BadObject as e:
            inside = []
            errors.append(str(e))
        for found in inside:
            given.setdefault(os.path.abspath(found), str(found))
            from_directory.add(os.path.abspath(found))
    for absolute, name in display_names(list(given)).items():
        path = given[absolute]
        try:
            found = read_objects(path)
        except BadObject as e:
            if isinstance(e, NoPrograms) and absolute in from_directory:
                continue  # a library to link, or BTF only, among a directory's objects
            errors.append(str(e))
            infos.append(ObjectInfo(object=name, path=str(path), error=str(e)))
            continue
        for obj in found:
            # An object embedded in a binary is named binary:source.o: the binary's name as shown.
            obj = replace(obj, name=name + obj.name[len(obj.path.name) :])
            objects.append(obj)
            infos.append(ObjectInfo(obj.name, str(obj.path), obj.sha256, obj.size, [p.name for p in obj.programs]))
    return objects, infos, errors


def display_names(paths: list[str]) -> dict[str, str]:
    """{absolute path: its name in results}: the file name, or as many of its last path components
    as it takes to tell apart files of the same name (a/k.o, b/k.o): results are keyed by it."""
    parts = {p: Path(p).parts for p in paths}
    depth = dict.fromkeys(paths, 1)
    while True:
        names = {p: str(Path(*parts[p][-depth[p] :])) for p in paths}
        seen: dict[str, list[str]] = {}
        for p, n in names.items():
            seen.setdefault(n, []).append(p)
        clashes = [p for group in seen.values() if len(group) > 1 for p in group if depth[p] < len(parts[p])]
        if not clashes:
            return names
        for p in clashes:
            depth[p] += 1


@functools.lru_cache(maxsize=1024)
def elf_analysis(data: bytes) -> ElfInfo | None:
    """The agent's ELF analysis of an object's bytes (None: the object defeats it), made once per
    run: --set-global's check before anything boots and the check request share it (a run's
    objects are in memory anyway; the bound is for long-lived callers such as the fuzzer)."""
    try:
        return analyze_elf(data)
    except (ValueError, struct.error, IndexError):
        return None


def check_request(
    name: str,
    data: bytes,
    attach: bool,
    program_timeout: float | None = None,
    program_types: tuple[tuple[str, str], ...] = (),
    global_values: tuple[Assignment, ...] = (),
    attach_targets: tuple[tuple[str, str], ...] = (),
) -> dict:
    """The agent's check request for one object (sent with its bytes). It carries the agent's ELF
    analysis (externs, what each program calls), made here once instead of in every guest under
    emulation; without it ({}: the analysis failed) the agent makes its own. The options' fields
    come from run/options.py's table: program_timeout: seconds the verifier may spend on one
    program (None: no limit); program_types: (glob, libbpf section) pairs, --program-type;
    global_values: --set-global; attach_targets: (glob, target) pairs, --attach-target."""
    values = {"attach": attach, "program_timeout": program_timeout, "program_types": program_types,
              "global_values": global_values, "attach_targets": attach_targets}  # fmt: skip
    return request_for(name, data, values)


def request_for(name: str, data: bytes, values: dict[str, Any]) -> dict[str, Any]:
    """The check request for one object with the table's option values (CheckOptions.values())."""
    info = elf_analysis(data)
    context = RequestContext(name, info.variables if info else {})
    return {"type": "check", "object": name, "elf": elf_to_json(info) if info else {},
            **request_fields(values, context)}  # fmt: skip


def reply_verdicts(replies: Iterable[dict[str, Any]]) -> list[Any]:
    """The verdicts of every program of the (validated) check replies, under every privilege
    (--privilege: each mode's check is a part of the one reply, and each counts)."""
    return [p.get("verdict") for r in replies for part in privilege_parts(r)
            for p in part.get("programs") or [] if isinstance(p, dict)]  # fmt: skip


class Checker:
    """Runs objects on a fleet and turns guest replies into results."""

    def __init__(self, cache: Cache, specs: list[KernelSpec], options: CheckOptions):
        self.cache = cache
        self.options = options
        self.progress: Callable[[str], None] | None = None  # one line per finished kernel
        self._seconds: dict[tuple[str, str], float] = {}  # (kernel id, object sha256) -> seconds
        self._requests: dict[str, dict] = {}  # object sha256 and file name -> its check request
        self._indexes: dict[str, ModuleIndex] = {}  # kernel key -> the functions of its modules
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.fleet = Fleet(
            cache, specs, jobs=options.jobs, refresh=options.refresh, memory_mb=options.memory_mb,
            test_faults=options.test_faults,
        )  # fmt: skip
        if UNPRIVILEGED in options.privileges:
            # The guests boot with mitigations=off (faster under emulation), and recent verifiers (6.12
            # here, not 6.1) then skip their speculation checks for unprivileged programs too
            # (bpf_bypass_spec_v1 and _v4 follow cpu_mitigations_off()): the unprivileged column needs
            # them on, as on any machine that runs with the default. Root and caps are not affected
            # (CAP_PERFMON bypasses them).
            self.fleet.extra_cmdline = UNPRIVILEGED_CMDLINE

    def _image_key(self, kernel_key: str) -> str:
        """The key of the guest image the kernel of kernel_key boots (its architecture's)."""
        arch = next((r.spec.arch for r in self.fleet.resolved.values() if r.key == kernel_key), None)
        image = self.fleet.image_for(arch) if arch else self.fleet.image
        assert image is not None
        return image.key

    def _probe_key(self, kernel_key: str, kfuncs: list[str], parts: list[str] | None) -> str:
        image_key = self._image_key(kernel_key)
        return sha256_json({"kernel": kernel_key, "image": image_key, "kfuncs": sorted(kfuncs), "parts": parts})

    def cached_probe(self, kernel_key: str, kfuncs: list[str], parts: list[str] | None = None) -> Inventory | None:
        """The kernel's inventory if it was probed before (no guest needed), else None."""
        entry = self.cache.lookup(PROBE_KIND, self._probe_key(kernel_key, kfuncs, parts))
        return Inventory.from_probe(entry.meta["probe"]) if entry and "probe" in entry.meta else None

    def probe(self, session: Session, kfuncs: list[str], parts: list[str] | None = None) -> Inventory:
        """The kernel's inventory, probed in its guest once per kernel, image, kfunc set and parts
        (parts=["kfuncs"] skips the helper sweep when only kfuncs are wanted)."""
        key = self._probe_key(session.kernel.key, kfuncs, parts)

        def build(dest) -> dict:
            request = {"type": "probe", "kfuncs": sorted(kfuncs), **({"parts": parts} if parts else {})}
            reply, _ = session.request(request, timeout=PROBE_TIMEOUT)
            if reply.get("type") != "probe_result":
                raise GuestError(f"{session.kernel.id}: probe failed: {guestmsg.describe_error(reply)}")
            # Checked before it is cached: a broken guest must not poison later runs.
            return {"probe": guestmsg.validate(reply, "probe_result", session.kernel.id, session.vm.console_tail())}

        return Inventory.from_probe(self.cache.ensure(PROBE_KIND, key, build).meta["probe"])

    def _work(self, scheduler: Scheduler, state: dict[str, KernelWork]):
        def work(session: Session, kernel: Kernel) -> KernelWork:
            # State survives a reboot of the guest: objects already checked are not redone.
            kw = state.setdefault(kernel.id, KernelWork())
            queue = scheduler.started(kernel.id, kernel)
            kw.inventory = self.probe(session, [])
            # A live count of the kernel's objects on a terminal; no line of its own (the line
            # of _finished says how the kernel ended).
            with queue.cond:
                total = len(queue.pending) + queue.in_flight
            with self.cache.progress.stage(f"checking on {kernel.id}", total, "objects") as kw.stage:
                self._drain(session, queue, kw, owner=True)
            kw.stage = None
            used = sorted(
                {e["name"] for r in kw.replies.values() for e in r.get("externs") or [] if e.get("kind") == "kfunc"}
            )
            if used:
                kfunc_inv = self.probe(session, used, parts=["kfuncs"])
                kw.inventory.kfunc_allowed.update(kfunc_inv.kfunc_allowed)
                kw.inventory.kfuncs |= kfunc_inv.kfuncs
                kw.inventory.kfuncs_checked |= set(used)
            self._finished(kernel.id, kw)
            if scheduler.all_started():
                session.close()  # this worker's core goes to the kernels with work left
                self._help(scheduler, state)
            return kw

        return work

    def _drain(self, session: Session, queue: KernelQueue, kw: KernelWork, owner: bool) -> None:
        """Check objects from a kernel's queue on this guest until the queue is empty (the
        kernel's own guest also waits for its helpers' last objects)."""
        while True:
            obj = queue.take()
            if obj is None:
                if not owner or queue.wait_idle():
                    return
                continue
            finished = False
            try:
                if obj.sha256 not in kw.replies and obj.sha256 not in kw.failures:
                    t0 = time.monotonic()
                    kw.replies[obj.sha256] = self._check_one(session, obj, kw)
                    self._seconds[(queue.kernel_id, obj.sha256)] = time.monotonic() - t0
                finished = True
            finally:
                queue.done(obj, unchecked=not finished)
                if finished and kw.stage is not None:
                    kw.stage.advance()

    def _help(self, scheduler: Scheduler, state: dict[str, KernelWork]) -> None:
        """Lend this worker to the kernels with the most work left, on a second guest of theirs."""
        while (queue := scheduler.pick()) is not None:
            assert queue.kernel is not None
            helper = Session(self.fleet, queue.kernel)
            with queue.cond:
                queue.helpers += 1
            try:
                helper.boot()
                self._drain(helper, queue, state[queue.kernel_id], owner=False)
            except CompatError:
                queue.no_help = True  # no second guest for this kernel: its own guest does the rest
            finally:
                with queue.cond:
                    queue.helpers -= 1
                helper.close()

    def _spare(self, scheduler: Scheduler, state: dict[str, KernelWork]) -> None:
        """A worker the fleet does not need (fewer kernels than jobs): helps from the start."""
        while not scheduler.stopped:
            self._help(scheduler, state)
            scheduler.wait_for_work()

    def _finished(self, kernel_id: str, kw: KernelWork, cached: bool = False) -> None:
        """Tell the progress callback that one kernel is done."""
        if self.progress is None:
            return
        verdicts = reply_verdicts(kw.replies.values())
        accepted = sum(1 for v in verdicts if v == ACCEPTED)
        how = "from the result cache" if cached else f"after {time.monotonic() - self._t0:.1f} s"
        errors = f", {len(kw.failures)} object(s) without a verdict" if kw.failures else ""
        n_modes = len(self.options.privileges)
        modes = f" checked under {n_modes} privilege(s)" if n_modes > 1 else ""
        resolved = self.fleet.resolved.get(kernel_id)
        name = f"{kernel_id} ({resolved.version})" if resolved and resolved.version not in kernel_id else kernel_id
        self.progress(
            f"{name}: {len(verdicts)} program(s){modes}, {accepted} accepted, {len(verdicts) - accepted} rejected"
            f"{errors} ({how})"
        )

    def _request(self, obj: BpfObject) -> dict:
        """The check request for an object (its ELF analysis made once per run)."""
        name = os.path.basename(obj.name)  # the file name, as a loader's libbpf would have it (not a/k.o)
        key = f"{obj.sha256}:{name}"
        found = self._requests.get(key)
        if found is None:
            found = self._requests[key] = request_for(name, obj.data, self.options.values())
            tests = selftest_loads(obj)
            if tests:
                found["tests"] = tests
        return found

    def _modules(self, obj: BpfObject, kernel: Kernel) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
        """The modules of a kernel that define functions the object names (see modsyms.py)."""
        if kernel.modules is None:
            return {}, []
        with self._lock:
            index = self._indexes.setdefault(kernel.key, ModuleIndex(self.cache, kernel))
        request = self._request(obj)
        targets = self.options.attach_targets
        sections = [retargeted_section(p.name, p.section, targets) for p in obj.programs]
        return index.modules_for(wanted_functions(sections, (request.get("elf") or {}).get("externs") or []))

    def _load_modules(self, session: Session, obj: BpfObject) -> tuple[list[str], dict[str, str]]:
        """Have the guest load the modules the object needs: notes on what was loaded, for its
        results to show, and which module the host loaded first for which symbol (the classifier's)."""
        owners, modules = self._modules(obj, session.kernel)
        vm = session.vm
        todo = [(n, b) for n, b in modules if n not in vm.modules_loaded]
        failed: dict = {}
        if todo:
            message = {"type": "load_modules", "modules": [{"name": n, "size": len(b)} for n, b in todo]}
            reply, _ = session.request(message, b"".join(b for _, b in todo), timeout=self.options.object_timeout)
            if reply.get("type") != "modules_loaded":
                why = guestmsg.describe_error(reply)
                raise GuestError(f"{session.kernel.id}: the agent failed to load modules: {why}")
            failed = reply.get("failed") if isinstance(reply.get("failed"), dict) else {}
            vm.modules_loaded.update(n for n, _ in todo if n not in failed)
        notes = []
        loaded = {symbol: module for symbol, module in owners.items() if module not in failed}
        for module in sorted(set(owners.values())):
            uses = ", ".join(f for f, m in owners.items() if m == module)
            if module in failed:
                notes.append(f"[compat: module {module} (defines {uses}) failed to load: {str(failed[module])[:200]}]")
            else:
                notes.append(f"[compat: module {module} loaded first: it defines {uses}]")
        return notes, loaded

    def _check_one(self, session: Session, obj: BpfObject, kw: KernelWork) -> dict:
        """One object on one guest; a guest that dies on it is rebooted and tried once more."""
        request = self._request(obj)
        for attempt in (1, 2):
            try:
                notes, loaded = self._load_modules(session, obj)
                reply, _ = session.request(request, obj.data, timeout=self.options.object_timeout)
                if reply.get("type") == "check_result":
                    reply = guestmsg.validate(reply, "check_result", session.kernel.id, session.vm.console_tail())
                    # --privilege: the other modes' replies, each checked as the first one is
                    for part in privilege_parts(reply, session.kernel.id, session.vm.console_tail()):
                        part[HOST_MODULES] = loaded  # the host's own (whatever the guest put there), cached with it
                        for program in part.get("programs") or [] if notes else []:
                            program["libbpf_log"] = "\n".join([*notes, program.get("libbpf_log") or ""]).rstrip("\n")
                    return reply
                why = guestmsg.describe_error(reply)
                raise GuestError(f"{session.kernel.id}: the agent failed on {obj.name}: {why}")
            except GuestError as e:
                if isinstance(e, GuestTimeout):
                    # Verifying is deterministic: a second try would take as long (a program the
                    # verifier works on for minutes under emulation), and hold this kernel's queue.
                    e = GuestTimeout(
                        f"{session.kernel.id}: {obj.name} was not done within the object timeout "
                        f"({self.options.object_timeout:g} s; --object-timeout): the verifier may be that slow on "
                        "one of its programs on this kernel under emulation",
                        e.console_tail,
                    )
                if attempt == 2 or isinstance(e, GuestTimeout):
                    kw.failures[obj.sha256] = e
                    session.reboot()
                    return {}
                session.reboot()
        return {}

    def run(self, objects: list[BpfObject], infos: list[ObjectInfo]) -> RunResult:
        """Check every object on every kernel; never raises for a single kernel's failure."""
        return self.run_groups([(objects, infos)])[0]

    def run_groups(self, groups: list[tuple[list[BpfObject], list[ObjectInfo]]]) -> list[RunResult]:
        """Check several groups of objects in one run (the same guests), one RunResult per group:
        `--baseline-object` checks the baseline objects next to the new ones, on the same kernels."""
        with self._deadline():  # from the start: fetching kernels and building the image count too
            return self._run_groups(groups)

    def _run_groups(self, groups: list[tuple[list[BpfObject], list[ObjectInfo]]]) -> list[RunResult]:
        self.fleet.prepare()
        image = self.fleet.image
        assert image is not None
        state: dict[str, KernelWork] = {}
        t0 = self._t0 = time.monotonic()
        # Which objects go on which kernel: everything, or this shard's cells (the baseline
        # builds follow the objects they are paired with).
        kernel_ids = [s.id for s in self.fleet.specs]
        plans = [plan(kernel_ids, groups[0][0], self.options.shard)]
        for objects, _ in groups[1:]:
            plans.append(baseline_plan(plans[0], objects) if self.options.shard else plan(kernel_ids, objects, None))
        todo: dict[str, list[BpfObject]] = {}
        for p in plans:
            for kid, objs in p.items():
                merged = {o.sha256: o for o in todo.get(kid, []) + objs}
                todo[kid] = list(merged.values())
        results_cache = ResultCache(
            self.cache, image.key, cache_key(self.options.values()), enabled=self.options.result_cache,
            images={arch: self.fleet.image_for(arch).key for arch in self.fleet.arches},
        )
        served, hits = self._from_cache(results_cache, todo, state)
        history = History(self.cache)
        # Newer kernels boot slower (7.2: 3.5 s, 6.1: 2.3 s cold): with no history, they go first.
        newest_first = sorted(todo, key=lambda kid: version_key(self.fleet.resolved[kid].version), reverse=True)
        queues = {
            kid: KernelQueue(
                kid,
                deque(o for o in todo[kid] if o.sha256 not in state[kid].replies),
                {o.sha256: history.object_seconds(self.fleet.resolved[kid].key, o) for o in todo[kid]},
                history.boot_seconds(self.fleet.resolved[kid].key, image.key),
            )
            for kid in newest_first
            if kid not in served
        }
        scheduler = Scheduler(queues, self.fleet.jobs, RESTORE_SECONDS if self.fleet.snapshots else COLD_BOOT_SECONDS)
        vm_outcomes: list[Outcome] = []
        if queues:
            spares = [threading.Thread(target=self._spare, args=(scheduler, state), daemon=True)
                      for _ in range(scheduler.spare_workers())]  # fmt: skip
            for t in spares:
                t.start()
            try:
                vm_outcomes = self.fleet.run(
                    self._work(scheduler, state), only=set(queues), first=scheduler.start_order()
                )
            finally:
                scheduler.stop()
                for t in spares:
                    t.join()
        wall = round(time.monotonic() - t0, 2)
        by_id = {o.spec.id: o for o in vm_outcomes}
        outcomes: list[Outcome] = []
        for spec in self.fleet.specs:
            if spec.id in served:
                hit = hits[spec.id]
                outcomes.append(Outcome(spec=spec, value=state[spec.id], hello=dict(hit.hello)))
            elif spec.id in by_id:
                outcomes.append(by_id[spec.id])
        self._remember(results_cache, history, image.key, todo, outcomes, state)
        names = merged_helper_names([o.value.inventory for o in outcomes if o.value])
        image_info = {"suite": image.suite, "python": image.python, "libbpf": image.libbpf, "key": image.key[:16]}
        # The table's options (run/options.py) recorded always first, those set after the run's own.
        options: dict = {**recorded(self.options.values(), always=True), "wall_seconds": wall}
        if results_cache.enabled:
            options["result_cache"] = {"hits": results_cache.hits, "misses": results_cache.misses}
        if self.options.shard:
            options["shard"] = self.options.shard.to_json()
        options.update(recorded(self.options.values(), always=False))
        runs = []
        for (objects, infos), group_plan in zip(groups, plans, strict=True):
            results: list[ProgramResult] = []
            here = [o for o in outcomes if o.spec.id in group_plan]
            for obj in objects:
                for o in here:
                    if all(x.sha256 != obj.sha256 for x in group_plan[o.spec.id]):
                        continue
                    for mode in self.options.privileges or (ROOT,):  # each privilege is a column
                        judged = self._judged(obj, o, state.get(o.spec.id), names, mode)
                        locate_sources(obj, judged, self.options.source_roots)
                        found = [r for r, _ in judged]
                        judge_expectations(obj, found)
                        results.extend(found)
            checked = {x.sha256 for objs in group_plan.values() for x in objs}
            runs.append(
                RunResult(
                    kernels=[
                        column_info
                        for o in here
                        for column_info in columns(
                            self._served_info(self._kernel_info(o), hits.get(o.spec.id)), self.options.privileges
                        )
                    ],
                    objects=[i for i in infos if i.sha256 is None or i.sha256 in checked],
                    results=results,
                    image=dict(image_info),
                    options=dict(options),
                )
            )
        return runs

    def _from_cache(
        self, results_cache: ResultCache, todo: dict[str, list[BpfObject]], state: dict[str, KernelWork]
    ) -> tuple[set[str], dict[str, CachedResult]]:
        """Fill each kernel's work with the cached verdicts; the kernels that need no guest at all
        (every object and the kernel's probe cached) and one cached result of each."""
        served: set[str] = set()
        hits: dict[str, CachedResult] = {}
        for kid, objs in todo.items():
            kw = state[kid] = KernelWork()
            kernel_key = self.fleet.resolved[kid].key
            found = []
            for obj in objs:
                hit = results_cache.get(obj.sha256, obj.name, kernel_key, self.fleet.resolved[kid].spec.arch)
                if hit is not None:
                    kw.replies[obj.sha256] = hit.reply
                    found.append(hit)
            if found and len(found) == len(objs):
                inventory = self.cached_probe(kernel_key, [])
                if inventory is not None:
                    for hit in found:
                        apply_kfunc_slice(inventory, hit.kfuncs)
                    kw.inventory = inventory
                    served.add(kid)
                    hits[kid] = found[0]
                    self._finished(kid, kw, cached=True)
        return served, hits

    def _remember(
        self,
        results_cache: ResultCache,
        history: History,
        image_key: str,
        todo: dict[str, list[BpfObject]],
        outcomes: list[Outcome],
        state: dict[str, KernelWork],
    ) -> None:
        """Keep what the guests said (kernels without an error only) and how long it took."""
        for o in outcomes:
            kw = state.get(o.spec.id)
            if o.kernel is None or kw is None or o.error is not None:
                continue
            kernel_key = self.fleet.resolved[o.spec.id].key
            seconds = {}
            for obj in todo.get(o.spec.id, []):
                took = self._seconds.get((o.spec.id, obj.sha256))
                if took is None:
                    continue  # from the cache
                seconds[obj.sha256] = seconds[obj.name] = took
                reply = kw.replies.get(obj.sha256) or {}
                # A program stopped at the time limit has no verdict (and another limit may give one).
                timed_out = any(p.get("verdict") == TIMEOUT for part in privilege_parts(reply)
                                for p in part.get("programs") or [])  # fmt: skip
                if obj.sha256 not in kw.failures and not timed_out:
                    results_cache.put(
                        obj.sha256, obj.name, kernel_key, reply, kw.inventory, o.hello,
                        self.fleet.accels.get(o.spec.arch, self.fleet.accel), o.spec.arch,
                    )  # fmt: skip
            boot = o.boot_seconds if o.boot_seconds and o.boot_seconds < 4 * RESTORE_SECONDS else RESTORE_SECONDS
            history.record(kernel_key, image_key, boot, seconds)
        history.save()

    def _served_info(self, info: KernelInfo, hit: CachedResult | None) -> KernelInfo:
        """A kernel whose results all came from the cache: what its guest said back then."""
        if hit is None:
            return info
        resolved = self.fleet.resolved.get(info.id)
        if resolved is not None and not info.packages:
            info.packages = [f"{p.name}={p.version}" for p in resolved.packages]
        info.accel = info.accel or hit.accel
        if resolved is not None and not info.release:
            info.release = resolved.release
        return info

    @contextlib.contextmanager
    def _deadline(self):
        """At the run deadline, kill every guest: unfinished cells become errors, results so far stay."""
        if self.options.deadline is None:
            yield
            return
        timer = threading.Timer(
            max(self.options.deadline - time.monotonic(), 0.0), self.fleet.cancel, ("run deadline exceeded",)
        )
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _kernel_info(self, o: Outcome) -> KernelInfo:
        k, h = o.kernel, o.hello or {}
        resolved = self.fleet.resolved.get(o.spec.id)
        return KernelInfo(
            id=o.spec.id,
            label=o.spec.label,
            version=k.version if k else (resolved.version if resolved else "?"),
            release=h.get("release") or (k.release if k else None),
            source=o.spec.source,
            packages=list(k.packages) if k else [],
            libbpf=h.get("libbpf"),
            accel=self.fleet.accels.get(o.spec.arch, self.fleet.accel),
            arch=o.spec.arch,
            btf=h.get("btf"),
            boot_seconds=round(o.boot_seconds, 2) if o.boot_seconds else None,
            order=o.spec.order,
            required=o.spec.required,
            error=str(o.error) if o.error else None,
            # A point release of an expanded series (its spec keeps the series): grouped in the reports.
            series=o.spec.series if o.spec.series and o.spec.version else None,
        )

    def _results(self, obj: BpfObject, o: Outcome, kw: KernelWork | None, names: dict[int, str]) -> list[ProgramResult]:
        """The results of an object's programs on one kernel."""
        return [r for r, _ in self._judged(obj, o, kw, names)]

    def _judged(
        self, obj: BpfObject, o: Outcome, kw: KernelWork | None, names: dict[int, str], mode: str = ROOT
    ) -> list[tuple[ProgramResult, Classified | None]]:
        """The results of an object's programs on one kernel under one privilege (its column),
        each with its classification (None unless the program was rejected): what it blames
        locates the rejection in the source."""
        kernel = column(o.spec.id, mode)
        base: dict[str, Any] = {"object": obj.name, "object_sha256": obj.sha256, "kernel": kernel, "privilege": mode}
        sections = {p.name: p.section for p in obj.programs}
        failure = (kw.failures.get(obj.sha256) if kw else None) or (o.error if o.error else None)
        reply = privilege_reply(kw.replies.get(obj.sha256), mode) if kw else None
        if not reply or reply.get("type") == "error":
            # No reply, or the kernel did not let the check run under this privilege (an error
            # cell with the agent's reason, not a rejection).
            err = failure or CompatError(guestmsg.describe_error(reply) if reply else "no result from the guest")
            tail = getattr(err, "console_tail", "") or o.console_tail
            infra: dict[str, Any] = {"verdict": ERROR, "reason": "infrastructure_error", "message": str(err),
                                     "log": tail}  # fmt: skip
            return [
                (ProgramResult(**base, program=p.name, section=p.section, prog_type=None, **infra), None)
                for p in obj.programs
            ]
        assert kw is not None
        out = []
        listed = [p for p in reply.get("programs") or [] if isinstance(p, dict) and "program" in p]
        guest_programs = {p["program"]: p for p in listed}
        for p in obj.programs:
            gp = guest_programs.get(p.name)
            if gp is None:
                # libbpf could not open the object, so the guest knows no programs.
                opened = reply.get("open") or {}
                gp = {"program": p.name, "section": p.section, "verdict": REJECTED, "stage": "open",
                      "errno": opened.get("errno"), "message": opened.get("message")}  # fmt: skip
            section = sections.get(p.name, gp.get("section", ""))
            out.append(self._program_result(base, p.name, section, gp, reply, kw, names))
        # The object as shipped: one verdict for the object, carried by each of its programs' cells.
        shipped = object_load(reply, {r.program: r.message or r.detail for r, _ in out})
        warned = kernel_warnings(reply)  # the object's check, not one program, made the kernel warn
        for r, _ in out:
            r.object_load, r.kernel_warnings = shipped, warned
            # What the cells on a kernel of this arch say of an object built for another
            # architecture's pt_regs (None: built for none, or for this one).
            r.pt_regs = obj.pt_regs.words(o.spec.arch) if obj.pt_regs is not None else None
        return out

    @staticmethod
    def _program_result(
        base, name, section, gp, reply, kw: KernelWork, names
    ) -> tuple[ProgramResult, Classified | None]:
        verdict = gp.get("verdict") if gp.get("verdict") in (ACCEPTED, REJECTED) else REJECTED
        reason = message = None
        c: Classified | None = None
        if gp.get("verdict") == TIMEOUT:
            verdict, reason = ERROR, "verifier_timeout"
            message = f"{gp.get('message') or 'the verifier was stopped'}: no verdict (--program-timeout: the limit)"
        elif verdict == REJECTED:
            modules = reply.get(HOST_MODULES)
            c = classify(gp, reply, kw.inventory, names, modules if isinstance(modules, dict) else None)
            reason, message = c.reason, c.message
        type_from = gp.get("prog_type_from") if gp.get("prog_type_from") in (CONTEXT, OPTION) else None
        if type_from == CONTEXT and message:  # the guess may be why: the loader's type may allow it
            message += f" (as {gp.get('prog_type')}, a type guessed from its context: --program-type sets another)"
        result = ProgramResult(
            **base,
            program=name,
            section=section or gp.get("section") or "",
            prog_type=gp.get("prog_type"),
            verdict=verdict,
            stage=gp.get("stage") if verdict != ACCEPTED else None,
            errno=gp.get("errno"),
            reason=reason,
            message=message,
            detail=gp.get("message"),
            stats=gp.get("stats") or {},
            log=gp.get("log") or "",
            log_level=gp.get("log_level"),
            libbpf_log=gp.get("libbpf_log") or "",
            attach=gp.get("attach") or {},
            helpers=[h for h in gp.get("helpers") or [] if isinstance(h, int)],
            load_ms=gp.get("load_ms"),
            prog_type_from=type_from,
        )
        return result, c
