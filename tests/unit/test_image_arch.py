"""The guest image per architecture (issue 18): its layout and bad input (no network)."""

import pytest

from compat.cache import Cache
from compat.errors import UserError
from compat.guest.image import HOST_ARCH, LAYOUTS, ImageBuilder


def test_each_architecture_has_its_debian_layout():
    assert HOST_ARCH == "amd64" and set(LAYOUTS) == {"amd64", "arm64"}
    amd, arm = LAYOUTS["amd64"], LAYOUTS["arm64"]
    assert amd.libdir == "usr/lib/x86_64-linux-gnu" and arm.libdir == "usr/lib/aarch64-linux-gnu"
    # the loader where the binaries' PT_INTERP looks for it (/lib64/…, /lib/…: /lib is usr/lib in the image)
    assert amd.loader_link == ("usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    assert arm.loader_link == ("usr/lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu/ld-linux-aarch64.so.1")


def test_builders_per_arch_and_an_unknown_one(tmp_path):
    cache = Cache(tmp_path / "cache")
    assert ImageBuilder(cache).arch == "amd64" and ImageBuilder(cache, arch="arm64").layout == LAYOUTS["arm64"]
    assert ImageBuilder(cache, arch="arm64").cached() is None  # nothing built, nothing asked of the archive
    with pytest.raises(UserError, match="unknown arch 'riscv64' for the guest image"):
        ImageBuilder(cache, arch="riscv64")


def test_image_info_per_arch_says_none_is_cached(tmp_path, capsys):
    from compat.cli import main

    assert main(["--cache", str(tmp_path / "c"), "image", "info", "--arch", "arm64", "--json"]) == 0
    assert capsys.readouterr().out.strip().replace(" ", "").replace("\n", "") == '{"image":null}'
    assert main(["--cache", str(tmp_path / "c"), "image", "info", "--arch", "mips"]) == 2
    assert "unknown arch 'mips'" in capsys.readouterr().err
