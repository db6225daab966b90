"""The architecture of matrix entries (issue 18): parsing, defaults, ids, --arch, bad input,
and the architecture of a kernel image read from its header."""

import gzip
import struct
from pathlib import Path

import pytest
import yaml

from compat.errors import UserError
from compat.kernels.imagearch import arm64_release, gunzip_image, head_arch, image_arch
from compat.kernels.matrix import KernelSpec, flavour_arch, flavour_for_arch, load_matrix, parse_matrix

P = Path("m.yaml")


def parse(text: str, arch: str | None = None):
    return parse_matrix(yaml.safe_load(text), P, arch)


def shape(m):
    return [(k.id, k.arch, k.flavour) for k in m.kernels]


def test_entries_are_amd64_unless_they_say_otherwise():
    assert shape(load_matrix()) == [("5.10", "amd64", "amd64"), ("6.1", "amd64", "amd64"),
                                    ("6.12", "amd64", "amd64"), ("sid", "amd64", "amd64")]  # fmt: skip
    assert KernelSpec(id="x", label="x", series="6.1").flavour == "amd64"
    assert KernelSpec(id="x", label="x", series="6.1", arch="arm64").flavour == "arm64"


def test_arch_gives_the_default_flavour_and_a_distinct_id():
    m = parse("kernels:\n  - {series: '6.12'}\n  - {series: '6.12', arch: arm64}\n"
              "  - {series: '6.1', flavour: cloud-arm64}\n  - {id: mine, series: '6.1', arch: arm64}\n"
              "  - {suite: sid, arch: arm64}\n")  # fmt: skip
    assert shape(m) == [("6.12", "amd64", "amd64"), ("6.12-arm64", "arm64", "arm64"),
                        ("6.1-arm64", "arm64", "cloud-arm64"), ("mine", "arm64", "arm64"),
                        ("sid-arm64", "arm64", "arm64")]  # fmt: skip


def test_defaults_may_name_the_arch():
    m = parse("defaults: {arch: arm64}\nkernels: [{series: '5.10'}, {series: '6.12', arch: amd64}]")
    assert shape(m) == [("5.10-arm64", "arm64", "arm64"), ("6.12", "amd64", "amd64")]


def test_cli_arch_switches_the_entries_that_name_none():
    m = load_matrix(arch="arm64")
    assert shape(m) == [("5.10-arm64", "arm64", "arm64"), ("6.1-arm64", "arm64", "arm64"),
                        ("6.12-arm64", "arm64", "arm64"), ("sid-arm64", "arm64", "arm64")]  # fmt: skip
    assert [k.series for k in m.kernels] == ["5.10", "6.1", "6.12", None] and m.kernels[3].suite == "sid"
    assert m.kernels[2].label == "Debian 13 (6.12 LTS) arm64"
    # a cloud flavour moves over; a declared arch stays; --arch amd64 changes nothing
    m = parse("kernels:\n  - {series: '6.12', flavour: cloud-amd64}\n  - {series: '6.1', arch: amd64}\n", "arm64")
    assert shape(m) == [("6.12-arm64", "arm64", "cloud-arm64"), ("6.1", "amd64", "amd64")]
    assert shape(load_matrix(arch="amd64")) == shape(load_matrix())


def test_select_with_arch_finds_matrix_ids_and_makes_adhoc_kernels_of_that_arch():
    m = load_matrix(arch="arm64")
    assert [k.id for k in m.select(["6.12", "sid-arm64"])] == ["6.12-arm64", "sid-arm64"]
    (adhoc,) = m.select(["debian:6.12"])
    assert (adhoc.id, adhoc.arch, adhoc.flavour, adhoc.series) == ("debian:6.12-arm64", "arm64", "arm64", "6.12")
    (series,) = m.select(["debian:6.12.*"])
    assert (series.id, series.arch, series.releases) == ("debian:6.12.*-arm64", "arm64", "all")
    # without --arch, today's ids
    assert [k.id for k in load_matrix().select(["debian:6.12", "6.12"])] == ["debian:6.12", "6.12"]


def test_a_mixed_matrix_keeps_both_architectures_apart():
    m = parse("kernels:\n  - {series: '6.12'}\n  - {series: '6.12', arch: arm64}\n")
    assert m.ids() == ["6.12", "6.12-arm64"] and [k.arch for k in m.kernels] == ["amd64", "arm64"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("kernels: [{series: '6.1', arch: aarch64}]", "unknown arch 'aarch64' (Debian calls it arm64)"),
        ("kernels: [{series: '6.1', arch: riscv64}]", "unknown arch 'riscv64' (use one of amd64, arm64)"),
        ("kernels: [{series: '6.1', arch: arm64, flavour: cloud-amd64}]",
         "flavour cloud-amd64 is an amd64 flavour, not arm64 (use flavour cloud-arm64 or arch amd64)"),
        ("kernels: [{series: '6.1', arch: amd64, flavour: arm64}]", "flavour arm64 is an arm64 flavour, not amd64"),
        ("kernels: [{series: '6.1', arch: [arm64]}]", "'arch' must be a string"),
    ],
)
def test_bad_arch_is_one_line(text, words):
    with pytest.raises(UserError) as e:
        parse(text)
    assert words in str(e.value) and "\n" not in str(e.value) and "kernel entry 1" in str(e.value)


