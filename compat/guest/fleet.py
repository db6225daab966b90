"""The VM fleet: one guest per kernel, booted in parallel, each kept for all the work of a run.

Kernels are resolved up front (bad input fails before anything boots); fetching, booting
and the work itself happen in worker threads, at most ``jobs`` at a time (each booting or
verifying VM burns one core). A kernel whose guest fails is retried once on a fresh VM and
then reported as an error; the other kernels' results are always kept.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from compat.cache import TMP_KIND, Cache
from compat.errors import CompatError, InfraError
from compat.kernels.matrix import KernelSpec
from compat.kernels.sources import Kernel, KernelStore, Prefetch, ResolvedKernel

from .accel import choose_accel
from .image import Image, ImageBuilder
from .snapshot import Snapshots
from .snapshot import enabled as snapshots_enabled
from .vm import DEFAULT_MEMORY_MB, VM, GuestError, VMConfig, qemu_binary

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What one kernel produced: a value, or the error that kept it from producing one."""

    spec: KernelSpec
    kernel: Kernel | None = None
    value: T | None = None
    error: CompatError | None = None
    console_tail: str = ""
    boot_seconds: float | None = None
    hello: dict | None = None
    attempts: int = 0


class Session:
    """A kernel's guest for the duration of its work; work may reboot it after a guest failure."""

    def __init__(self, fleet: Fleet, kernel: Kernel):
        self.fleet = fleet
        self.kernel = kernel
        self._vm: VM | None = None
        self.boots = 0

    @property
    def vm(self) -> VM:
        if self._vm is None:
            raise InfraError(f"{self.kernel.id}: no guest running")
        return self._vm

    def boot(self) -> VM:
        self.close()
        self._vm = self.fleet._boot(self.kernel, self.fleet.accel_for(self.kernel.arch))
        self.boots += 1
        return self._vm

    def reboot(self) -> VM:
        """A fresh guest (the old one is killed)."""
        return self.boot()

    def request(self, message: dict, payload: bytes = b"", timeout: float = 60.0) -> tuple[dict, bytes]:
        return self.vm.request(message, payload, timeout)

    def close(self) -> None:
        if self._vm is not None:
            self.fleet._release(self._vm)
            self._vm = None


