"""The project's own BPF test programs build, are BPF ELF objects, and match expected.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bpf_build import EXPECTED_FILE, build_programs, find_clang, sources
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

EM_BPF = 247
KERNELS = ("5.10", "6.1", "6.12", "sid")
VERDICTS = ("accepted", "rejected")
STAGES = ("open", "prepare", "load")
REASONS = {
    "missing_helper",
    "missing_kfunc",
    "unsupported_prog_type",
    "unsupported_map_type",
    "missing_attach_target",
    "core_relocation",
    "missing_btf",
    "verifier_rejection",
    "complexity_limit",
    "object_error",
}


def program_names(path: Path) -> dict[str, str]:
    """{program name: section} of a BPF object: global functions in executable sections."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] in ("EM_BPF", EM_BPF), f"{path.name}: e_machine {elf['e_machine']}"
        symtab = elf.get_section_by_name(".symtab")
        assert symtab is not None, f"{path.name}: no symbol table"
        found = {}
        for sym in symtab.iter_symbols():
            shndx = sym["st_shndx"]
            if sym["st_info"]["type"] != "STT_FUNC" or sym["st_info"]["bind"] != "STB_GLOBAL":
                continue
            if not isinstance(shndx, int):
                continue
            section = elf.get_section(shndx)
            if section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR:
                found[sym.name] = section.name
        return found


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    try:
        find_clang()
    except RuntimeError as e:
        pytest.skip(str(e))
    return build_programs(tmp_path_factory.mktemp("bpf"))


@pytest.fixture(scope="module")
def expected() -> dict:
    return yaml.safe_load(EXPECTED_FILE.read_text())


def test_every_source_builds_to_a_bpf_elf(built):
    assert set(built) == set(sources())
    for name, path in built.items():
        raw = path.read_bytes()
        assert raw[:4] == b"\x7fELF", name
        assert int.from_bytes(raw[18:20], "little") == EM_BPF, name
        assert program_names(path), f"{name}: no programs"


def test_expected_names_exactly_the_programs_of_each_object(built, expected):
    objects = expected["objects"]
    assert set(objects) == set(built)
    for name, path in built.items():
        assert set(objects[name]["programs"]) == set(program_names(path)), name


def test_expected_entries_are_well_formed(expected):
    assert expected["schema"] == "compat-expected/v1"
    for obj_name, obj in expected["objects"].items():
        for prog_name, prog in obj["programs"].items():
            where = f"{obj_name}/{prog_name}"
            assert prog.get("why"), f"{where}: no comment"
            assert set(prog["kernels"]) == set(KERNELS), where
            for kernel, cell in prog["kernels"].items():
                at = f"{where} on {kernel}"
                assert cell["verdict"] in VERDICTS, at
                if cell["verdict"] == "accepted":
                    assert "stage" not in cell and "reason" not in cell, at
                    assert cell.get("attach") in (None, "ok", "failed"), at
                else:
                    assert cell["stage"] in STAGES, at
                    assert cell["reason"] in REASONS, at
                    assert "attach" not in cell, at
                if cell.get("attach") == "failed":
                    assert cell.get("attach_reason") in REASONS, at
