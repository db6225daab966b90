"""compat bisect's search (run/bisect.search) with a fake verdict source, its reports and its bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import run_compat

from compat.cache import Cache
from compat.errors import UserError
from compat.kernels.apt import PackageVersion
from compat.kernels.changelog import suspects as changelog_suspects
from compat.kernels.matrix import load_matrix
from compat.kernels.sources import KernelStore
from compat.kernels.version import version_key
from compat.reports.bisect import render
from compat.results.logdiff import diff_logs
from compat.results.model import ProgramResult
from compat.run.bisect import BisectResult, Boundary, range_specs, search, series_spec

RELEASES = [f"6.12.{n}" for n in (43, 48, 57, 63, 69, 73, 74, 85, 88, 90, 95, 100, 104, 107, 110, 112, 115, 118)]


class Fake:
    """A verdict source from a table: program -> function of the release index -> verdict or None."""

    def __init__(self, table, releases=RELEASES, failing=()):
        self.table, self.releases, self.failing = table, releases, set(failing)
        self.calls: list[list[str]] = []

    def __call__(self, batch):
        self.calls.append(list(batch))
        out = {}
        for v in batch:
            assert v in self.releases
            if v in self.failing:
                continue  # the whole release gave nothing (a kernel that could not boot)
            i = self.releases.index(v)
            out[v] = {k: f(i) for k, f in self.table.items()}
        return out

    @property
    def checked(self):
        return sorted({v for b in self.calls for v in b}, key=self.releases.index)


def _flip(at, old="rejected", new="accepted"):
    return lambda i: new if i >= at else old


def test_monotonic_change_found_at_consecutive_releases():
    src = Fake({"p": _flip(7)})
    found = search(RELEASES, src)
    [ch] = found.changes["p"]
    assert (ch.before, ch.after, ch.old, ch.new, ch.unknown) == ("6.12.74", "6.12.85", "rejected", "accepted", [])
    # ends + log2(16) probes, each release checked once
    assert len(src.checked) <= 2 + 5
    assert sum(len(b) for b in src.calls) == len(src.checked)
    assert found.checked == src.checked


def test_no_change_checks_only_the_ends():
    src = Fake({"p": lambda i: "accepted"})
    found = search(RELEASES, src)
    assert found.changes == {} and found.unchanged == {"p": "accepted"}
    assert src.calls == [[RELEASES[0], RELEASES[-1]]]


def test_broken_then_fixed_needs_exhaustive():
    table = {"p": lambda i: "rejected" if 5 <= i < 9 else "accepted"}
    plain = search(RELEASES, Fake(table))
    assert plain.changes == {} and plain.unchanged == {"p": "accepted"} and not plain.exhaustive
    found = search(RELEASES, Fake(table), exhaustive=True)
    got = [(c.before, c.after, c.old, c.new) for c in found.changes["p"]]
    assert got == [("6.12.69", "6.12.73", "accepted", "rejected"), ("6.12.88", "6.12.90", "rejected", "accepted")]
    assert found.checked == RELEASES


def test_several_programs_share_probes():
    table = {"a": _flip(4), "b": _flip(4, "accepted", "rejected"), "c": _flip(12), "d": lambda i: "accepted"}
    src = Fake(table)
    found = search(RELEASES, src)
    assert [(c.before, c.after) for c in found.changes["a"]] == [("6.12.63", "6.12.69")]
    assert [(c.before, c.after) for c in found.changes["b"]] == [("6.12.63", "6.12.69")]
    assert [(c.before, c.after) for c in found.changes["c"]] == [("6.12.100", "6.12.104")]
    assert found.unchanged == {"d": "accepted"}
    # a and b change at the same release: their probes are the same ones; every release once
    alone = Fake({"a": _flip(4)})
    search(RELEASES, alone)
    together = Fake({"a": _flip(4), "b": _flip(4, "accepted", "rejected")})
    search(RELEASES, together)
    assert together.checked == alone.checked
    assert sum(len(b) for b in src.calls) == len(src.checked)
    # both searches ran in the same rounds: fewer rounds than the two one after the other
    assert len(src.calls) < 2 * 6


def test_width_probes_several_releases_per_round():
    one, two = Fake({"p": _flip(11)}), Fake({"p": _flip(11)})
    a, b = search(RELEASES, one), search(RELEASES, two, width=2)
    assert [(c.before, c.after) for c in a.changes["p"]] == [(c.before, c.after) for c in b.changes["p"]]
    assert len(two.calls) < len(one.calls)


def test_a_failed_release_in_the_middle_is_searched_around():
    # the change is at index 7; index 7 itself (6.12.85) cannot be checked
    src = Fake({"p": _flip(7)}, failing={"6.12.85"})
    found = search(RELEASES, src)
    [ch] = found.changes["p"]
    assert (ch.before, ch.after, ch.unknown) == ("6.12.74", "6.12.88", ["6.12.85"])
    assert "6.12.85" in found.failed
    # a failure elsewhere costs one more probe and does not blur the boundary
    src = Fake({"p": _flip(7)}, failing={"6.12.57"})
    [ch] = search(RELEASES, src).changes["p"]
    assert (ch.before, ch.after, ch.unknown) == ("6.12.74", "6.12.85", [])


def test_a_failed_end_moves_inward():
    src = Fake({"p": _flip(7)}, failing={RELEASES[0], RELEASES[-1]})
    found = search(RELEASES, src)
    [ch] = found.changes["p"]
    assert (ch.before, ch.after) == ("6.12.74", "6.12.85")
    assert found.failed == [RELEASES[0], RELEASES[-1]]
    assert RELEASES[1] in found.checked and RELEASES[-2] in found.checked


def test_a_program_without_verdicts():
    table = {"p": lambda i: None, "q": lambda i: "accepted" if i == 3 else None}
    found = search(RELEASES, Fake(table), exhaustive=True)
    assert set(found.no_verdict) == {"p", "q"} and not found.changes


def test_two_releases_and_one():
    found = search(RELEASES[:2], Fake({"p": _flip(1)}))
    assert [(c.before, c.after) for c in found.changes["p"]] == [("6.12.43", "6.12.48")]
    found = search(RELEASES[:1], Fake({"p": _flip(1)}))
    assert found.no_verdict == ["p"] and found.checked == ["6.12.43"]
    assert search([], Fake({})).checked == []


# -- the reports ------------------------------------------------------------------------------

EXCERPT = Path(__file__).parent / "data" / "changelog-6.1.190-excerpt"
HOSTILE = "evil\x1b[31m|`x`::warning ##[x] \u202e"


def _result(kernel: str, verdict: str, log: str, obj: str = "a.o", prog: str = "p") -> ProgramResult:
    rejected = verdict == "rejected"
    return ProgramResult(object=obj, object_sha256="0" * 64, program=prog, section="xdp", prog_type="xdp",
                         kernel=kernel, verdict=verdict, reason="verifier_rejection" if rejected else None,
                         message=f"R1 invalid mem access {HOSTILE}" if rejected else None, log=log)  # fmt: skip


def _bisect_result(changed: bool = True, exhaustive: bool = False) -> BisectResult:
    releases = ["6.1.180", "6.1.187", "6.1.190"]
    boundaries = []
    if changed:
        old_log = "0: (b7) r0 = 0\n1: (61) r1 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'\n"
        new_log = "0: (b7) r0 = 0\n1: (95) exit\nprocessed 2 insns\n"
        before = _result("6.1.180", "rejected", old_log, obj=HOSTILE)
        after = _result("6.1.187", "accepted", new_log, obj=HOSTILE)
        boundaries.append(Boundary(HOSTILE, "p", before, after, [], diff_logs(old_log, new_log, "6.1.180", "6.1.187"),
                                   changelog_suspects(None, EXCERPT, "6.1.180", "6.1.187")))  # fmt: skip
    return BisectResult(series="6.1", releases=releases, exhaustive=exhaustive, checked=releases,
                        rounds=[releases[::2], ["6.1.187"]], boundaries=boundaries,
                        unchanged=[("b.o", "q", "accepted")], no_verdict=[], failed={}, objects=[])  # fmt: skip


def test_json_has_one_record_per_changed_program_with_suspects_newest_first():
    doc = json.loads(render("json", _bisect_result()))
    [rec] = doc["changes"]
    assert rec["object"] == HOSTILE and rec["program"] == "p"
    assert rec["before"]["version"] == "6.1.180" and rec["before"]["verdict"] == "rejected"
    assert rec["before"]["reason"] == "verifier_rejection" and "invalid mem access" in rec["before"]["message"]
    assert rec["after"] == {"version": "6.1.187", "verdict": "accepted", "reason": None, "message": None,
                            "detail": None}  # fmt: skip
    assert rec["suspects"] and all({"subject", "release"} <= set(s) for s in rec["suspects"])
    releases = [version_key(s["release"]) for s in rec["suspects"]]
    assert releases == sorted(releases, reverse=True)
    assert all(version_key("6.1.180") < r <= version_key("6.1.187") for r in releases)
    assert rec["log_diff"]["divergence"]["old_insn"] == 1
    assert doc["releases_checked"] and "candidates" in doc["suspects_are"] and doc["assumption"]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_table_and_markdown_show_the_boundary_escaped(fmt):
    text = render(fmt, _bisect_result())
    assert "\x1b" not in text and "\u202e" not in text and "\n::" not in text and "##[" not in text
    assert "6.1.180" in text and "6.1.187" in text and "candidates" in text
    assert "assumed unchanged" in text  # not exhaustive: said in every format
    first = changelog_suspects(None, EXCERPT, "6.1.180", "6.1.187").commits[0]
    assert first.subject.split(":")[0] in text
    if fmt == "markdown":
        assert "next stable update breaks" in text
        assert "\\|`x`" in text and "``" in text  # the object's pipe escaped in the cell, a longer code fence


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_equal_ends_are_said_and_exhaustive_drops_the_assumption(fmt):
    text = render(fmt, _bisect_result(changed=False))
    assert "equal at both ends" in text or '"changes": []' in text
    assert "assumed unchanged" in text
    assert "assumed unchanged" not in render(fmt, _bisect_result(changed=False, exhaustive=True))


def test_a_boundary_without_changelog_is_still_reported():
    result = _bisect_result()
    b = result.boundaries[0]
    result.boundaries[0] = Boundary(b.object, b.program, b.before, b.after, ["6.1.181"], b.logdiff,
                                    changelog_suspects(None, None, "6.1.180", "6.1.187"))  # fmt: skip
    for fmt in ("table", "markdown"):
        text = render(fmt, result)
        assert "none listed" in text and "no verdict on 6.1.181" in text
    rec = json.loads(render("json", result))["changes"][0]
    assert rec["suspects"] == [] and "no changelog" in rec["suspects_note"] and rec["unknown_between"] == ["6.1.181"]


# -- bad input --------------------------------------------------------------------------------


class FakeRepo:
    """The two questions KernelStore asks apt, answered from a list (the apt boundary)."""

    ARCHIVE: ClassVar = [(f"linux-image-6.12.{n}+deb13-amd64", f"6.12.{n}-1", "trixie") for n in (43, 57, 90, 118)]

    def package_names(self, prefix: str) -> list[str]:
        return sorted({name for name, _, _ in self.ARCHIVE if name.startswith(prefix)})

    def versions(self, names: list[str]) -> list[PackageVersion]:
        return [PackageVersion(n, v, s, 1, f"sha-{n}") for n, v, s in self.ARCHIVE if n in names]

    def missing(self) -> set[str]:  # packages the mirror answered 404 for: none here
        return set()


class FakeStore(KernelStore):
    def repo_for(self, spec):
        return FakeRepo()


def test_range_specs_and_their_errors(tmp_path):
    store = FakeStore(Cache(tmp_path / "cache"))
    spec = series_spec("6.12", load_matrix())
    assert [s.id for s in range_specs(store, spec)] == ["6.12.43", "6.12.57", "6.12.90", "6.12.118"]
    assert [s.version for s in range_specs(store, spec, "6.12.57", "6.12.90")] == ["6.12.57", "6.12.90"]
    cases = [
        (("6.12.99", None), "--from 6.12.99 is not a point release of 6.12"),
        ((None, "6.1.192"), "--to 6.1.192 is not a point release of 6.12"),
        (("6.12.118", "6.12.43"), "--from 6.12.118 is newer than --to 6.12.43"),
        (("6.12.57", "6.12.57"), "holds one point release"),
    ]
    for (first, last), message in cases:
        with pytest.raises(UserError, match=re.escape(message)):
            range_specs(store, spec, first, last)
    with pytest.raises(UserError, match=r"the archive has no kernel of series 9\.9"):
        range_specs(store, series_spec("9.9", load_matrix()))
    with pytest.raises(UserError, match=r"not a series such as 6\.12"):
        series_spec("6.12.*; rm", load_matrix())
    assert series_spec("6.12", load_matrix(), "cloud-amd64").flavour == "cloud-amd64"  # the matrix entry's id


@pytest.mark.parametrize("args, message", [
    (["--series", "x.y", "OBJ"], "--series 'x.y' is not a series"),
    (["--series", "6.12", "--format", "sarif", "OBJ"], "unknown format 'sarif'"),
    (["--series", "6.12", "--format", "json", "--output", "a", "--output", "b", "OBJ"], "--output b: no --format goes"),
    (["--series", "6.12", "missing.o"], "missing.o: no such file"),
    (["OBJ"], "the following arguments are required: --series"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message, built_programs):
    obj = built_programs["counter"]  # a real object, so only the bad argument is wrong
    args = [str(obj) if a == "OBJ" else a for a in args]
    done = run_compat("--cache", tmp_path / "cache", "bisect", *args, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("compat: error: ") and done.stdout == ""
