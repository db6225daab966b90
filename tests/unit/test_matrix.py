from pathlib import Path

import pytest
import yaml

from compat.errors import UserError
from compat.kernels.matrix import load_matrix, parse_matrix

P = Path("m.yaml")


def parse(text: str):
    return parse_matrix(yaml.safe_load(text), P)


def test_default_matrix_has_four_debian_kernels():
    m = load_matrix()
    assert m.ids() == ["5.10", "6.1", "6.12", "sid"]
    assert all(k.source == "debian" and k.flavour == "amd64" for k in m.kernels)
    assert m.kernels[3].suite == "sid"


def test_partial_entries_get_defaults():
    m = parse("kernels:\n  - series: '6.1'\n  - {version: 6.1.176, flavour: cloud-amd64, required: true}\n")
    a, b = m.kernels
    assert (a.id, a.label, a.source, a.series, a.flavour, a.required) == ("6.1", "6.1", "debian", "6.1", "amd64", False)
    assert (b.id, b.version, b.flavour, b.required, b.order) == ("6.1.176", "6.1.176", "cloud-amd64", True, 1)


def test_defaults_section_and_bare_list():
    m = parse("defaults: {flavour: cloud-amd64}\nkernels: [{series: '5.10'}, {series: '6.12', flavour: amd64}]")
    assert [k.flavour for k in m.kernels] == ["cloud-amd64", "amd64"]
    assert parse("- series: '6.1'").ids() == ["6.1"]


def test_apt_and_local_sources(tmp_path):
    img = tmp_path / "bzImage"
    img.write_bytes(b"x")
    doc = {
        "kernels": [
            {
                "id": "noble",
                "source": "apt",
                "mirror": "http://mirror.invalid/ubuntu",
                "suite": "noble-updates",
                "components": "main restricted",
                "flavour": "generic",
                "series": "6.8",
            },
            {"id": "mine", "image": "bzImage", "modules": "mods"},
        ]
    }
    m = parse_matrix(doc, tmp_path / "matrix.yaml")
    apt, local = m.kernels
    assert apt.components == ("main", "restricted") and apt.source == "apt"
    assert local.source == "local" and local.image == img and local.modules == tmp_path / "mods"


