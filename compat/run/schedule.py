"""Scheduling a check over the VMs: longest work first, and no idle core at the end.

Each booting or verifying VM burns one core, and at most ``jobs`` run at once. Two things
keep the cores busy:

- Kernels start longest first (LPT): the estimated cost of a kernel is its boot (a restore
  from its snapshot, or a cold boot and a save when the guest image is new) plus its objects,
  each estimated from earlier runs on that kernel (``History``, a small file in the cache).
- A kernel's objects are a shared queue. A worker whose kernel is done, once every kernel
  has started, helps the kernel with the most work left: it restores a second guest of that
  kernel and takes objects from the same queue. With fewer kernels than jobs, the spare jobs
  help from the start. So the last minutes of a run are not spent on one core.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from compat.cache import Cache, write_atomic
from compat.kernels.sources import Kernel
from compat.objects.objfile import BpfObject

HISTORY_FILE = "schedule.json"
COLD_BOOT_SECONDS = 3.0 + 1.5  # boot to a ready agent under emulation, then warm and save the snapshot
RESTORE_SECONDS = 0.4  # restore from a snapshot, and the first request's code translation
OBJECT_SECONDS = 0.3  # an object never seen on a kernel
HELP_MIN_SECONDS = 2.5  # help a kernel only when its remaining work is worth a second guest
MAX_NAMES = 2000  # object timings kept per kernel


class History:
    """What earlier runs took per kernel: its boot with a given guest image, and each object."""

    def __init__(self, cache: Cache):
        self.path = cache.root / "state" / HISTORY_FILE
        self._lock = threading.Lock()
        self._data = self._load(self.path)

    @staticmethod
    def _load(path: Path) -> dict:
        try:
            doc = json.loads(path.read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def boot_seconds(self, kernel_key: str, image_key: str) -> float:
        k = self._data.get(kernel_key) or {}
        boots = k.get("boots") or {}
        seen = boots.get(image_key)
        return float(seen) if isinstance(seen, int | float) else COLD_BOOT_SECONDS

    def object_seconds(self, kernel_key: str, obj: BpfObject) -> float:
        k = self._data.get(kernel_key) or {}
        objects = k.get("objects") or {}
        seen = objects.get(obj.sha256) or objects.get(obj.name)
        if isinstance(seen, int | float):
            return float(seen)
        mean = k.get("mean")
        return float(mean) if isinstance(mean, int | float) else OBJECT_SECONDS

    def record(self, kernel_key: str, image_key: str, boot: float | None, objects: dict[str, float]) -> None:
        """Remember one kernel's boot (only the restore: a cold boot happens once per image)
        and its objects' seconds (by content hash and by name, for the next build)."""
        with self._lock:
            k = self._data.setdefault(kernel_key, {})
            if boot is not None:
                k["boots"] = {image_key: round(boot, 3)}
            names = k.setdefault("objects", {})
            for key, seconds in objects.items():
                names.pop(key, None)
                names[key] = round(seconds, 3)
            while len(names) > MAX_NAMES:
                names.pop(next(iter(names)))
            if objects:
                values = list(objects.values())
                k["mean"] = round(sum(values) / len(values), 3)

    def save(self) -> None:
        with self._lock:
            current = self._load(self.path)
            current.update(self._data)
            write_atomic(self.path, json.dumps(current))


@dataclass
class KernelQueue:
    """The objects one kernel still has to check, shared by its guest and its helpers."""

    kernel_id: str
    pending: deque[BpfObject]
    estimates: dict[str, float]  # object sha256 -> expected seconds
    boot: float  # expected seconds to a ready guest of this kernel
    kernel: Kernel | None = None  # known once its own worker started
    in_flight: int = 0
    helpers: int = 0
    no_help: bool = False  # a second guest of this kernel failed to start: do not try again
    cond: threading.Condition = field(default_factory=threading.Condition)

    def estimate(self) -> float:
        """Expected seconds of the whole kernel (boot and every object)."""
        return self.boot + sum(self.estimates.get(o.sha256, OBJECT_SECONDS) for o in self.pending)

    def remaining(self) -> float:
        with self.cond:
            return sum(self.estimates.get(o.sha256, OBJECT_SECONDS) for o in self.pending)

    def take(self) -> BpfObject | None:
        with self.cond:
            if not self.pending:
                return None
            self.in_flight += 1
            return self.pending.popleft()

    def done(self, obj: BpfObject | None = None, unchecked: bool = False) -> None:
        """An object taken is finished (or, unchecked, given back for another guest)."""
        with self.cond:
            self.in_flight -= 1
            if unchecked and obj is not None:
                self.pending.appendleft(obj)
            self.cond.notify_all()

    def wait_idle(self) -> bool:
        """Wait until no helper is checking one of this kernel's objects; True when nothing is
        left to do at all."""
        with self.cond:
            while self.in_flight and not self.pending:
                self.cond.wait(0.5)
            return not self.pending and not self.in_flight


class Scheduler:
    """Decides the start order of kernels and where idle workers help."""

    def __init__(self, queues: dict[str, KernelQueue], jobs: int, helper_boot: float = RESTORE_SECONDS):
        self.queues = queues
        self.jobs = jobs
        self.helper_boot = helper_boot  # a second guest of a kernel: restored from its snapshot
        self._lock = threading.Lock()
        self._started: set[str] = set()
        self._stopped = threading.Event()

    def start_order(self) -> list[str]:
        """Kernel ids, the longest expected work first."""
        return [q.kernel_id for q in sorted(self.queues.values(), key=lambda q: q.estimate(), reverse=True)]

    def started(self, kernel_id: str, kernel: Kernel) -> KernelQueue:
        with self._lock:
            self._started.add(kernel_id)
            queue = self.queues[kernel_id]
            queue.kernel = kernel
            return queue

    def all_started(self) -> bool:
        with self._lock:
            return len(self._started) == len(self.queues)

    def stop(self) -> None:
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def spare_workers(self) -> int:
        """Workers the fleet will never use: fewer kernels than jobs."""
        return max(self.jobs - len(self.queues), 0)

    def pick(self) -> KernelQueue | None:
        """The started kernel whose remaining work most deserves another guest, if any does."""
        if self.stopped:
            return None
        with self._lock:
            candidates = [q for k in self._started if (q := self.queues[k]).kernel is not None and not q.no_help]
        best, best_left = None, 0.0
        for q in candidates:
            left = q.remaining() / (1 + q.helpers)
            if left > best_left:
                best, best_left = q, left
        if best is None or best_left < HELP_MIN_SECONDS + self.helper_boot:
            return None
        return best

    def wait_for_work(self, timeout: float = 0.2) -> None:
        """A spare worker's pause before it looks again."""
        self._stopped.wait(timeout)


def elapsed_since(t0: float) -> float:
    return time.monotonic() - t0
