"""The cache under concurrent runs and damage, with real guests.

These tests need a cache of their own (entries built from scratch while two runs race; files
truncated on purpose), so each uses a private cache that links the big, read-only entries of the
default cache (apt root, kernel packages, boot images, module archives) and builds the rest. The
disk-full case is a unit test in test_cache.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from bpf_build import EXPECTED_FILE
from conftest import run_compat, start_compat

from compat.cache import Cache, _write_manifest
from compat.guest.image import IMAGE_KIND, ImageBuilder
from compat.kernels.sources import KernelStore

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
    env = {"COMPAT_CACHE": str(cache), "COMPAT_APT_MAX_AGE": str(10**9)}
    return start_compat("check", *objects, "--kernel", kernel, "--format", "json", "--output", out, env=env), out


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
    size, digest = initramfs.stat().st_size, hashlib.sha256(initramfs.read_bytes()).hexdigest()
    with open(initramfs, "r+b") as f:
        f.truncate(size // 2)
    assert Cache(cache).lookup(IMAGE_KIND, images[0].name) is None
    # (an object not checked before: its verdict cannot come from the result cache, a guest is needed)
    c, c_out = check(cache, tmp_path, "c", str(built_programs["core_task_state"]))
    assert_expected(results(c, c_out))
    entry = Cache(cache).lookup(IMAGE_KIND, images[0].name)
    assert entry is not None
    # The image build is reproducible: the rebuilt image is the same bytes.
    rebuilt = entry.file("initramfs.cpio")
    assert rebuilt.stat().st_size == size and hashlib.sha256(rebuilt.read_bytes()).hexdigest() == digest


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


# -- a cache that heals itself: every kind of entry damaged in place, same size ---------------------

HEAL_KERNEL = "6.1"  # has a modules archive (virtio modules), so every kind of entry exists
HEALED_KINDS = ("boot", "images", "initrd", "modules", "modsyms", "probes", "snapshots")


def corrupt_in_place(path: Path, keep_mtime: bool = False) -> None:
    """Flip bytes in the middle of a file without changing its size (a disk fault, an interrupted
    copy, another process); keep_mtime leaves no trace the cheap check on use could see, as a
    fault of the disk itself leaves none (see unseen)."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size // 2)
        data = f.read(4096)
        f.seek(st.st_size // 2)
        f.write(bytes(b ^ 0x5A for b in data))
    assert path.stat().st_size == st.st_size
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        unseen(path)


def unseen(path: Path) -> None:
    """Make a change to path invisible to the cheap check on use (inode, size, mtime, ctime), as
    a bit flipped by the disk is: any write moves the ctime, so the entry's manifest is given the
    file's new identity. Only the load or boot that fails, or a full check, can find it then."""
    entry = next(p for p in path.parents if (p / "manifest.json").is_file())
    manifest = json.loads((entry / "manifest.json").read_text())
    st = path.stat()
    manifest["stamps"][str(path.relative_to(entry))] = [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
    (entry / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def biggest_file(entry: Path) -> Path:
    return max((p for p in entry.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def expect_heal_kernel(cells: dict[tuple[str, str], dict]) -> None:
    for (obj, prog), cell in cells.items():
        want = EXPECTED[obj.removesuffix(".o")]["programs"][prog]["kernels"][HEAL_KERNEL]
        assert (cell["verdict"], cell["reason"]) == (want["verdict"], want.get("reason")), cell


def run_to_the_end(proc: subprocess.Popen, out: Path) -> tuple[dict[tuple[str, str], dict], str]:
    _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stderr
    doc = json.loads(out.read_text())
    return {(r["object"], r["program"]): r for r in doc["results"]}, stderr


@pytest.fixture(scope="module")
def warm_private_cache(real, default_specs, built_programs, tmp_path_factory):
    """A private cache whose every entry for HEAL_KERNEL (but the kernel package and the apt root,
    linked from the default cache) was built by one real run: boot image, guest image, modules,
    initrd, module symbol index, probe, snapshot and results."""
    spec = next(s for s in default_specs if s.id == HEAL_KERNEL)
    KernelStore(real).fetch(spec)
    tmp = tmp_path_factory.mktemp("heal")
    cache = linked_cache(tmp / "cache", real, ("apt", "kernels"))
    proc, out = check(cache, tmp, "warm", str(built_programs["counter"]), str(built_programs["kprobe_new_target"]),
                      kernel=HEAL_KERNEL)  # fmt: skip
    expect_heal_kernel(run_to_the_end(proc, out)[0])
    for kind in HEALED_KINDS:
        assert Cache(cache).entries(kind), f"the warm-up run built no {kind} entry"
    return cache, tmp


def test_a_snapshot_damaged_in_place_keeping_its_mtime_costs_one_save_not_the_run(warm_private_cache, built_programs):
    cache, tmp = warm_private_cache
    [snapshot] = Cache(cache).entries("snapshots")
    # Same size, same mtime: the cheap check on use cannot see it; QEMU refuses the state. Before,
    # the monitor's EOF escaped as "internal error: EOFError" (exit 3) on every run.
    corrupt_in_place(snapshot / "state", keep_mtime=True)
    proc, out = check(cache, tmp, "snap", str(built_programs["ringbuf"]), kernel=HEAL_KERNEL)
    cells, stderr = run_to_the_end(proc, out)
    expect_heal_kernel(cells)
    assert "saved guest state" in stderr and "content differs from its sha256" in stderr, stderr
    assert [f for f in Cache(cache).verify(["snapshots"]) if not f.intact] == []
    assert Cache(cache).lookup("snapshots", snapshot.name) is not None  # saved again, same key
    assert no_temporaries(cache) == []


def test_every_kind_of_entry_damaged_in_place_is_rebuilt_once_and_the_run_gives_verdicts(
    warm_private_cache, built_programs
):
    cache, tmp = warm_private_cache
    damaged = []
    for kind in HEALED_KINDS:
        for entry in Cache(cache).entries(kind):
            corrupt_in_place(biggest_file(entry))  # probes: the manifest that holds the probe
            damaged.append((kind, entry.name))
    results = sorted((cache / "results").glob("*.json"))
    assert results, "the warm-up run kept no result"
    for result in results:
        corrupt_in_place(result)
    # counter.o's result is damaged: checked again; bpf_loop.o is new: it needs a guest anyway.
    proc, out = check(cache, tmp, "all", str(built_programs["counter"]), str(built_programs["kprobe_new_target"]),
                      str(built_programs["bpf_loop"]), kernel=HEAL_KERNEL)  # fmt: skip
    cells, stderr = run_to_the_end(proc, out)
    expect_heal_kernel(cells)
    assert "internal error" not in stderr
    # (The snapshot's key is the rebuilt initrd's content: when the image is not rebuilt byte for
    # byte, a new state is saved under a new key and the damaged one is dropped with the old ones.)
    for kind in ("boot", "images", "initrd", "modules", "modsyms"):
        assert f"cache entry {kind}/" in stderr and "was damaged" in stderr, (kind, stderr)
    # Everything is intact again (rebuilt under the same keys), and nothing is left half-built.
    verify = run_compat("cache", "verify", "--json", env={"COMPAT_CACHE": str(cache)}, timeout=600)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    # Only entries damaged here that this run did not need again (under the same key) are left to
    # find: verify removes them.
    left = {(d["kind"], d["key"]) for d in json.loads(verify.stdout)["damaged_entries"]}
    assert left <= set(damaged) | {("results", r.name) for r in results}, left
    for kind, key in damaged:
        if kind in ("boot", "images", "modules", "modsyms"):  # keyed by their inputs, not by what they hold
            assert Cache(cache).lookup(kind, key) is not None, (kind, key)
    assert no_temporaries(cache) == []


def test_an_initrd_damaged_without_a_trace_is_found_when_its_guest_does_not_boot(warm_private_cache, built_programs):
    cache, tmp = warm_private_cache
    for kind in ("snapshots", "results"):  # a cold boot, and a guest needed
        shutil.rmtree(cache / kind)
    [initrd] = Cache(cache).entries("initrd")
    # The guest image's /init region: a kernel that cannot start the agent.
    with open(initrd / "initrd.cpio", "r+b") as f:
        st = os.fstat(f.fileno())
        f.write(b"\0" * (1 << 20))
    os.utime(initrd / "initrd.cpio", ns=(st.st_atime_ns, st.st_mtime_ns))
    unseen(initrd / "initrd.cpio")
    assert Cache(cache).lookup("initrd", initrd.name) is not None  # the cheap check cannot tell
    proc, out = check(cache, tmp, "initrd", str(built_programs["counter"]), kernel=HEAL_KERNEL)
    cells, stderr = run_to_the_end(proc, out)
    expect_heal_kernel(cells)
    assert f"cache entry initrd/{initrd.name[:12]} was damaged" in stderr, stderr
    assert Cache(cache).verify_entry("initrd", initrd.name).intact


def test_a_kernel_package_damaged_in_place_is_fetched_again(real, default_specs, built_programs, tmp_path):
    spec = next(s for s in default_specs if s.id == KERNEL)
    key = KernelStore(real).fetch(spec).key
    cache = linked_cache(tmp_path / "cache", real, ("apt", "boot", "modules", "images", "initrd", "snapshots"))
    entry = cache / "kernels" / key
    entry.parent.mkdir()
    shutil.copytree(real.root / "kernels" / key, entry, symlinks=True)
    # As this version of compat saves it: digests of every file (the default cache's may be older).
    meta = json.loads((entry / "manifest.json").read_text())["meta"]
    _write_manifest(entry, meta, ["vmlinuz"])
    digests = json.loads((entry / "manifest.json").read_text())["digests"]
    module = max(entry.glob("modules/**/*.ko*"), key=lambda p: p.stat().st_size)
    corrupt_in_place(module)
    proc, out = check(cache, tmp_path, "kernel", str(built_programs["counter"]))
    _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stderr
    assert_expected({(r["object"], r["program"]): r for r in json.loads(out.read_text())["results"]})
    assert f"cache entry kernels/{key[:12]} was damaged" in stderr, stderr
    # The same package again: every file as before (the entry of this version of compat may hold
    # more: the package's changelog, which older entries lacked).
    again = json.loads((entry / "manifest.json").read_text())["digests"]
    assert {rel: again.get(rel) for rel in digests} == digests
    assert Cache(cache).verify_entry("kernels", key).intact
    assert no_temporaries(cache) == []
