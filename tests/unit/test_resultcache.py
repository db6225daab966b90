"""The result cache (compat/run/resultcache.py) and its use by the checker, without VMs: a fleet
stand-in answers like guests would and counts how often a guest was needed."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from compat.cache import Cache
from compat.guest.fleet import Outcome
from compat.guest.vm import GuestError
from compat.kernels.matrix import KernelSpec
from compat.results.inventory import Inventory
from compat.run.checker import Checker, CheckOptions, load_objects
from compat.run.resultcache import KIND, ResultCache, apply_kfunc_slice, kfunc_slice

REPLY = {
    "type": "check_result",
    "object": "a.o",
    "open": {"ok": True},
    "externs": [{"name": "bpf_iter_num_new", "kind": "kfunc", "weak": False}],
    "maps": [],
    "programs": [{"program": "p", "verdict": "accepted", "stats": {"insns_processed": 3}, "attach": {"status": "ok"}}],
}


def _inventory() -> Inventory:
    inv = Inventory()
    inv.kfuncs = {"bpf_iter_num_new", "other"}
    inv.kfuncs_checked = {"bpf_iter_num_new"}
    inv.kfunc_allowed = {"bpf_iter_num_new": {"tracing": True}, "other": {"xdp": False}}
    return inv


def test_round_trip_and_what_the_key_depends_on(tmp_path):
    rc = ResultCache(Cache(tmp_path), "image1", {"attach": True})
    assert rc.get("sha", "a.o", "kernel1") is None
    rc.put("sha", "a.o", "kernel1", REPLY, _inventory(), {"release": "6.1.0", "btf": True, "secret": 1}, "tcg")
    hit = rc.get("sha", "a.o", "kernel1")
    assert hit is not None and hit.reply == REPLY and hit.accel == "tcg"
    assert hit.hello == {"release": "6.1.0", "btf": True}
    assert hit.kfuncs == {
        "kfuncs": ["bpf_iter_num_new"],
        "checked": ["bpf_iter_num_new"],
        "allowed": {"bpf_iter_num_new": {"tracing": True}},
    }
    assert (rc.hits, rc.misses) == (1, 1)
    # Any input that can change a verdict is in the key.
    assert rc.get("sha2", "a.o", "kernel1") is None
    assert rc.get("sha", "b.o", "kernel1") is None
    assert rc.get("sha", "a.o", "kernel2") is None
    assert ResultCache(Cache(tmp_path), "image2", {"attach": True}).get("sha", "a.o", "kernel1") is None
    assert ResultCache(Cache(tmp_path), "image1", {"attach": False}).get("sha", "a.o", "kernel1") is None
    assert ResultCache(Cache(tmp_path), "image1", {"attach": True}).get("sha", "a.o", "kernel1") is not None


def test_disabled_cache_neither_reads_nor_writes(tmp_path):
    on = ResultCache(Cache(tmp_path), "image", {})
    on.put("sha", "a.o", "k", REPLY, Inventory(), {}, None)
    off = ResultCache(Cache(tmp_path), "image", {}, enabled=False)
    assert off.get("sha", "a.o", "k") is None
    off.put("sha2", "a.o", "k", REPLY, Inventory(), {}, None)
    assert on.get("sha2", "a.o", "k") is None


def test_only_check_results_are_kept(tmp_path):
    rc = ResultCache(Cache(tmp_path), "image", {})
    rc.put("sha", "a.o", "k", {"type": "error", "error": "boom"}, Inventory(), {}, None)
    rc.put("sha2", "a.o", "k", {}, Inventory(), {}, None)
    assert rc.get("sha", "a.o", "k") is None and rc.get("sha2", "a.o", "k") is None
    assert not list((tmp_path / KIND).glob("*.json")) if (tmp_path / KIND).exists() else True


@pytest.mark.parametrize("damage", ["truncate", "edit", "garbage", "other-key"])
def test_a_damaged_entry_is_a_miss(tmp_path, damage):
    rc = ResultCache(Cache(tmp_path), "image", {})
    rc.put("sha", "a.o", "k", REPLY, Inventory(), {}, None)
    (path,) = (tmp_path / KIND).glob("*.json")
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "edit":
        path.write_text(text.replace('"accepted"', '"rejected"'))
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff")
    else:
        doc = json.loads(text)
        doc["key"] = "0" * 64
        path.write_text(json.dumps(doc))
    assert rc.get("sha", "a.o", "k") is None


def test_kfunc_slices_add_up_to_the_inventory():
    inv = _inventory()
    base = Inventory()
    apply_kfunc_slice(base, kfunc_slice(REPLY, inv))
    assert base.kfuncs == {"bpf_iter_num_new"}
    assert base.kfuncs_checked == {"bpf_iter_num_new"}
    assert base.kfunc_allowed == {"bpf_iter_num_new": {"tracing": True}}


# -- the checker with a stand-in fleet ---------------------------------------------------------------
PROBE = {
    "type": "probe_result",
    "prog_types": {"tracepoint": True},
    "map_types": {"array": True},
    "helpers": {"tracepoint": [1, 14]},
    "helper_names": {"1": "map_lookup_elem", "14": "get_current_pid_tgid"},
    "kfuncs_btf": [],
    "kfunc_allowed": {},
}


@dataclass
class FakeSession:
    """A guest: answers probes and checks at once (or after `delay` seconds per check)."""

    kernel: SimpleNamespace
    fleet: FakeFleet
    name: str = "guest"
    vm: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(console_tail=lambda: ""))

    def request(self, message: dict, payload: bytes = b"", timeout: float = 60.0):
        with self.fleet.lock:
            self.fleet.requests.append(message["type"])
        if message["type"] == "probe":
            return dict(PROBE), b""
        if self.fleet.fail:
            raise GuestError(f"{self.kernel.id}: the guest died")
        time.sleep(self.fleet.delay)
        with self.fleet.lock:
            self.fleet.checked.append((self.name, hashlib.sha256(payload).hexdigest()))
        programs = [
            {"program": name, "verdict": "accepted", "stats": {"insns_processed": 5}, "attach": {"status": "ok"}}
            for name in self.fleet.programs
        ]
        return {"type": "check_result", "open": {"ok": True}, "externs": [], "maps": [], "programs": programs}, b""

    def console_tail(self) -> str:
        return ""

    def reboot(self):
        return None

    def close(self):
        return None


class FakeFleet:
    """What Checker needs of a Fleet; run() plays every kernel's guest in this thread."""

    def __init__(self, specs: list[KernelSpec], programs: list[str]):
        self.specs = specs
        self.programs = programs
        self.jobs = 1
        self.accel = "tcg"
        self.arches, self.accels = ["amd64"], {"amd64": "tcg"}
        self.image = SimpleNamespace(key="image-key", suite="trixie", python="3.13", libbpf="1.5.0")
        self.resolved = {
            s.id: SimpleNamespace(
                key=f"kernel-{s.id}", version="6.1.192", release="6.1.0-40-amd64", packages=(), spec=s
            )
            for s in specs
        }
        self.runs: list[set] = []
        self.requests: list[str] = []
        self.checked: list[tuple[str, str]] = []  # (which guest, object sha256)
        self.fail = False
        self.delay = 0.0
        self.snapshots = None
        self.lock = threading.Lock()
        self.helpers = 0

    def _boot(self, kernel, accel):
        """A second guest of a kernel (the scheduler's helpers)."""
        with self.lock:
            self.helpers += 1
            name = f"helper{self.helpers}"
        return FakeSession(kernel, self, name)

    def _release(self, vm):
        return None

    def image_for(self, arch):
        return self.image

    def accel_for(self, arch):
        return self.accels[arch]

    def prepare(self):
        return None

    def run(self, work, retries=1, only=None, first=()):
        self.runs.append(set(only or ()))
        outcomes = []
        for spec in self.specs:
            if only is not None and spec.id not in only:
                continue
            kernel = SimpleNamespace(
                id=spec.id, key=f"kernel-{spec.id}", version="6.1.192", packages=("p=1",), modules=None, arch="amd64"
            )
            o = Outcome(spec=spec, kernel=kernel, hello={"release": "6.1.0-40-amd64", "btf": True, "libbpf": "1.5"})
            o.boot_seconds = 0.3
            try:
                o.value = work(FakeSession(kernel, self), kernel)
            except GuestError as e:
                o.error = e
            outcomes.append(o)
        return outcomes


