"""`compat check`: every program of every object on every kernel of the matrix.

objects (validated on the host) ─► fleet (one warm guest per kernel) ─► per kernel: probe
(cached) + one check request per object ─► classify rejections ─► RunResult.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .cache import Cache, sha256_json
from .classify import classify
from .errors import CompatError
from .fleet import Fleet, Outcome, Session
from .inventory import Inventory, merged_helper_names
from .kernels import Kernel
from .matrix import KernelSpec
from .objfile import BadObject, BpfObject, read_object
from .results import ACCEPTED, ERROR, REJECTED, KernelInfo, ObjectInfo, ProgramResult, RunResult
from .sourcemap import locate
from .vm import GuestError

PROBE_KIND = "probes"
DEFAULT_OBJECT_TIMEOUT = 900.0  # big multi-program objects under software emulation are slow
PROBE_TIMEOUT = 300.0


@dataclass
class CheckOptions:
    attach: bool = True
    jobs: int | None = None
    refresh: bool = False
    object_timeout: float = DEFAULT_OBJECT_TIMEOUT


@dataclass
class KernelWork:
    """What one kernel's guest produced: guest replies per object, or the error that stopped one."""

    inventory: Inventory = field(default_factory=Inventory)
    replies: dict[str, dict] = field(default_factory=dict)  # object sha256 -> check_result
    failures: dict[str, GuestError] = field(default_factory=dict)  # object sha256 -> what killed the guest


def locate_sources(obj: BpfObject, results: list[ProgramResult]) -> None:
    """Record the source line of each rejection while the object is at hand (reports need no object)."""
    for r in results:
        if r.verdict == REJECTED:
            loc = locate(obj.data, obj.path, r.program, r.section or None, r.reason, r.message, r.log)
            r.source = loc.to_json() if loc else None


def load_objects(paths: list[str]) -> tuple[list[BpfObject], list[ObjectInfo], list[str]]:
    """Validate every input; bad ones become one-line errors, the rest are checked."""
    objects, infos, errors = [], [], []
    for path in paths:
        try:
            obj = read_object(path)
        except BadObject as e:
            errors.append(str(e))
            infos.append(ObjectInfo(object=str(path).rsplit("/", 1)[-1], path=str(path), error=str(e)))
            continue
        objects.append(obj)
        infos.append(ObjectInfo(obj.name, str(obj.path), obj.sha256, obj.size, [p.name for p in obj.programs]))
    return objects, infos, errors


