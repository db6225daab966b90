"""Real boots of the default kernels under QEMU (software emulation here, KVM where it works)."""

import io

import pytest

from compat.guest.cpio import CpioWriter
from compat.guest.fleet import Fleet
from compat.guest.image import ImageBuilder
from compat.guest.vm import VM, GuestError, VMConfig
from compat.kernels.sources import KernelStore

pytestmark = [pytest.mark.vm, pytest.mark.network]


def test_every_default_kernel_boots_and_answers(real_cache, default_specs):
    fleet = Fleet(real_cache, default_specs)
    outcomes = fleet.run(lambda vm, kernel: vm.request({"type": "ping"}, b"x" * 100000)[0])
    for o in outcomes:
        assert o.error is None, f"{o.spec.id}: {o.error}\n{o.console_tail}"
        assert o.hello["release"] == o.kernel.release
        assert o.hello["btf"] is True
        assert o.hello["libbpf"].startswith("1.")
        assert o.value["type"] == "pong" and o.value["payload_bytes"] == 100000
        assert 0 < o.boot_seconds < 90


def _overlay(image_path, init_script: bytes, tmp_path):
    """The guest image with /init replaced (later cpio entries win)."""
    buf = io.BytesIO()
    w = CpioWriter(buf)
    w.file("init", init_script, mode=0o755)
    w.close()
    out = tmp_path / "initrd.cpio"
    out.write_bytes(image_path.read_bytes() + buf.getvalue())
    return out


@pytest.fixture(scope="module")
def kernel_and_image(real_cache, default_specs):
    kernel = KernelStore(real_cache).fetch(default_specs[2])  # 6.12: everything built in
    return kernel, ImageBuilder(real_cache).build()


def test_guest_panic_is_reported_with_console(kernel_and_image, tmp_path):
    kernel, image = kernel_and_image
    initrd = _overlay(image.path, b"#!/bin/sh\nmount -t proc proc /proc\necho c > /proc/sysrq-trigger\n", tmp_path)
    vm = VM(VMConfig(kernel.vmlinuz, initrd, boot_timeout=60), "panic")
    with pytest.raises(GuestError) as e, vm:
        vm.start()
    assert "panicked" in str(e.value) or "stopped" in str(e.value)
    assert "sysrq" in e.value.console_tail.lower() or "panic" in e.value.console_tail.lower()
    assert vm.proc.poll() is not None and not vm.workdir.exists()


def test_hung_guest_times_out_and_is_killed(kernel_and_image, tmp_path):
    kernel, image = kernel_and_image
    initrd = _overlay(image.path, b"#!/bin/sh\nmount -t proc proc /proc\nwhile :; do :; done\n", tmp_path)
    vm = VM(VMConfig(kernel.vmlinuz, initrd, boot_timeout=8), "hang")
    with pytest.raises(GuestError, match="timed out waiting for the agent"), vm:
        vm.start()
    assert vm.proc.poll() is not None and not vm.workdir.exists()