def _checker(tmp_path: Path, obj_names: list[str], result_cache: bool = True):
    specs = [KernelSpec(id="6.1", label="6.1", order=0), KernelSpec(id="6.12", label="6.12", order=1)]
    checker = Checker(Cache(tmp_path / "cache"), specs, CheckOptions(result_cache=result_cache, jobs=1))
    checker.fleet = FakeFleet(specs, obj_names)  # type: ignore[assignment]
    return checker


def test_a_recheck_of_cached_objects_needs_no_guest(tmp_path, built_programs):
    objects, infos, _ = load_objects([str(built_programs["counter"])])
    first = _checker(tmp_path, ["count_getpid"])
    one = first.run(objects, infos)
    assert first.fleet.runs == [{"6.1", "6.12"}]
    assert one.options["result_cache"] == {"hits": 0, "misses": 2}

    again = _checker(tmp_path, ["count_getpid"])
    two = again.run(objects, infos)
    assert again.fleet.runs == [] and again.fleet.requests == []  # no guest at all
    assert two.options["result_cache"] == {"hits": 2, "misses": 0}
    cells = [(r.kernel, r.verdict, r.stats) for r in one.results]
    assert [(r.kernel, r.verdict, r.stats) for r in two.results] == cells
    assert all(k.boot_seconds is None and k.release == "6.1.0-40-amd64" and k.accel == "tcg" for k in two.kernels)

    bypass = _checker(tmp_path, ["count_getpid"], result_cache=False)
    bypass.run(objects, infos)
    assert bypass.fleet.runs == [{"6.1", "6.12"}]
    assert "result_cache" not in bypass.run(objects, infos).options


