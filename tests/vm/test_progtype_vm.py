"""Programs whose sections name no program type: the context each program takes (host only),
the type compat chooses for it, and --program-type on a real kernel (the default run's verdicts
of programs/untyped_sections.bpf.c are in programs/expected.yaml, checked by test_check.py)."""

from __future__ import annotations

import json

import pytest
from conftest import run_compat


@pytest.mark.vm
@pytest.mark.network
def test_program_type_option_checks_a_program_as_its_loader_does(built_programs):
    proc = run_compat("check", str(built_programs["untyped_sections"]), "--kernel", "6.1", "--program-type",
                      "lwt_*=lwt_in", "--program-type", "no_context=xdp", "--format", "json", "--output", "-",
                      timeout=3000)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["options"]["program_types"] == ["lwt_*=lwt_in", "no_context=xdp"]
    cells = {r["program"]: r for r in doc["results"]}
    lwt = cells["lwt_push"]  # the option wins over the guess (lwt_xmit)
    assert (lwt["verdict"], lwt["prog_type"], lwt["prog_type_from"]) == ("accepted", "lwt_in", "option"), lwt
    assert "[compat: program loaded as lwt_in" in lwt["libbpf_log"]
    assert (cells["no_context"]["verdict"], cells["no_context"]["prog_type"]) == ("accepted", "xdp")
    guessed = cells["xdp_first_byte"]
    assert (guessed["prog_type"], guessed["prog_type_from"]) == ("xdp", "context")
    assert "guessed from its context argument (struct xdp_md *)" in guessed["libbpf_log"]
    # A section name libbpf does not know is a usage error before any guest boots, not a verdict.
    typo = run_compat("check", str(built_programs["untyped_sections"]), "--kernel", "6.1", "--program-type",
                      "tc_mark=tc_typo", timeout=120)  # fmt: skip
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "tc_typo" in typo.stderr, typo.stderr