def test_bad_cli_arch_and_code_made_specs():
    with pytest.raises(UserError, match="--arch: unknown arch 'x86_64' \\(Debian calls it amd64\\)"):
        load_matrix(arch="x86_64")
    with pytest.raises(UserError, match="flavour amd64 is an amd64 flavour, not arm64"):
        KernelSpec(id="x", label="x", series="6.1", flavour="amd64", arch="arm64")
    with pytest.raises(UserError, match="unknown arch 'mips'"):
        KernelSpec(id="x", label="x", series="6.1", arch="mips")


def test_flavours_name_their_arch():
    assert [flavour_arch(f) for f in ("amd64", "cloud-amd64", "rt-arm64", "arm64-16k", "generic")] == [
        "amd64", "amd64", "arm64", "arm64", None]
    assert flavour_for_arch("cloud-amd64", "arm64") == "cloud-arm64"
    assert flavour_for_arch("generic", "arm64") == "generic"


def test_with_arch_round_trips():
    spec = KernelSpec(id="6.12", label="Debian 6.12", series="6.12", flavour="cloud-amd64")
    arm = spec.with_arch("arm64")
    assert (arm.id, arm.label, arm.flavour) == ("6.12-arm64", "Debian 6.12 arm64", "cloud-arm64")
    assert arm.with_arch("amd64") == spec and spec.with_arch("amd64") is spec


# -- the architecture of an image, from its header -------------------------------------------------


def _arm64_image(release: str = "6.12.0-test-arm64") -> bytes:
    head = bytearray(64)
    head[0x38:0x3C] = b"ARM\x64"
    return bytes(head) + b"\0" * 4096 + f"Linux version {release} (debian-kernel@lists) #1 SMP".encode() + b"\0" * 64


def _bzimage() -> bytes:
    head = bytearray(0x4000)
    head[0x1FE:0x200] = b"\x55\xaa"
    head[0x202:0x206] = b"HdrS"
    return bytes(head)


def _elf(machine: int) -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\0" * 11 + struct.pack("<H", machine) + b"\0" * 64


def test_image_headers(tmp_path):
    assert head_arch(_bzimage()) == "amd64" and head_arch(_arm64_image()) == "arm64"
    assert head_arch(_elf(62)) == "amd64" and head_arch(_elf(183)) == "arm64" and head_arch(_elf(40)) is None
    assert head_arch(b"\0" * 4096) is None
    files = {"bz": _bzimage(), "Image": _arm64_image(), "Image.gz": gzip.compress(_arm64_image()), "junk": b"x" * 10,
             "badgz": b"\x1f\x8b" + b"\0" * 100}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    found = {name: image_arch(tmp_path / name) for name in files}
    assert found == {"bz": "amd64", "Image": "arm64", "Image.gz": "arm64", "junk": None, "badgz": None}
    assert image_arch(tmp_path / "missing") is None
    assert gunzip_image(gzip.compress(_arm64_image())) == _arm64_image() and gunzip_image(b"plain") is None
    assert gunzip_image(gzip.compress(_arm64_image())[:-20]) is None  # truncated stream
    assert arm64_release(_arm64_image("6.12.118+deb13-arm64")) == "6.12.118+deb13-arm64"


def test_a_local_image_says_its_arch(tmp_path):
    (tmp_path / "Image.gz").write_bytes(gzip.compress(_arm64_image()))
    (tmp_path / "bzImage").write_bytes(_bzimage())
    m = parse_matrix({"kernels": [{"image": "Image.gz"}, {"image": "bzImage"}]}, tmp_path / "m.yaml")
    assert [(k.id, k.arch) for k in m.kernels] == [("Image.gz", "arm64"), ("bzImage", "amd64")]
    # --arch does not relabel a local image (it names the arch of archive kernels); an 'arch:' must agree
    assert [k.arch for k in parse_matrix({"kernels": [{"image": "Image.gz"}]}, tmp_path / "m.yaml", "amd64").kernels] \
        == ["arm64"]  # fmt: skip
    with pytest.raises(UserError, match=r"Image.gz is an arm64 kernel image, not amd64 \(use arch arm64"):
        parse_matrix({"kernels": [{"image": "Image.gz", "arch": "amd64"}]}, tmp_path / "m.yaml")
    m = load_matrix()
    (adhoc,) = m.select([str(tmp_path / "Image.gz")])
    assert adhoc.arch == "arm64" and adhoc.source == "local"
    (adhoc,) = load_matrix(arch="arm64").select([str(tmp_path / "bzImage")])  # --arch: archive kernels only
    assert adhoc.arch == "amd64"


