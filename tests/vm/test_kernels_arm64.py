"""arm64 kernels from the real Debian archive (issue 18): resolved through the arm64 apt root,
fetched, verified and cached like amd64 ones (network tier: no guest boots here)."""

import json

import pytest
from conftest import run_compat

from compat.kernels.imagearch import arm64_release, head_arch, image_arch
from compat.kernels.kmod import resolve_modules
from compat.kernels.matrix import load_matrix
from compat.kernels.sources import KernelStore, available
from compat.kernels.version import upstream_version

pytestmark = pytest.mark.network


def test_debian_6_12_on_arm64_resolves_fetches_and_boots_as_an_image(real_cache):
    store = KernelStore(real_cache)
    (spec,) = load_matrix(arch="arm64").select(["debian:6.12"])
    resolved = store.resolve(spec)
    assert resolved.packages[0].name.endswith("-arm64") and resolved.version.startswith("6.12.")
    amd64 = store.resolve(load_matrix().select(["debian:6.12"])[0])
    assert resolved.key != amd64.key and resolved.version == amd64.version  # same point release, its own entry
    kernel = store.fetch(spec)
    assert (kernel.arch, kernel.id, kernel.version) == ("arm64", "debian:6.12-arm64", resolved.version)
    assert image_arch(kernel.vmlinuz) == "arm64"
    assert image_arch(store.fetch(load_matrix().kernels[2]).vmlinuz) == "amd64"  # a real amd64 vmlinuz
    image = store.boot_image(kernel)  # an uncompressed Image, magic ARM\x64 at 0x38
    data = image.read_bytes()
    assert head_arch(data[:64]) == "arm64" and data[0x38:0x3C] == b"ARM\x64"
    assert arm64_release(data) == kernel.release
    assert (kernel.modules / "kernel/drivers/net/dummy.ko.xz").exists()
    assert resolve_modules(kernel.modules, ["virtio_pci", "virtio_console"]) == []  # built in on 6.12 arm64


def test_available_and_list_say_arm64():
    result = run_compat("kernels", "available", "6.12", "--arch", "arm64", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["arch"] == "arm64" and doc["flavour"] == "arm64" and len(doc["releases"]) >= 3
    assert all(r["package"].endswith("-arm64") and "cloud" not in r["package"] for r in doc["releases"])
    result = run_compat("kernels", "list", "--arch", "arm64", "--kernel", "6.12", "--kernel", "debian:6.1", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["kernels"]
    assert [(r["id"], r["arch"]) for r in rows] == [("6.12-arm64", "arm64"), ("debian:6.1-arm64", "arm64")]
    assert rows[0]["release"].endswith("-arm64")


def test_every_default_series_fetches_on_arm64(real_cache):
    """The four default series on arm64. This mirror's index lists bullseye-security arm64 kernels
    it does not serve (404): 5.10 then falls back to the newest the mirror has (it failed before)."""
    store = KernelStore(real_cache)
    for spec in load_matrix(arch="arm64").kernels:
        kernel = store.fetch(spec)
        assert kernel.arch == "arm64" and kernel.release.endswith("-arm64") and kernel.modules is not None, spec.id
        newest = available(store, spec.series, arch="arm64") if spec.series else []
        assert not newest or upstream_version(newest[0].version) == kernel.version  # the newest it can have


def test_bad_arch_inputs_are_one_line_exit_2(tmp_path):
    cases = [
        (["kernels", "list", "--arch", "aarch64"], "argument --arch: unknown arch 'aarch64' (Debian calls it arm64)"),
        (["kernels", "available", "6.12", "--arch", "arm64", "--flavour", "cloud-amd64"],
         "--flavour cloud-amd64 is an amd64 flavour, not --arch arm64 (use --flavour cloud-arm64)"),
    ]
    matrix = tmp_path / "m.yaml"
    matrix.write_text("kernels:\n  - {series: '6.12', arch: sparc}\n")
    cases.append((["kernels", "list", "--matrix", matrix], "unknown arch 'sparc'"))
    for args, words in cases:
        result = run_compat(*args)
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
