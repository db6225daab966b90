"""The cache under concurrent runs and damage, with real guests.

These tests need a cache of their own (entries built from scratch while two runs race; files
truncated on purpose), so each uses a private cache that links the big, read-only entries of the
default cache (apt root, kernel packages, boot images, module archives) and builds the rest. The
disk-full case is a unit test in test_cache.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bpf_build import EXPECTED_FILE

from compat.cache import Cache
from compat.image import IMAGE_KIND, ImageBuilder
from compat.kernels import KernelStore

pytestmark = [pytest.mark.vm, pytest.mark.network]

KERNEL = "6.12"
EXPECTED = yaml.safe_load(EXPECTED_FILE.read_text())["objects"]


def linked_cache(root: Path, real: Cache, kinds: tuple[str, ...]) -> Path:
    """A private cache whose entries of these kinds are symlinks to the default cache's."""
    for kind in kinds:
        if kind == "apt":  # one apt root per archive: link the whole kind (its lock files are inside)
            root.mkdir(parents=True, exist_ok=True)
            os.symlink(real.root / "apt", root / "apt")
            continue
        (root / kind).mkdir(parents=True, exist_ok=True)
        for entry in real.entries(kind):
            os.symlink(entry, root / kind / entry.name)
    return root


@pytest.fixture(scope="module")
def real(real_cache, default_specs):
    """The default cache, holding the 6.12 kernel and the guest image."""
    spec = next(s for s in default_specs if s.id == KERNEL)
    store = KernelStore(real_cache)
    store.boot_image(store.fetch(spec))
    ImageBuilder(real_cache).build()
    return real_cache


def compat(cache: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "COMPAT_CACHE": str(cache), "COMPAT_APT_MAX_AGE": str(10**9)}
    return subprocess.Popen([sys.executable, "-m", "compat", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def results(proc: subprocess.Popen, out: Path) -> dict[tuple[str, str], dict]:
    _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stderr
    doc = json.loads(out.read_text())
    return {(r["object"], r["program"]): r for r in doc["results"]}


def assert_expected(cells: dict[tuple[str, str], dict]) -> None:
    for (obj, prog), cell in cells.items():
        want = EXPECTED[obj.removesuffix(".o")]["programs"][prog]["kernels"][KERNEL]
        assert (cell["verdict"], cell["reason"]) == (want["verdict"], want.get("reason")), cell


def check(cache: Path, tmp: Path, name: str, *objects: str, kernel: str = KERNEL) -> tuple[subprocess.Popen, Path]:
    out = tmp / f"{name}.json"
    return compat(cache, "check", *objects, "--kernel", kernel, "--format", "json", "--output", str(out)), out


def no_temporaries(cache: Path) -> list[Path]:
    return list(cache.glob("*/.tmp-*"))  # half-built or half-removed entries


def test_two_runs_at_once_on_a_cold_cache_agree_and_a_truncated_image_is_rebuilt(real, built_programs, tmp_path):
    cache = linked_cache(tmp_path / "cache", real, ("apt", "kernels", "boot", "modules"))
    counter, loop, ringbuf = (str(built_programs[n]) for n in ("counter", "bpf_loop", "ringbuf"))
    # Both runs build the guest image, the initrd, the snapshot and the probe at the same time.
    a, a_out = check(cache, tmp_path, "a", counter, loop)
    b, b_out = check(cache, tmp_path, "b", counter, ringbuf)
    first, second = results(a, a_out), results(b, b_out)
    assert_expected(first)
    assert_expected(second)
    shared = ("counter.o", "count_getpid")
    assert first[shared]["verdict"] == second[shared]["verdict"] == "accepted"
    images = Cache(cache).entries(IMAGE_KIND)
    assert len(images) == 1, "the image was built twice or left half-built"
    assert no_temporaries(cache) == []

    # Truncate the guest image: the next run notices (size and hash) and rebuilds it.
    initramfs = images[0] / "initramfs.cpio"
    size = initramfs.stat().st_size
    with open(initramfs, "r+b") as f:
        f.truncate(size // 2)
    assert Cache(cache).lookup(IMAGE_KIND, images[0].name) is None
    # (an object not checked before: its verdict cannot come from the result cache, a guest is needed)
    c, c_out = check(cache, tmp_path, "c", str(built_programs["core_task_state"]))
    assert_expected(results(c, c_out))
    entry = Cache(cache).lookup(IMAGE_KIND, images[0].name)
    assert entry is not None and entry.file("initramfs.cpio").stat().st_size == size


def test_a_truncated_kernel_image_is_detected_and_fetched_again(real, default_specs, built_programs, tmp_path):
    cache = linked_cache(tmp_path / "cache", real, ("apt", "kernels", "boot", "modules", "images"))
    spec = next(s for s in default_specs if s.id == KERNEL)
    vmlinuz = tmp_path / "vmlinuz-6.12"  # a real Debian kernel, given as a local kernel image
    shutil.copyfile(KernelStore(real).fetch(spec).vmlinuz, vmlinuz)
    counter = str(built_programs["counter"])
    a, a_out = check(cache, tmp_path, "a", counter, kernel=str(vmlinuz))
    first = results(a, a_out)
    assert first[("counter.o", "count_getpid")]["verdict"] == "accepted"
    # Its entry is the only real (not linked) kernel entry of this cache.
    [entry] = [p for p in Cache(cache).entries("kernels") if not p.is_symlink()]
    cached = entry / "vmlinuz"
    size = cached.stat().st_size
    with open(cached, "r+b") as f:
        f.truncate(size - 4096)
    # (an object not checked before: its verdict cannot come from the result cache, a guest is needed)
    b, b_out = check(cache, tmp_path, "b", str(built_programs["ringbuf"]), kernel=str(vmlinuz))
    assert results(b, b_out)[("ringbuf.o", "report_getpid")]["verdict"] == "accepted"
    assert cached.stat().st_size == size and cached.read_bytes() == vmlinuz.read_bytes()
    assert no_temporaries(cache) == []
