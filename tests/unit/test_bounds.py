"""Resource bounds and cancellation, without guests: option checks, the run deadline's effect on
the fleet, and snapshots kept apart per image variant and guest memory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import run_compat

from compat.cache import Cache
from compat.errors import InfraError
from compat.guest.fleet import Fleet
from compat.guest.snapshot import KIND, Snapshots
from compat.guest.vm import VM, VMConfig
from compat.kernels.apt import AptRepo, AptSource


@pytest.mark.parametrize(
    "args, words",
    [
        (["--memory", "64"], "argument --memory: '64' is not a number of MiB from 256 to 65536"),
        (["--memory", "1e3"], "argument --memory: '1e3' is not a number of MiB from 256 to 65536"),
        (["--memory", "65537"], "argument --memory: '65537' is not a number of MiB"),
        (["--timeout", "0"], "argument --timeout: '0' is not a number of seconds above 0, at most 604800 (7 days)"),
        (["--timeout", "-5"], "argument --timeout: '-5' is not a number of seconds above 0"),
        (["--timeout", "nan"], "argument --timeout: 'nan' is not a number of seconds"),  # was: deadline exceeded
        (["--timeout", "inf"], "argument --timeout: 'inf' is not a number of seconds"),
        (["--timeout", "1e400"], "argument --timeout: '1e400' is not a number of seconds"),
        (["--timeout", "604801"], "argument --timeout: '604801' is not a number of seconds"),
        (["--object-timeout", "0"], "argument --object-timeout: '0' is not a number of seconds above 0, at most 86400"),
        (["--object-timeout", "nan"], "argument --object-timeout: 'nan' is not"),  # was: a ValueError in every cell
        (["--program-timeout", "-1"], "argument --program-timeout: '-1' is not a number of seconds above 0"),
        (["--program-timeout", "inf"], "argument --program-timeout: 'inf' is not"),
        (["--jobs", "0"], "argument --jobs: '0' is not a number of guests from 1 to 64"),
        (["--jobs", "100000"], "argument --jobs: '100000' is not a number of guests from 1 to 64"),  # was: exit 134
        (["--jobs", "2.5"], "argument --jobs: '2.5' is not a number of guests"),
        (["--shard", "0/4"], "argument --shard: 0/4: I must be between 1 and N"),
        (["--shard", "99999999999999999999/99999999999999999999"], "at most 10000 shards"),
        (["--program-type", "*=nosuchtype"], "--program-type '*=nosuchtype': libbpf knows no program type for "
                                             "section 'nosuchtype' (give a libbpf section name: socket, "),
        (["--program-type", "x=tc_typo"], "libbpf knows no program type for section 'tc_typo'"),
        (["--program-type", "x=kprobex"], "libbpf knows no program type for section 'kprobex'"),
    ],
)
def test_bad_bounds_are_usage_errors(tmp_path, args, words):
    obj = tmp_path / "x.o"
    obj.write_bytes(b"\x7fELF")
    proc = run_compat("--cache", tmp_path / "cache", "check", obj, *args)
    status, err = proc.returncode, proc.stderr
    assert status == 2, err
    assert err.startswith("compat: error: ") and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "cache" / "kernels").exists()  # refused before anything ran


@pytest.mark.parametrize(
    "args, words",
    [
        (["cache", "prune", "--days", "inf"], "argument --days: 'inf' is not a number of days from 0 to 36500"),
        (["cache", "prune", "--days", "nan"], "argument --days: 'nan' is not a number of days"),
        (["cache", "prune", "--days", "-1"], "argument --days: '-1' is not a number of days"),
        (["probe", "--jobs", "100000"], "argument --jobs: '100000' is not a number of guests from 1 to 64"),
        (["vm", "smoke", "--jobs", "-1"], "argument --jobs: '-1' is not a number of guests"),
        (["kernels", "available", "6.1", "--suite", "../../x"], "--suite: suite '../../x' is not a plain suite name"),
        (["kernels", "available", "6.1", "--flavour", "a/../b"], "--flavour: flavour 'a/../b' is not a plain"),
    ],
)
def test_numeric_options_of_every_command_have_ranges(tmp_path, args, words):
    proc = run_compat("--cache", tmp_path / "cache", *args)
    status, err = proc.returncode, proc.stderr
    assert status == 2 and err.startswith("compat: error: ") and words in err and err.count("\n") == 1, err


@pytest.mark.parametrize("value, ok", [("1", True), ("64", True), ("0.5", False)])
def test_range_edges_are_accepted(value, ok):
    from compat.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["check", "x.o", "--jobs", "64", "--timeout", "604800", "--memory", "65536",
                              "--object-timeout", "86400", "--program-timeout", "0.5", "--shard", "10000/10000"])
    assert (args.jobs, args.timeout, args.memory, args.object_timeout) == (64, 604800.0, 65536, 86400.0)
    assert parser.parse_args(["cache", "prune", "--days", "0"]).days == 0
    if ok:
        assert parser.parse_args(["check", "x.o", "--jobs", value]).jobs == int(value)


def test_the_real_cli_refuses_what_crashed_it(built_programs):
    """The defects as the issue reproduced them, through the command, on a valid object: --jobs
    100000 aborted the process (exit 134), --timeout nan made every cell an error (exit 3),
    '*=nosuchtype' became verdicts. Now each is refused before anything boots."""
    obj = built_programs["counter"]
    for args in (["--jobs", "100000"], ["--timeout", "nan"], ["--program-type", "*=nosuchtype"]):
        proc = run_compat("check", str(obj), "--kernel", "6.1", "--no-cache", *args)
        assert proc.returncode == 2 and proc.stderr.startswith("compat: error: "), proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_cancelled_fleet_boots_no_guest(tmp_path):
    fleet = Fleet(Cache(tmp_path), [])
    fleet.cancel("run deadline exceeded")
    fleet.cancel("interrupted")  # the first reason stays
    vm = VM(VMConfig(Path("/nonexistent/vmlinuz"), Path("/nonexistent/initrd")), "k")
    with pytest.raises(InfraError, match=r"^run deadline exceeded$"):
        fleet._start(vm)
    assert vm.proc is None and not vm.workdir.exists() and not fleet._live


def test_a_cancelled_fleet_stops_its_downloads(tmp_path):
    fleet = Fleet(Cache(tmp_path), [])
    repo = AptRepo(Cache(tmp_path), [AptSource("http://mirror.invalid/debian", ("trixie",))], stop=fleet._stop_reason)
    assert repo._run(["true"]).returncode == 0
    threading.Timer(0.2, fleet.cancel, ("run deadline exceeded",)).start()
    with pytest.raises(InfraError, match=r"^sleep 600 stopped: run deadline exceeded$"):
        repo._run(["sleep", "600"])  # a download from a slow mirror: killed, not waited for


def test_snapshots_of_other_variants_and_memory_sizes_are_not_pruned(tmp_path):
    cache = Cache(tmp_path)
    entries = {
        "old-image": {"kernel": "/k/vmlinuz", "variant": "", "memory": 512},
        "test-image": {"kernel": "/k/vmlinuz", "variant": "test-faults", "memory": 512},
        "other-memory": {"kernel": "/k/vmlinuz", "variant": "", "memory": 1024},
        "other-kernel": {"kernel": "/k2/vmlinuz", "variant": "", "memory": 512},
        "before-variants": {"kernel": "/k/vmlinuz"},  # written by an older compat: a product state
    }
    for key, meta in entries.items():

        def build(d: Path, meta=meta) -> dict:
            (d / "state").write_bytes(b"saved guest")
            return meta

        cache.ensure(KIND, key, build)
    Snapshots(cache)._prune("new", "/k/vmlinuz", 512)
    left = {p.name for p in cache.entries(KIND)}
    assert left == {"test-image", "other-memory", "other-kernel"}