def test_errors_are_never_cached(tmp_path, built_programs):
    objects, infos, _ = load_objects([str(built_programs["counter"])])
    failing = _checker(tmp_path, ["count_getpid"])
    failing.fleet.fail = True
    result = failing.run(objects, infos)
    assert {r.verdict for r in result.results} == {"error"}
    later = _checker(tmp_path, ["count_getpid"])
    later.run(objects, infos)
    assert later.fleet.runs == [{"6.1", "6.12"}]  # the guests were needed again
    assert not [r for r in later.run(objects, infos).results if r.verdict == "error"]


def test_only_uncached_objects_go_to_the_guest(tmp_path, built_programs):
    counter, ringbuf = str(built_programs["counter"]), str(built_programs["ringbuf"])
    objects, infos, _ = load_objects([counter])
    _checker(tmp_path, ["count_getpid"]).run(objects, infos)
    both, infos2, _ = load_objects([counter, ringbuf])
    checker = _checker(tmp_path, ["count_getpid", "report_getpid"])
    result = checker.run(both, infos2)
    assert checker.fleet.requests.count("check") == 2  # ringbuf.o on two kernels; counter.o from the cache
    assert result.options["result_cache"] == {"hits": 2, "misses": 2}


def test_idle_cores_help_the_kernel_with_the_most_work(tmp_path, built_programs, monkeypatch):
    import compat.run.schedule as schedule

    monkeypatch.setattr(schedule, "HELP_MIN_SECONDS", 0.0)
    monkeypatch.setattr(schedule, "OBJECT_SECONDS", 1.0)  # each object looks worth a second guest
    variants = tmp_path / "variants"
    variants.mkdir()
    data = built_programs["counter"].read_bytes()
    paths = []
    for i in range(12):  # distinct objects: the same program with a different trailing byte
        path = variants / f"counter{i}.o"
        path.write_bytes(data + bytes([i]))
        paths.append(str(path))
    objects, infos, bad = load_objects(paths)
    assert not bad
    specs = [KernelSpec(id="6.1", label="6.1", order=0)]
    checker = Checker(Cache(tmp_path / "cache"), specs, CheckOptions(result_cache=False, jobs=2))
    fleet = FakeFleet(specs, ["count_getpid"])
    fleet.delay, fleet.jobs = 0.1, 2
    checker.fleet = fleet  # type: ignore[assignment]
    result = checker.run(objects, infos)
    assert {r.verdict for r in result.results} == {"accepted"} and len(result.results) == 12
    guests = {name for name, _ in fleet.checked}
    assert "guest" in guests and fleet.helpers >= 1 and any(g.startswith("helper") for g in guests)
    assert sorted(sha for _, sha in fleet.checked) == sorted(o.sha256 for o in objects)  # each once
