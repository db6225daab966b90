"""Kernel resolution and fetching against the real Debian archive (network marker)."""

import json

import pytest
from conftest import run_compat

from compat.errors import UserError
from compat.kernels.kmod import modinfo, read_module, resolve_modules
from compat.kernels.matrix import KernelSpec
from compat.kernels.sources import KernelStore, available, bzimage_release
from compat.kernels.version import upstream_version, version_key

pytestmark = pytest.mark.network


def test_version_helpers():
    assert upstream_version("6.1.192-2") == "6.1.192"
    assert upstream_version("1:6.8.0-40.40") == "6.8.0"
    assert version_key("6.1.176") > version_key("6.1.99")


def test_default_matrix_resolves_to_the_newest_of_each_series(real_cache, default_specs):
    store = KernelStore(real_cache)
    resolved = {s.id: store.resolve(s) for s in default_specs}
    for series in ("5.10", "6.1", "6.12"):
        newest = available(store, series)[0]
        assert resolved[series].version == upstream_version(newest.version)
        assert resolved[series].packages[0].name == newest.name
    sid = resolved["sid"]
    assert sid.suite == "sid" and int(sid.version.split(".")[0]) >= 7
    # sid splits the kernel: the image package pulls its binary/modules/base companions.
    names = [p.name for p in sid.packages]
    assert any(n.startswith("linux-binary-") for n in names) and any(n.startswith("linux-modules-") for n in names)


def test_available_lists_real_point_releases_newest_first(real_cache):
    releases = available(KernelStore(real_cache), "6.1")
    versions = [upstream_version(p.version) for p in releases]
    assert len(versions) >= 3 and len(set(versions)) == len(versions)
    assert versions == sorted(versions, key=version_key, reverse=True)
    assert all(v.startswith("6.1.") for v in versions)


def test_pinned_point_release_and_package(real_cache):
    store = KernelStore(real_cache)
    older = available(store, "6.1")[-1]
    r = store.resolve(KernelSpec(id="old", label="old", version=upstream_version(older.version)))
    assert r.version == upstream_version(older.version)
    r2 = store.resolve(KernelSpec(id="p", label="p", package=older.name))
    assert r2.packages[0].name == older.name


def test_missing_package_is_a_user_error(real_cache):
    store = KernelStore(real_cache)
    with pytest.raises(UserError, match="the archive has no package"):
        store.resolve(KernelSpec(id="x", label="x", version="6.1.9999"))
    with pytest.raises(UserError, match="the archive has no package"):
        store.resolve(KernelSpec(id="x", label="x", series="6.1", flavour="nosuch-amd64"))


def test_fetch_gives_a_bootable_kernel_and_channel_modules(real_cache, default_specs):
    store = KernelStore(real_cache)
    k = store.fetch(default_specs[0])  # 5.10: virtio is modular there
    assert bzimage_release(k.vmlinuz) == k.release == "5.10.0-" + k.release.split("-")[1] + "-amd64"
    mods = resolve_modules(k.modules, ["virtio_pci", "virtio_console"])
    names = [n for n, _ in mods]
    assert names[-1] == "virtio_console" and "virtio_ring" in names
    assert names.index("virtio_ring") < names.index("virtio_pci")  # dependencies first
    info = modinfo(read_module(next(k.modules.rglob("virtio_console.ko*"))))
    assert "virtio_ring" in info["depends"] or "virtio" in info["depends"]


def test_local_kernel_validation(real_cache, default_specs, tmp_path):
    store = KernelStore(real_cache)
    k = store.fetch(default_specs[1])
    local = store.resolve(KernelSpec(id="mine", label="mine", source="local", image=k.vmlinuz))
    assert local.release == k.release
    notkernel = tmp_path / "notkernel"
    notkernel.write_bytes(b"\0" * 4096)
    with pytest.raises(UserError, match="is not a Linux kernel image"):
        store.resolve(KernelSpec(id="bad", label="bad", source="local", image=notkernel))
    with pytest.raises(UserError, match="does not exist"):
        store.resolve(KernelSpec(id="gone", label="gone", source="local", image=tmp_path / "gone"))


def test_every_default_kernel_boots_uncompressed_through_pvh(real_cache, default_specs):
    from compat.kernels.bootimage import extract_vmlinux, has_pvh_entry

    store = KernelStore(real_cache)
    for spec in default_specs:
        kernel = store.fetch(spec)
        image = store.boot_image(kernel)
        assert image.name == "vmlinux" and has_pvh_entry(image.read_bytes()), spec.id
    assert extract_vmlinux(b"not a kernel") is None


@pytest.mark.vm
def test_a_local_kernel_without_its_channel_drivers_says_so(real_cache, default_specs, tmp_path, built_programs):
    """5.10's virtio drivers are modules: its image alone cannot talk to the host, and the cell
    says why and what to give, instead of 'the guest stopped'."""
    k = KernelStore(real_cache).fetch(default_specs[0])
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(f"schema: compat-matrix/v1\nkernels:\n  - id: bare\n    source: local\n    image: {k.vmlinuz}\n")
    out = tmp_path / "r.json"
    proc = run_compat("check", str(built_programs["counter"]), "--matrix", str(matrix), "--no-cache", "--format",
                      "json", "--output", str(out), timeout=600)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    cell = json.loads(out.read_text())["results"][0]
    assert cell["reason"] == "infrastructure_error"
    assert "this kernel has no virtio-serial driver (virtio_console, virtio_pci)" in cell["message"]
    assert "modules: a lib/modules/RELEASE directory" in cell["message"]