class Checker:
    """Runs objects on a fleet and turns guest replies into results."""

    def __init__(self, cache: Cache, specs: list[KernelSpec], options: CheckOptions):
        self.cache = cache
        self.options = options
        self.fleet = Fleet(cache, specs, jobs=options.jobs, refresh=options.refresh)

    def probe(self, session: Session, kfuncs: list[str], parts: list[str] | None = None) -> Inventory:
        """The kernel's inventory, probed in its guest once per kernel, image, kfunc set and parts
        (parts=["kfuncs"] skips the helper sweep when only kfuncs are wanted)."""
        image = self.fleet.image
        assert image is not None
        key = sha256_json(
            {"kernel": session.kernel.key, "image": image.key, "kfuncs": sorted(kfuncs), "parts": parts}
        )

        def build(dest) -> dict:
            request = {"type": "probe", "kfuncs": sorted(kfuncs), **({"parts": parts} if parts else {})}
            reply, _ = session.request(request, timeout=PROBE_TIMEOUT)
            if reply.get("type") != "probe_result":
                raise GuestError(f"{session.kernel.id}: probe failed: {reply.get('error', reply.get('type'))}")
            return {"probe": reply}

        return Inventory.from_probe(self.cache.ensure(PROBE_KIND, key, build).meta["probe"])

    def _work(self, objects: list[BpfObject], state: dict[str, KernelWork]):
        def work(session: Session, kernel: Kernel) -> KernelWork:
            # State survives a reboot of the guest: objects already checked are not redone.
            kw = state.setdefault(kernel.id, KernelWork())
            kw.inventory = self.probe(session, [])
            for obj in objects:
                if obj.sha256 in kw.replies or obj.sha256 in kw.failures:
                    continue
                kw.replies[obj.sha256] = self._check_one(session, obj, kw)
            used = sorted(
                {e["name"] for r in kw.replies.values() for e in r.get("externs") or [] if e.get("kind") == "kfunc"}
            )
            if used:
                kfunc_inv = self.probe(session, used, parts=["kfuncs"])
                kw.inventory.kfunc_allowed.update(kfunc_inv.kfunc_allowed)
                kw.inventory.kfuncs |= kfunc_inv.kfuncs
                kw.inventory.kfuncs_checked |= set(used)
            return kw

        return work

    def _check_one(self, session: Session, obj: BpfObject, kw: KernelWork) -> dict:
        """One object on one guest; a guest that dies on it is rebooted and tried once more."""
        request = {"type": "check", "object": obj.name, "attach": self.options.attach}
        for attempt in (1, 2):
            try:
                reply, _ = session.request(request, obj.data, timeout=self.options.object_timeout)
                if reply.get("type") == "check_result":
                    return reply
                why = reply.get("error", reply.get("type"))
                raise GuestError(f"{session.kernel.id}: the agent failed on {obj.name}: {why}")
            except GuestError as e:
                if attempt == 2:
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
        self.fleet.prepare()
        state: dict[str, KernelWork] = {}
        t0 = time.monotonic()
        everything = list({o.sha256: o for objects, _ in groups for o in objects}.values())
        outcomes = self.fleet.run(self._work(everything, state))
        wall = round(time.monotonic() - t0, 2)
        image = self.fleet.image
        assert image is not None
        names = merged_helper_names([o.value.inventory for o in outcomes if o.value])
        image_info = {"suite": image.suite, "python": image.python, "libbpf": image.libbpf, "key": image.key[:16]}
        runs = []
        for objects, infos in groups:
            results: list[ProgramResult] = []
            for obj in objects:
                for o in outcomes:
                    found = self._results(obj, o, state.get(o.spec.id), names)
                    locate_sources(obj, found)
                    results.extend(found)
            runs.append(
                RunResult(
                    kernels=[self._kernel_info(o) for o in outcomes],
                    objects=infos,
                    results=results,
                    image=dict(image_info),
                    options={"attach": self.options.attach, "wall_seconds": wall},
                )
            )
        return runs

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
            accel=self.fleet.accel,
            btf=h.get("btf"),
            boot_seconds=round(o.boot_seconds, 2) if o.boot_seconds else None,
            order=o.spec.order,
            required=o.spec.required,
            error=str(o.error) if o.error else None,
        )

    def _results(self, obj: BpfObject, o: Outcome, kw: KernelWork | None, names: dict[int, str]) -> list[ProgramResult]:
        kernel = o.spec.id
        base = {"object": obj.name, "object_sha256": obj.sha256, "kernel": kernel}
        sections = {p.name: p.section for p in obj.programs}
        failure = (kw.failures.get(obj.sha256) if kw else None) or (o.error if o.error else None)
        reply = kw.replies.get(obj.sha256) if kw else None
        if not reply:
            err = failure or CompatError("no result from the guest")
            tail = getattr(err, "console_tail", "") or o.console_tail
            infra = {"verdict": ERROR, "reason": "infrastructure_error", "message": str(err), "log": tail}
            return [
                ProgramResult(**base, program=p.name, section=p.section, prog_type=None, **infra) for p in obj.programs
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
        return out

    @staticmethod
    def _program_result(base, name, section, gp, reply, kw: KernelWork, names) -> ProgramResult:
        verdict = gp.get("verdict") if gp.get("verdict") in (ACCEPTED, REJECTED) else REJECTED
        reason = message = None
        if verdict == REJECTED:
            c = classify(gp, reply, kw.inventory, names)
            reason, message = c.reason, c.message
        return ProgramResult(
            **base,
            program=name,
            section=section or gp.get("section") or "",
            prog_type=gp.get("prog_type"),
            verdict=verdict,
            stage=gp.get("stage") if verdict == REJECTED else None,
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
        )
