"""Saved guests: boot each kernel once to an idle, warmed-up agent, save the VM state, and start
later guests from it (QEMU migration to and from a file).

Measured here under software emulation: a restored guest answers in 0.13-0.19 s where a cold
boot takes 2-3 s. A snapshot is only valid for the exact same guest (kernel image, initrd,
memory, command line) and QEMU build, so all of those are in its key; anything that changes
the kernel, the image or the agent changes the initrd and so the key.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from compat.cache import Cache, sha256_file, sha256_json

from .accel import qemu_version
from .vm import VM, VMConfig, cpu_model, kernel_cmdline

KIND = "snapshots"
STATE = "state"
FORMAT = 1  # bump when what is saved changes (e.g. what "warm" loads)


def enabled() -> bool:
    """Snapshots are on unless COMPAT_SNAPSHOTS=0."""
    return os.environ.get("COMPAT_SNAPSHOTS", "1") != "0"


@cache
def _file_key(path: Path, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def snapshot_key(config: VMConfig, cache: Cache | None = None) -> str:
    """What a saved state depends on: the guest's exact inputs and the QEMU build."""

    def content(p: Path) -> str:
        if cache is not None:
            return cache.file_sha256(p)  # remembered across runs: the files are big
        st = p.stat()
        return _file_key(p, st.st_mtime_ns, st.st_size)

    key = {
        "format": FORMAT,
        "kernel": content(config.vmlinuz),
        "initrd": content(config.initrd),
        "qemu": qemu_version(config.arch),
        "accel": config.accel,
        "cpu": cpu_model(config.accel, config.arch),
        "memory": config.memory_mb,
        "cmdline": f"{kernel_cmdline(config.arch)} {config.extra_cmdline}",
    }
    # Another architecture's state is another QEMU's (its binary, machine and devices): the arch
    # is in its key. amd64 keys stay what they were, so that saved amd64 states remain valid.
    return sha256_json(key if config.arch == "amd64" else {**key, "arch": config.arch})


class Snapshots:
    """Finds and saves guest states in the cache."""

    def __init__(self, cache: Cache, variant: str = ""):
        self.cache = cache
        self.variant = variant  # "test-faults": states of compat's test image, pruned apart

    def find(self, config: VMConfig) -> tuple[Path, dict] | None:
        """The saved state for this guest and its hello, if one exists."""
        entry = self.cache.lookup(KIND, snapshot_key(config, self.cache))
        return (entry.file(STATE), entry.meta.get("hello") or {}) if entry else None

    def discard(self, config: VMConfig, why: str, refused: bool = False) -> bool:
        """After a failed restore: check the state's entry fully and remove it when it is damaged
        (or, with refused, when QEMU quit while loading it although it matches its digests: an
        older entry without them, or a state this QEMU cannot load). Returns True when it was
        removed, so that the next save builds it again."""
        key = snapshot_key(config, self.cache)
        found = self.cache.verify_entry(KIND, key, repair=True)
        if found.intact and refused:
            self.cache.remove(KIND, key)
            found.removed, found.damage = True, "QEMU could not load it"
        if found.removed:
            self.cache.notify(
                f"saved guest state {KIND}/{key[:12]} removed ({found.damage}; {why[:200]}): saving a new one"
            )
        return found.removed

    def save(self, vm: VM) -> None:
        """Warm the booted guest's agent and save its state (once per key; errors are not fatal
        to the run: the guest keeps running and later runs simply boot cold)."""
        key = snapshot_key(vm.config, self.cache)

        def build(dest: Path) -> dict:
            with self.cache.progress.stage(f"saving the booted guest of {vm.name}") as shown:
                vm.request({"type": "warm"}, timeout=120)
                vm.save_state(dest / STATE)
                shown.done(f"saved booted guest of {vm.name} ({(dest / STATE).stat().st_size / 1e6:.0f} MB)")
            return {
                "hello": vm.hello,
                "kernel": str(vm.config.vmlinuz),
                "variant": self.variant,
                "memory": vm.config.memory_mb,
            }

        self.cache.ensure(KIND, key, build)
        self._prune(key, str(vm.config.vmlinuz), vm.config.memory_mb)

    def _prune(self, keep: str, kernel: str, memory: int) -> None:
        # A new image or agent makes the old states of this kernel useless: drop them. States of
        # the other image variant or another guest memory size stay (both are in use).
        # A damaged state (see Cache.lookup) no run can use goes too, whoever's it was: when its
        # replacement has another key (an image rebuilt with other bytes), nothing else would.
        for path in self.cache.entries(KIND):
            if path.name == keep:
                continue
            entry = self.cache.lookup(KIND, path.name, record_use=False)
            if entry is None or (
                entry.meta.get("kernel") == kernel
                and entry.meta.get("variant", "") == self.variant
                and entry.meta.get("memory", memory) == memory
            ):
                self.cache.remove(KIND, path.name)
