import json
import stat

import pytest
from newc import read_newc

from compat.guest.image import ImageBuilder

pytestmark = pytest.mark.network


def test_image_is_hermetic_trimmed_and_sourceless(real_cache):
    image = ImageBuilder(real_cache).build()
    entries = read_newc(image.path.read_bytes())
    assert stat.S_IMODE(entries["init"][0]) & 0o111
    assert "usr/bin/python3" in entries and "usr/bin/busybox" in entries
    assert entries["bin"][1] == b"usr/bin" and entries["lib64"][1] == b"usr/lib64"
    assert any(n.startswith("usr/lib/x86_64-linux-gnu/libbpf.so") for n in entries)
    pylib = f"usr/lib/python{image.python}"
    assert f"{pylib}/compat_agent/agent.pyc" in entries and f"{pylib}/os.pyc" in entries
    assert f"{pylib}/lib-dynload/_ctypes.cpython-{image.python.replace('.', '')}-x86_64-linux-gnu.so" in entries
    assert not [n for n in entries if n.endswith(".py")]
    assert f"{pylib}/tkinter/__init__.pyc" not in entries and f"{pylib}/test/__init__.pyc" not in entries
    info = json.loads(entries["etc/compat-image.json"][1])
    assert info["libbpf"] == image.libbpf and image.libbpf.split(":")[-1].startswith("1.")
    assert image.size < 40e6


def test_image_is_reused_until_inputs_change(real_cache, monkeypatch):
    builder = ImageBuilder(real_cache)
    first = builder.build()
    assert builder.build().key == first.key
    import compat.guest.image as image_mod

    files = image_mod.agent_files()
    monkeypatch.setattr(image_mod, "agent_files", lambda: {**files, "agent.py": files["agent.py"] + b"\n# changed\n"})
    assert builder.inputs()[0] != first.key


def _elf_machine(data: bytes) -> int | None:
    return int.from_bytes(data[18:20], "little") if data[:4] == b"\x7fELF" else None


def test_arm64_image_is_built_from_arm64_packages_with_the_same_pyc(real_cache):
    """The arm64 image (issue 18): the suite's arm64 binaries, no x86-64 file in it, the loader at
    the path arm64 binaries name, and the agent's .pyc compiled by the suite's amd64 python (no
    arm64 code ran on the host): byte for byte the amd64 image's."""
    image = ImageBuilder(real_cache, arch="arm64").build()
    amd64 = ImageBuilder(real_cache).build()
    assert image.arch == "arm64" and amd64.arch == "amd64" and image.key != amd64.key
    assert (image.python, image.suite) == (amd64.python, amd64.suite)
    entries = read_newc(image.path.read_bytes())
    machines = {name: _elf_machine(body) for name, (_, body) in entries.items() if stat.S_ISREG(entries[name][0])}
    elves = {name: m for name, m in machines.items() if m is not None}
    assert elves and set(elves.values()) == {183}, {n: m for n, m in elves.items() if m != 183}  # EM_AARCH64 only
    assert "usr/bin/python3" in elves and "usr/bin/busybox" in elves
    assert entries["usr/lib/ld-linux-aarch64.so.1"][1] == b"aarch64-linux-gnu/ld-linux-aarch64.so.1"
    assert "usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1" in entries
    assert any(n.startswith("usr/lib/aarch64-linux-gnu/libbpf.so") for n in entries)
    assert not [n for n in entries if "x86_64" in n or n.endswith(".py")]
    pylib = f"usr/lib/python{image.python}"
    assert f"{pylib}/lib-dynload/_ctypes.cpython-{image.python.replace('.', '')}-aarch64-linux-gnu.so" in entries
    ours = read_newc(amd64.path.read_bytes())
    for name in (f"{pylib}/compat_agent/agent.pyc", f"{pylib}/os.pyc", f"{pylib}/ctypes/__init__.pyc"):
        assert entries[name][1] == ours[name][1], name
    # the same modules: the trace of the amd64 python, mapped to the arm64 packages' names
    assert sorted(n.replace("aarch64", "x86_64") for n in entries if n.startswith(pylib)) == sorted(
        n for n in ours if n.startswith(pylib))
    info = json.loads(entries["etc/compat-image.json"][1])
    assert info["arch"] == "arm64" and info["libbpf"] == image.libbpf
    # each builder finds its own architecture's image in the cache
    assert ImageBuilder(real_cache, arch="arm64").cached().arch == "arm64"
    assert ImageBuilder(real_cache).cached().arch == "amd64"

