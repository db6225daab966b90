"""compat bisect's search (run/bisect.search) with a fake verdict source, its reports and its bad input."""

from __future__ import annotations

from compat.run.bisect import search

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
