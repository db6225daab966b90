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