@pytest.mark.parametrize(
    "text, words",
    [
        ("kernels: []", "lists no kernels"),
        ("foo: 1", "needs a top-level 'kernels:'"),
        ("kernels: [{series: '6.1', colour: red}]", "unknown key 'colour'"),
        ("kernels: [{series: '6.1'}, {series: '6.1'}]", "appears twice"),
        ("kernels: [{source: ubuntu, series: '6.1'}]", "unknown source"),
        ("kernels: [{series: 'six'}]", "is not like 6.1"),
        ("kernels: [{version: '6.1.x'}]", "is not like 6.1.176"),
        ("kernels: [{source: apt, series: '6.8'}]", "needs 'mirror' and 'suite'"),
        ("kernels: [{source: local}]", "needs 'image"),
        ("kernels: [{flavour: amd64}]", "say which kernel"),
        ("kernels: [{id: 'a b', series: '6.1'}]", "must be letters"),
        ("kernels: [{series: '6.1', required: 'yes'}]", "true or false"),
        ("kernels: [{source: debian, series: '6.1', image: x}]", "local kernels only"),
    ],
)
def test_bad_matrices_are_one_line_user_errors(text, words):
    with pytest.raises(UserError) as e:
        parse(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_matrix(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kernels: [\n")
    with pytest.raises(UserError, match="not valid YAML at line"):
        load_matrix(bad)
    with pytest.raises(UserError, match="cannot read"):
        load_matrix(tmp_path)


def test_select_by_id_adhoc_and_unknown(tmp_path):
    m = load_matrix()
    assert [k.id for k in m.select(["sid", "5.10"])] == ["sid", "5.10"]
    assert m.select(None) == m.kernels
    adhoc = m.select(["debian:6.1.176", "debian:6.12"])
    assert adhoc[0].version == "6.1.176" and adhoc[1].series == "6.12"
    img = tmp_path / "vmlinuz-test"
    img.write_bytes(b"x")
    (local,) = m.select([str(img)])
    assert local.source == "local" and local.image == img
    with pytest.raises(UserError, match=r"unknown kernel 'nope'.*known ids: 5\.10, 6\.1, 6\.12, sid"):
        m.select(["nope"])


def _load(tmp_path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return load_matrix(path)


@pytest.mark.parametrize(
    "entry, key, text",
    [
        ("series: 6.10", "series", "6.10"),  # YAML's 6.1: it silently checked the 6.1 series
        ("series: 5.10", "series", "5.10"),
        ("series: 6.1", "series", "6.1"),  # right by luck: still a number, refused alike
        ("id: 6.12\n    series: '6.12'", "id", "6.12"),
        ("version: 6.1.176\n    label: 2024", "label", "2024"),
        ("package: 7\n    series: '6.1'", "package", "7"),
        ("suite: 13\n    series: '6.1'", "suite", "13"),
        ("flavour: 64\n    series: '6.1'", "flavour", "64"),
        ("series: 0x10", "series", "0x10"),
    ],
)
def test_unquoted_numbers_are_errors_that_say_to_quote_them(tmp_path, entry, key, text):
    with pytest.raises(UserError) as e:
        _load(tmp_path, f"kernels:\n  - {entry}\n")
    msg = str(e.value)
    assert f"'{key}' is the number {text} (line " in msg and f'write {key}: "{text}" in quotes' in msg, msg
    assert "\n" not in msg


def test_quoted_versions_and_bools_still_load(tmp_path):
    m = _load(tmp_path, 'kernels:\n  - {id: "6.10", series: "6.10", required: true, components: [main]}\n')
    assert (m.kernels[0].id, m.kernels[0].series, m.kernels[0].required) == ("6.10", "6.10", True)


@pytest.mark.parametrize(
    "text, words",
    [
        ("kernels: " + "[" * 5000 + "]" * 5000, "nests more than 16 levels deep"),  # was RecursionError, exit 3
        ("kernels:\n" + "".join(f"  - {{id: k{i}, series: '6.1'}}\n" for i in range(1001)), "more than 1000 kernels"),
        ("kernels:\n  - {series: '6.1', components: [" + ", ".join(["main"] * 33) + "]}", "1 to 32 names"),
        ("kernels:\n  - {series: '6.1', label: '" + "x" * 5000 + "'}", "longer than 4096"),
        ("kernels: [" + ", ".join(["a"] * 100_001) + "]", "too large"),
    ],
)
def test_bounds_of_a_matrix_file(tmp_path, text, words):
    with pytest.raises(UserError) as e:
        _load(tmp_path, text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_billion_laughs_still_holds(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    for where in ("kernels: *a9", "kernels:\n  - {series: '6.1', components: *a9}", "kernels:\n  - {label: *a9}"):
        with pytest.raises(UserError) as e:
            _load(tmp_path, "\n".join(levels) + "\n" + where + "\n")
        assert "\n" not in str(e.value)
    many = "\n".join(f"k{i}: &k{i} x" for i in range(1001)) + "\nkernels: [" + ", ".join(f"*k{i}" for i in range(1001))
    with pytest.raises(UserError, match="aliases"):
        _load(tmp_path, many + "]\n")


@pytest.mark.parametrize(
    "entry, words",
    [
        ("suite: ../../x", "suite '../../x' is not a plain suite name"),  # made an apt root outside the cache
        ("suite: a/b", "not a plain suite name"),
        ("suite: 'sid [trusted=yes]'", "not a plain suite name"),  # would add options to the deb line
        ("suite: ..", "not a plain suite name"),
        ("suite: .hidden", "not a plain suite name"),
        ("package: ../linux-image-6.1.0-50-amd64", "not a plain package name"),
        ("package: Linux-Image", "not a plain package name"),
        ("{series: '6.1', flavour: 'amd64/../../x'}", "not a plain flavour name"),
        ("{source: apt, mirror: 'http://h/d', suite: noble, series: '6.8', components: ['main', '../x']}",
         "not a plain component name"),
        ("{source: apt, mirror: 'http://h/d [trusted=yes]', suite: noble, series: '6.8'}", "is not a URI"),
    ],
)
def test_names_that_become_paths_are_plain(tmp_path, entry, words):
    text = f"kernels:\n  - {entry}\n" if entry.startswith("{") else f"kernels:\n  - {{{entry}}}\n"
    with pytest.raises(UserError) as e:
        _load(tmp_path, text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_plain_names_of_real_archives_load(tmp_path):
    m = _load(tmp_path, "kernels:\n"
              "  - {suite: bookworm-security, package: linux-image-6.1.0-50-cloud-amd64, flavour: cloud-amd64}\n"
              "  - {id: noble, source: apt, mirror: 'http://h/ubuntu', suite: noble-updates, series: '6.8',\n"
              "     components: [main, restricted], flavour: generic}\n")  # fmt: skip
    assert [k.suite for k in m.kernels] == ["bookworm-security", "noble-updates"]


def test_a_spec_made_in_code_is_checked_before_an_apt_root_is_made(tmp_path):
    from compat.cache import Cache
    from compat.kernels.matrix import KernelSpec
    from compat.kernels.sources import KernelStore

    cache = Cache(tmp_path / "cache")
    spec = KernelSpec(id="x", label="x", source="apt", mirror="http://h/d", suite="../../../x", series="6.1")
    with pytest.raises(UserError, match="not a plain suite name"):
        KernelStore(cache).repo_for(spec)
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache" / "apt").exists()
