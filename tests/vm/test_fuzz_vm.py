"""A short fuzz run of the guests on mutated objects in every test run (fixed seed: a failure
reproduces with the same numbers); the host's side is tests/unit/test_fuzz.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))

from fuzz_inputs import GuestStats, run


def test_mutants_get_verdicts_in_a_real_guest(tmp_path):
    """50 host-accepted mutants checked on 6.1 (result cache off): every cell is a verdict (or a
    documented guest limit: a mutated map too big for the guest), never an error from a crashed
    agent or a dead guest."""
    results = run(objects=0, frames=0, replies=0, seed=20240602, quiet=True, guest=50, kernel="6.1")
    guest = results[-1]
    assert isinstance(guest, GuestStats) and guest.objects == 50
    assert not guest.findings, f"{guest.line()}\n{guest.findings[:3]}"
    assert guest.cells >= 50 and set(guest.verdicts) <= {"accepted", "rejected", "error (guest limit)"}
