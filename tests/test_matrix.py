from pathlib import Path

import pytest
import yaml

from compat.errors import UserError
from compat.matrix import load_matrix, parse_matrix

P = Path("m.yaml")


def parse(text: str):
    return parse_matrix(yaml.safe_load(text), P)


def test_default_matrix_has_four_debian_kernels():
    m = load_matrix()
    assert m.ids() == ["5.10", "6.1", "6.12", "sid"]
    assert all(k.source == "debian" and k.flavour == "amd64" for k in m.kernels)
    assert m.kernels[3].suite == "sid"


def test_partial_entries_get_defaults():
    m = parse("kernels:\n  - series: 6.1\n  - {version: 6.1.176, flavour: cloud-amd64, required: true}\n")
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
