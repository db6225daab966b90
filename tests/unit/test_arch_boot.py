"""QEMU per architecture (compat/guest/vm.py's ARCH_BOOT): amd64's command line is the one compat
always used, arm64's boots the virt machine, a missing QEMU is one line saying what to install,
and accelerators and snapshot keys are per architecture."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_compat

from compat.errors import UserError
from compat.guest import accel, snapshot
from compat.guest.vm import KERNEL_CMDLINE, VM, VMConfig, arch_boot, qemu_binary


def _command(tmp_path: Path, monkeypatch, **config) -> list[str]:
    monkeypatch.setenv("COMPAT_QEMU", "/bin/true")
    monkeypatch.setenv("COMPAT_QEMU_ARM64", "/bin/false")
    vm = VM(VMConfig(Path("/k/vmlinux"), Path("/k/initrd.cpio"), **config), name="t", tmp_root=tmp_path)
    try:
        return vm.command(Path("/s/ch.sock"), Path("/s/con.sock"))
    finally:
        vm.close()


def test_amd64_command_unchanged(tmp_path, monkeypatch):
    # Byte for byte the command line of every release before arm64 (session 9's vm.py).
    command = _command(tmp_path, monkeypatch)
    qmp_sock = command[command.index("-qmp") + 1]
    assert command == [
        "/bin/true", "-accel", "tcg", "-cpu", "max,la57=off",
        "-m", "512M", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", "/k/vmlinux", "-initrd", "/k/initrd.cpio", "-append",
        "console=ttyS0 quiet panic=-1 oops=panic cryptomgr.notests mitigations=off tsc=reliable "
        "rcupdate.rcu_expedited=1 no_timer_check i8042.noaux i8042.nokbd i8042.nopnp rdinit=/init",
        "-chardev", "socket,id=con,path=/s/con.sock", "-serial", "chardev:con",
        "-device", "virtio-serial-pci",
        "-chardev", "socket,id=ch0,path=/s/ch.sock",
        "-device", "virtserialport,chardev=ch0,name=org.compat.0",
        "-qmp", qmp_sock,
    ]  # fmt: skip
    assert qmp_sock.startswith("unix:") and qmp_sock.endswith("/qmp.sock,server=on,wait=off")
    kvm = _command(tmp_path, monkeypatch, accel="kvm")
    assert kvm[1:5] == ["-accel", "kvm", "-cpu", "host"] and "-M" not in kvm


def test_arm64_command(tmp_path, monkeypatch):
    command = _command(tmp_path, monkeypatch, arch="arm64", extra_cmdline="x=1")
    assert command[:7] == ["/bin/false", "-M", "virt", "-accel", "tcg", "-cpu", "neoverse-n1"]
    cmdline = command[command.index("-append") + 1]
    assert cmdline.startswith("console=ttyAMA0 ") and cmdline.endswith(" rdinit=/init x=1")
    assert not {"tsc=reliable", "no_timer_check", "i8042.nokbd"} & set(cmdline.split())
    # The same console and channel devices as amd64's: PL011 on virt, virtio-serial over PCIe.
    for device in ("chardev:con", "virtio-serial-pci", "virtserialport,chardev=ch0,name=org.compat.0"):
        assert device in command
    kvm = _command(tmp_path, monkeypatch, arch="arm64", accel="kvm")
    assert kvm[1:7] == ["-M", "virt,gic-version=host", "-accel", "kvm", "-cpu", "host"]


def test_missing_qemu_says_what_to_install(monkeypatch):
    monkeypatch.setenv("COMPAT_QEMU_ARM64", "/nonexistent/qemu-system-aarch64")
    with pytest.raises(UserError) as e:
        qemu_binary("arm64")
    assert "qemu-system-aarch64 is not installed" in str(e.value) and "apt-get install qemu-system-arm" in e.value.hint
    with pytest.raises(UserError, match="unknown arch"):
        arch_boot("riscv64")


def test_missing_qemu_is_exit_2_before_any_boot(tmp_path, built_programs):
    obj = built_programs["counter"]
    env = {"COMPAT_QEMU_ARM64": str(tmp_path / "no-qemu")}
    proc = run_compat("-q", "check", str(obj), "--kernel", "6.1", "--arch", "arm64", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compat: error:") and "apt-get install qemu-system-arm" in lines[0]


def test_foreign_arch_is_always_tcg(tmp_path, monkeypatch):
    from compat.cache import Cache

    monkeypatch.delenv("COMPAT_ACCEL", raising=False)
    booted = []
    probe = lambda a, t: booted.append(a) or True  # noqa: E731
    cache = Cache(tmp_path)
    host = "x86_64" if accel.platform.machine() != "x86_64" else "aarch64"
    other = "amd64" if host == "aarch64" else "arm64"
    monkeypatch.setattr(accel.platform, "machine", lambda: host)
    assert accel.foreign_arch(other) and not accel.foreign_arch("arm64" if other == "amd64" else "amd64")
    assert accel.choose_accel(cache, probe, other) == "tcg" and not booted
    monkeypatch.setenv("COMPAT_ACCEL", "kvm")
    with pytest.raises(UserError, match="cannot run"):
        accel.choose_accel(cache, probe, other)


def test_snapshot_key_per_arch(tmp_path, monkeypatch):
    from compat.cache import sha256_json

    kernel, initrd = tmp_path / "k", tmp_path / "i"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    monkeypatch.setattr(snapshot, "qemu_version", lambda arch="amd64": f"7.2-{arch}")
    amd64 = VMConfig(kernel, initrd)
    # amd64's key is the formula of every release before arm64: saved states stay valid.
    assert snapshot.snapshot_key(amd64) == sha256_json({
        "format": snapshot.FORMAT, "kernel": snapshot.sha256_file(kernel), "initrd": snapshot.sha256_file(initrd),
        "qemu": "7.2-amd64", "accel": "tcg", "cpu": "max,la57=off", "memory": 512, "cmdline": f"{KERNEL_CMDLINE} ",
    })  # fmt: skip
    arm64 = VMConfig(kernel, initrd, arch="arm64")
    assert snapshot.snapshot_key(arm64) != snapshot.snapshot_key(amd64)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