class Fleet:
    """Boots one VM per kernel and runs a function against each."""

    def __init__(
        self,
        cache: Cache,
        specs: list[KernelSpec],
        jobs: int | None = None,
        refresh: bool = False,
        memory_mb: int = DEFAULT_MEMORY_MB,
        test_faults: bool = False,  # compat's own tests: the fault-injection image (see image.py)
    ):
        self.cache = cache
        self.specs = specs
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.memory_mb = memory_mb
        # Appended to every guest's kernel command line (its snapshots are keyed by it):
        # --privilege unprivileged boots with the kernel's CPU mitigations on (see run/checker.py).
        self.extra_cmdline = ""
        self._cancelled = threading.Event()
        self.cancel_reason = "interrupted"
        self.store = KernelStore(cache, refresh=refresh, stop=self._stop_reason)
        self.builder = ImageBuilder(cache, test_faults=test_faults, stop=self._stop_reason)  # amd64's
        self._test_faults = test_faults
        self._builders: dict[str, ImageBuilder] = {"amd64": self.builder}  # per architecture
        self.image: Image | None = None  # the guest image of the first kernel's architecture
        self.images: dict[str, Image] = {}  # per architecture (Debian's name)
        self.accel: str | None = None  # the first kernel's architecture's (see accels)
        self.accels: dict[str, str] = {}  # per architecture: arm64 guests on an x86 host are always tcg
        self.resolved: dict[str, ResolvedKernel] = {}
        self._prefetch: Prefetch | None = None  # the kernels of the running run(), fetched in parallel
        self._live: set[VM] = set()
        self._live_lock = threading.Lock()
        self.snapshots = Snapshots(cache, variant="test-faults" if test_faults else "") if snapshots_enabled() else None
        # The guests' work directories: under the cache, where the next run's sweep finds those
        # of a compat process that was killed (see Cache.sweep_temporaries).
        self.tmp_root = cache.root / TMP_KIND

    @property
    def arches(self) -> list[str]:
        """The architectures of the fleet's kernels, in matrix order (amd64 first when empty)."""
        return list(dict.fromkeys(spec.arch for spec in self.specs)) or ["amd64"]

    def prepare(self) -> None:
        """Resolve every kernel and build the guest image of each architecture (raises on bad
        input; a missing QEMU for an architecture of the matrix is said before anything else)."""
        for arch in self.arches:
            qemu_binary(arch)
        for spec in self.specs:
            self.resolved[spec.id] = self.store.resolve(spec)
        for arch in self.arches:
            self.images[arch] = self._build_image(arch)
        self.image = self.images[self.arches[0]]

    def builder_for(self, arch: str) -> ImageBuilder:
        """The guest image builder of an architecture (its packages, its kernels' initrds)."""
        if arch not in self._builders:
            self._builders[arch] = ImageBuilder(self.cache, test_faults=self._test_faults, stop=self._stop_reason,
                                                arch=arch)  # fmt: skip
        return self._builders[arch]

    def _build_image(self, arch: str) -> Image:
        return self.builder_for(arch).build()

    def image_for(self, arch: str) -> Image:
        """The guest image that kernels of arch boot (prepare() built it)."""
        if arch not in self.images:
            self.images[arch] = self._build_image(arch)
        return self.images[arch]

    def _boot(self, kernel: Kernel, accel: str, timeout: float | None = None, healed: bool = False) -> VM:
        """A ready guest for kernel: restored from its snapshot when there is one, else booted
        (and then snapshotted for next time). The probe boot (timeout set) never uses them."""
        initrd = self.builder_for(kernel.arch).initrd(self.image_for(kernel.arch), kernel)
        extra: dict = {"boot_timeout": timeout} if timeout else {}
        if self.extra_cmdline:
            extra["extra_cmdline"] = self.extra_cmdline
        config = VMConfig(
            self.store.boot_image(kernel), initrd, accel=accel, memory_mb=self.memory_mb, arch=kernel.arch, **extra
        )
        use_snapshots = self.snapshots is not None and not timeout
        if use_snapshots:
            found = self.snapshots.find(config)
            if found:
                state, hello = found
                restoring = VM(replace(config, restore=state), name=kernel.id, tmp_root=self.tmp_root)
                try:
                    with self.cache.progress.stage(f"restoring {kernel.id}") as shown:
                        vm = self._start(restoring)
                        shown.done(f"restored {kernel.id}")
                    vm.hello = hello
                    return vm
                except GuestError as e:
                    # A state QEMU could not load (damaged in place, or QEMU quit on it): it is
                    # checked fully and, if damaged or refused, removed; the cold boot below saves
                    # a new one. A transient failure (a slow restore) keeps it.
                    # (QEMU exits 1 on a state it cannot load; a guest we killed has a negative status.)
                    refused = restoring.proc is not None and (restoring.proc.returncode or 0) > 0
                    self.snapshots.discard(config, str(e), refused=refused)
        try:
            with self.cache.progress.stage(f"booting {kernel.id}") as shown:
                vm = self._start(VM(config, name=kernel.id, tmp_root=self.tmp_root))
                shown.done(f"booted {kernel.id}" + (" (accelerator probe)" if timeout else ""))
        except GuestError:
            # A guest that does not boot may be booting damaged files (a cache entry changed in
            # place without its mtime: a disk fault). Its inputs are checked fully; if one was
            # damaged it is rebuilt and the boot tried again, once.
            if healed or not self._heal_inputs(kernel, config):
                raise
            return self._boot(kernel, accel, timeout, healed=True)
        if use_snapshots:
            try:
                self.snapshots.save(vm)
            except CompatError:
                # The guest keeps running; later runs boot cold until a save succeeds.
                if vm.proc is None or vm.proc.poll() is not None:
                    self._release(vm)  # its files too
                    raise
        return vm

    def _heal_inputs(self, kernel: Kernel, config: VMConfig) -> bool:
        """Check the cache entries a cold boot read (boot image, initrd, modules archive, guest
        image) fully; remove the damaged ones (the guest image is built again at once). True when
        one was removed."""
        image = self.image_for(kernel.arch)
        paths = [config.vmlinuz, config.initrd, self.builder_for(kernel.arch).modules_archive(kernel), image.path]
        removed = [found for found in map(self.cache.verify_path, paths) if found is not None and found.removed]
        for found in removed:
            self.cache.notify(f"cache entry {found.kind}/{found.key[:12]} was damaged ({found.damage}): rebuilding it")
        if any(found.path == image.path.parent for found in removed):
            self.images[kernel.arch] = self._build_image(kernel.arch)
            if self.image is image:
                self.image = self.images[kernel.arch]
        return bool(removed)

    def _start(self, vm: VM) -> VM:
        with self._live_lock:
            self._live.add(vm)
        try:
            if self._cancelled.is_set():  # checked after joining _live: cancel() misses no guest
                raise InfraError(self.cancel_reason)
            vm.start()
        except BaseException:
            self._release(vm)
            raise
        return vm

    def _release(self, vm: VM) -> None:
        vm.close()
        with self._live_lock:
            self._live.discard(vm)

    def _probe(self, accel: str, timeout: float, arch: str = "amd64") -> bool:
        spec = next((s for s in self.specs if s.arch == arch), self.specs[0])
        kernel = self.store.fetch(spec)
        vm = self._boot(kernel, accel, timeout)
        self._release(vm)
        return True

    def accel_for(self, arch: str) -> str:
        """KVM or TCG for the guests of arch (a cached probe boot decides; always TCG for an
        architecture other than the host's)."""
        if arch not in self.accels:
            if self.image is None:
                self.prepare()
            probe = lambda accel, timeout: self._probe(accel, timeout, arch)  # noqa: E731
            self.accels[arch] = choose_accel(self.cache, probe, arch)
        return self.accels[arch]

    def ensure_accel(self) -> str:
        """KVM or TCG for every architecture of this fleet; returns the first kernel's."""
        if self.accel is None:
            if self.image is None:
                self.prepare()
            for arch in self.arches:
                self.accel_for(arch)
            self.accel = self.accels[self.arches[0]]
        return self.accel

    def run(
        self,
        work: Callable[[Session, Kernel], T],
        retries: int = 1,
        only: Collection[str] | None = None,
        first: Sequence[str] = (),
    ) -> list[Outcome[T]]:
        """Run work(session, kernel) on every kernel (or the ids in ``only``); outcomes in matrix
        order. Kernels start in matrix order, except that the ids in ``first`` start before the
        others, in that order (the scheduler puts the longest work first).

        A guest that fails to boot, or a GuestError that escapes work, is retried on a fresh VM
        (``retries`` times) before the kernel's outcome becomes an error. Work that wants finer
        recovery (one object killed the guest) catches GuestError itself and calls
        session.reboot().
        """
        if self.image is None:
            self.prepare()
        outcomes = [Outcome[T](spec=s) for s in self.specs if only is None or s.id in only]
        rank = {kid: i for i, kid in enumerate(first)}
        starting = sorted(outcomes, key=lambda o: rank.get(o.spec.id, len(rank)))
        # Kernels download in their own small pool, in start order, while guests boot: a worker
        # boots its kernel as soon as that one is fetched, not after the others.
        self._prefetch = self.store.prefetch([o.spec for o in starting])
        try:
            self.ensure_accel()
        except BaseException:
            self._prefetch.cancel()
            raise
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="vm")
        try:
            futures = [pool.submit(self._one, o, work, retries) for o in starting]
            for f in futures:
                f.result()
        except BaseException:
            self.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._prefetch.cancel()
        return outcomes

    def _one(self, outcome: Outcome[T], work: Callable[[Session, Kernel], T], retries: int) -> None:
        try:
            outcome.kernel = self._prefetch.get(outcome.spec) if self._prefetch else self.store.fetch(outcome.spec)
        except CompatError as e:
            outcome.error = e
            return
        for attempt in range(retries + 1):
            if self._cancelled.is_set():
                outcome.error = InfraError(self.cancel_reason)
                return
            outcome.attempts = attempt + 1
            session = Session(self, outcome.kernel)
            try:
                session.boot()
                outcome.boot_seconds, outcome.hello = session.vm.boot_seconds, session.vm.hello
                outcome.value = work(session, outcome.kernel)
                outcome.error = None
                return
            except GuestError as e:
                outcome.error, outcome.console_tail = e, e.console_tail
            except CompatError as e:
                outcome.error = e
                return
            except Exception as e:  # a bug must not cost the other kernels' results
                outcome.error = InfraError(f"internal error: {e.__class__.__name__}: {str(e)[:200]}")
                return
            finally:
                session.close()

    def _stop_reason(self) -> str | None:
        """Why downloads must stop now (see cancel), or None."""
        return self.cancel_reason if self._cancelled.is_set() else None

    def cancel(self, reason: str = "interrupted") -> None:
        """Kill every running guest now (Ctrl-C, run deadline): workers see their VM die and stop,
        no new guest boots and running downloads stop; unfinished work becomes an InfraError(reason)."""
        if not self._cancelled.is_set():
            self.cancel_reason = reason
        self._cancelled.set()
        with self._live_lock:
            live = list(self._live)
        for vm in live:
            vm.close()