def test_the_arm64_apt_root_is_its_own_with_its_architecture_in_its_config(tmp_path):
    from compat.cache import Cache, sha256_json
    from compat.kernels.apt import AptRepo, AptSource

    cache = Cache(tmp_path / "cache")
    sources = [AptSource("http://deb.invalid/debian", ("trixie",))]
    amd, arm = AptRepo(cache, sources), AptRepo(cache, sources, arch="arm64")
    assert amd.root != arm.root and amd.root.parent == arm.root.parent
    assert amd.root.name == sha256_json([s.lines() for s in sources])[:16]  # amd64's root as before arm64
    assert 'APT::Architectures { "amd64"; };' in amd.conf.read_text()
    conf = arm.conf.read_text()
    assert 'APT::Architecture "arm64";' in conf and 'APT::Architectures { "arm64"; };' in conf
    assert f'Dir::Etc::SourceList "{arm.root}/sources.list";' in conf  # never the host's


def test_packages_the_mirror_lacks_are_remembered_per_index(tmp_path):
    from compat.cache import Cache
    from compat.kernels.apt import AptRepo, AptSource

    repo = AptRepo(Cache(tmp_path / "cache"), [AptSource("http://deb.invalid/debian", ("trixie",))], arch="arm64")
    index = repo.root / "state/lists/deb.invalid_debian_dists_trixie_main_binary-arm64_Packages"
    index.write_text("Package: x\n")
    assert repo.missing() == set()
    repo.mark_missing("linux-image-5.10.0-46-arm64=5.10.262-1")
    repo.mark_missing("linux-image-5.10.0-45-arm64=5.10.259-1")
    assert repo.missing() == {"linux-image-5.10.0-46-arm64=5.10.262-1", "linux-image-5.10.0-45-arm64=5.10.259-1"}
    index.write_text("Package: x\nVersion: 2\n")  # a new index: the mirror is asked again
    assert repo.missing() == set()


def test_bisect_series_on_arm64_and_check_takes_arch():
    from compat.cli.options import build_parser
    from compat.run.bisect import series_spec

    spec = series_spec("6.12", load_matrix(arch="arm64"))
    assert (spec.id, spec.arch, spec.flavour, spec.releases) == ("debian:6.12.*-arm64", "arm64", "arm64", "all")
    assert series_spec("6.12", load_matrix(arch="arm64"), "cloud-arm64").flavour == "cloud-arm64"
    amd64 = series_spec("6.12", load_matrix())
    assert (amd64.id, amd64.arch) == ("6.12", "amd64")  # the matrix entry
    with pytest.raises(UserError, match="flavour cloud-amd64 is an amd64 flavour, not arm64"):
        series_spec("6.12", load_matrix(arch="arm64"), "cloud-amd64")
    parser = build_parser()
    for argv in (["check", "x.o", "--arch", "arm64"], ["probe", "--arch", "arm64"], ["vm", "smoke", "--arch", "arm64"],
                 ["kernels", "list", "--arch", "arm64"], ["bisect", "x.o", "--series", "6.12", "--arch", "arm64"],
                 ["kernels", "available", "6.12", "--arch", "arm64"]):  # fmt: skip
        assert parser.parse_args(argv).arch == "arm64", argv
    assert parser.parse_args(["check", "x.o"]).arch is None


def test_a_bad_arch_on_the_command_line_is_one_line_exit_2(capsys):
    from compat.cli import main

    assert main(["check", "x.o", "--arch", "aarch64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --arch: unknown arch 'aarch64' (Debian calls it arm64)" in err


def test_the_arm64_boot_image_is_the_uncompressed_image(tmp_path):
    from compat.kernels.bootimage import build_arm64_image

    for name, data in {"gz": gzip.compress(_arm64_image()), "plain": _arm64_image(), "junk": b"x" * 100}.items():
        (tmp_path / name).write_bytes(data)
        (tmp_path / f"{name}.d").mkdir()
    assert build_arm64_image(tmp_path / "gz", tmp_path / "gz.d")["image"] is True
    assert (tmp_path / "gz.d/Image").read_bytes() == _arm64_image()  # inflated once, booted as it is
    assert build_arm64_image(tmp_path / "plain", tmp_path / "plain.d")["image"] is False  # Debian's: no copy
    assert build_arm64_image(tmp_path / "junk", tmp_path / "junk.d")["image"] is False
    assert not list((tmp_path / "plain.d").iterdir()) and not list((tmp_path / "junk.d").iterdir())
