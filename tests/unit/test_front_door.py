"""The front door (issue 19): cache kinds, the accelerator probe, the Python API, progress and
verbosity, machine-readable output of every command."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from compat.cache import KINDS, Cache
from compat.errors import EXIT_USAGE, UserError
from tests.conftest import run_compat

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("action", ["clean", "prune", "verify"])
def test_cache_unknown_kind_is_a_usage_error(tmp_path, action):
    """`compat cache clean bogus` said "freed 0 MB", exit 0: an unknown kind is one line naming
    the known kinds, exit 2, for clean, prune and verify alike."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "keep").write_text("x")
    r = run_compat("--cache", tmp_path, "cache", action, "bogus")
    assert r.returncode == EXIT_USAGE, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compat: error: unknown kind of cache entries: bogus"), r.stderr
    assert "snapshots" in lines[0] and "kernels" in lines[0]
    assert (tmp_path / "kernels" / "keep").exists()
    assert "freed" not in r.stdout


def test_cache_known_kinds(tmp_path):
    """A kind compat makes is known even before the cache holds it; a kind directory the cache
    holds (a selftests build of another series) is known too; a path never is."""
    cache = Cache(tmp_path)
    assert cache.kind_names(["snapshots"]) == ["snapshots"]
    (tmp_path / "selftests-6.1").mkdir()
    assert cache.kind_names(["selftests-6.1"]) == ["selftests-6.1"]
    assert cache.clean(["snapshots"]) == 0
    for bad in ("bogus", "../x", ".tmp-rm-00000000"):
        with pytest.raises(UserError):
            cache.kind_names([bad])


def test_every_kind_compat_makes_is_listed():
    """The modules that make cache entries name kinds of the one list."""
    made = {
        importlib.import_module("compat.kernels.sources").KIND,
        importlib.import_module("compat.kernels.sources").BOOT_KIND,
        importlib.import_module("compat.kernels.sources").CHANGELOG_KIND,
        importlib.import_module("compat.run.resultcache").KIND,
        importlib.import_module("compat.run.checker").PROBE_KIND,
        importlib.import_module("compat.guest.image").IMAGE_KIND,
        importlib.import_module("compat.guest.image").MODULES_KIND,
        importlib.import_module("compat.guest.image").INITRD_KIND,
        importlib.import_module("compat.guest.snapshot").KIND,
        "modsyms", "apt", "state", "locks", "tmp", "corpus", "selftests",
    }
    assert made <= KINDS, made - KINDS


# -- the accelerator: a KVM that cannot run our guests is seen without a 20 s probe boot -------


def test_kvm_check_reasons(tmp_path):
    """Each reason is one phrase naming the device; a missing or unusable device never reaches
    a probe boot."""
    from compat.guest.accel import kvm_check

    assert kvm_check(str(tmp_path / "kvm")) == f"{tmp_path / 'kvm'} missing"
    not_kvm = tmp_path / "not-kvm"
    not_kvm.write_text("")
    assert "KVM_GET_API_VERSION failed" in (kvm_check(str(not_kvm)) or "")


def test_kvm_check_sees_pvm(tmp_path):
    """/dev/kvm of the PVM module (no kvm_intel or kvm_amd beside it) hangs a Debian kernel:
    it is refused without booting. Needs a /dev/kvm that opens and creates VMs (this machine's)."""
    from compat.guest.accel import kvm_check

    if kvm_check(sys_module=tmp_path) is not None:
        pytest.skip(f"no working /dev/kvm here: {kvm_check(sys_module=tmp_path)}")
    (tmp_path / "kvm_pvm").mkdir()
    assert kvm_check(sys_module=tmp_path) == "/dev/kvm is PVM (kvm_pvm), which runs only PVM guest kernels"
    (tmp_path / "kvm_intel").mkdir()
    assert kvm_check(sys_module=tmp_path) is None


def test_choose_accel_fast_and_said(tmp_path, monkeypatch, caplog):
    """On a host whose KVM kvm_check refuses (this machine: PVM), the decision takes well under a
    second (the probe boot waited 20 s before) and is said in one line with its reason; the
    next run says it again at info level, from the cache; COMPAT_ACCEL still forces."""
    import logging
    import time

    from compat.guest.accel import choose_accel, kvm_check

    wrong = kvm_check()
    if wrong is None:
        pytest.skip("this host's KVM passes kvm_check: only a probe boot can tell")
    monkeypatch.delenv("COMPAT_ACCEL", raising=False)
    booted: list[str] = []

    def probe_boot(accel: str, timeout: float) -> bool:
        booted.append(accel)
        time.sleep(timeout)  # what a hanging KVM guest costs
        return False

    cache = Cache(tmp_path)
    caplog.set_level(logging.INFO, logger="compat.guest.accel")
    t0 = time.monotonic()
    assert choose_accel(cache, probe_boot) == "tcg"
    assert time.monotonic() - t0 < 1 and not booted
    said = [r for r in caplog.records if r.name == "compat.guest.accel"]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert said[0].getMessage().startswith(f"accel: tcg (KVM: {wrong}; decided in ")
    caplog.clear()
    assert choose_accel(cache, probe_boot) == "tcg"
    assert [r.levelno for r in caplog.records if r.name == "compat.guest.accel"] == [logging.INFO]
    monkeypatch.setenv("COMPAT_ACCEL", "kvm")
    assert choose_accel(cache, probe_boot) == "kvm" and not booted
    monkeypatch.setenv("COMPAT_ACCEL", "fast")
    with pytest.raises(UserError):
        choose_accel(cache, probe_boot)


# -- the Python API ------------------------------------------------------------------------------

GOLDEN = ROOT / "tests" / "golden" / "baseline.json.json"


def test_import_compat_is_cheap():
    """`import compat` loads no run machinery, no reports, no guests: the API comes on first use."""
    import subprocess
    import sys

    code = ("import sys, compat; heavy = [m for m in sys.modules if m.startswith(('compat.', 'yaml', 'tabulate'))]; "
            "print(heavy); compat.report; print('compat.api' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


def test_api_report_and_compare_on_a_saved_result(tmp_path):
    """compat.report and compat.compare on a saved result file, as `compat report` renders it."""
    import compat
    from compat.results.model import RunResult

    result = RunResult.load(GOLDEN)
    comparison = compat.compare(result, GOLDEN)
    assert comparison.baseline is not None and comparison.kernel_order
    text = compat.report(GOLDEN, "markdown", comparison)
    assert text == compat.report(result, "markdown", comparison)
    cli = run_compat("report", GOLDEN, "--baseline", GOLDEN, "--format", "markdown")
    assert cli.stdout == text
    assert json.loads(compat.report(result, "json"))["schema"] == "compat/v1"
    assert compat.gate(result, comparison) == cli.returncode
    junit = run_compat("report", GOLDEN, "--baseline", GOLDEN, "--format", "junit", "--fail-on", "never")
    assert compat.report(result, "junit", comparison, fail_on="never") == junit.stdout
    with pytest.raises(UserError):
        compat.report(result, "nonsense")
    with pytest.raises(UserError):
        compat.compare(tmp_path / "missing.json")


def test_api_check_refuses_bad_options_before_booting(tmp_path):
    """Options are the table's rows, with the command line's bounds; anything else is compat's
    own UserError, never SystemExit or TypeError, before anything boots."""
    import compat

    with pytest.raises(UserError, match="unknown check option"):
        compat.check([tmp_path / "a.o"], cache=tmp_path, bogus=1)
    with pytest.raises(UserError, match="memory_mb"):
        compat.check([tmp_path / "a.o"], cache=tmp_path, memory_mb=1)
    with pytest.raises(UserError, match="--program-type"):
        compat.check([tmp_path / "a.o"], cache=tmp_path, program_types=["nonsense"])
    with pytest.raises(UserError):
        compat.check([tmp_path / "missing.o"], cache=tmp_path, kernels=["6.1"])
    with pytest.raises(UserError, match="arch"):
        compat.check([tmp_path / "a.o"], cache=tmp_path, arch="sparc")
    assert not (tmp_path / "snapshots").exists()


def test_cli_main_returns_its_status(tmp_path, capsys):
    """compat.cli.main() returns the exit status (usage errors and --help too), never SystemExit."""
    from compat.cli import main

    assert main(["--cache", str(tmp_path), "cache", "clean", "bogus"]) == EXIT_USAGE
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == EXIT_USAGE
    capsys.readouterr()


# -- progress and verbosity --------------------------------------------------------------------


def test_line_progress_says_each_stage_with_its_time():
    """In CI (stderr no terminal): one plain line per finished stage with its time; a stage that
    fails says nothing (the error does); texts from names are escaped."""
    import io

    from compat.progress import LineProgress, for_stderr

    out = io.StringIO()
    sink = for_stderr(stream=out)
    assert isinstance(sink, LineProgress)
    with sink.stage("fetching kernel 6.12", 84e6, "bytes") as st:
        st.advance(84e6)
        st.done("fetched kernel 6.12 (6.12.118, 84 MB)")
    with pytest.raises(RuntimeError), sink.stage("building the guest image") as st:
        raise RuntimeError("boom")
    sink.line("6.1\x1b[31m: 2 program(s)")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("compat: fetched kernel 6.12 (6.12.118, 84 MB) in ") and lines[0].endswith(" s")
    assert lines[1] == "compat: 6.1\\x1b[31m: 2 program(s)"
    assert type(for_stderr(quiet=True, stream=out)).__name__ == "Progress"


def test_rich_progress_on_a_terminal():
    """On a terminal: a live display (rich) with a row per running stage, bytes for downloads,
    and each finished stage's line left above it; no real tty needed (a forced terminal)."""
    import io

    from rich.console import Console

    from compat.progress import RichProgress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    sink = RichProgress(console)
    with sink.stage("fetching kernel 6.12", 84e6, "bytes") as st:
        st.advance(42e6)
        sink.live.refresh()
        st.done("fetched kernel 6.12 (6.12.118, 84 MB)")
    with sink.stage("checking on 6.1", 13, "objects") as st:
        st.advance(3)
        sink.live.refresh()
    sink.close()
    text = out.getvalue()
    assert "fetching kernel 6.12" in text and "42.0/84 MB" in text
    assert "checking on 6.1" in text and "3/13 objects" in text
    assert "compat: fetched kernel 6.12 (6.12.118, 84 MB) in " in text
    assert "\x1b[" in text  # a terminal's live display (cursor moves), not plain lines


def test_quiet_prints_nothing_but_errors(tmp_path):
    """-q: no summary or warning lines; errors still are one line; -v/-q exclude each other."""
    plain = run_compat("report", GOLDEN, "--format", "json")
    assert plain.returncode == 1 and plain.stderr.startswith("compat: 4 program(s)"), plain.stderr  # the gate
    quiet = run_compat("-q", "report", GOLDEN, "--format", "json")
    assert quiet.returncode == 1 and quiet.stderr == "" and quiet.stdout == plain.stdout
    bad = run_compat("-q", "report", tmp_path / "missing.json")
    assert bad.returncode == EXIT_USAGE and bad.stderr.startswith("compat: error: ")
    assert run_compat("-q", "-v", "cache", "info").returncode == EXIT_USAGE


# -- machine-readable output ---------------------------------------------------------------------


def test_cache_info_json(tmp_path):
    """compat cache info --json: the documented keys; names stay data."""
    (tmp_path / "kernels" / "k1").mkdir(parents=True)
    (tmp_path / "kernels" / "k1" / "f").write_bytes(b"x" * 1000)
    (tmp_path / "state").mkdir()
    done = run_compat("--cache", tmp_path, "cache", "info", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == {"cache", "kinds", "total_bytes", "unused_bytes", "keep_days"}
    kinds = {k["kind"]: k for k in doc["kinds"]}
    assert kinds["kernels"] == {"kind": "kernels", "entries": 1, "bytes": kinds["kernels"]["bytes"], "unused_bytes": 0}
    assert kinds["kernels"]["bytes"] >= 1000 and kinds["state"]["unused_bytes"] is None


def test_image_info_json_without_an_image(tmp_path):
    done = run_compat("--cache", tmp_path, "image", "info", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"image": None}


def test_probe_json_alias():
    """compat probe --json is --format json."""
    from compat.cli.options import build_parser

    assert build_parser().parse_args(["probe", "--json"]).format == "json"
    assert build_parser().parse_args(["probe"]).format == "table"
    for argv in (["kernels", "list", "--json"], ["kernels", "available", "6.1", "--json"], ["cache", "info", "--json"],
                 ["vm", "smoke", "--json"], ["image", "info", "--json"]):  # fmt: skip
        assert build_parser().parse_args(argv).json is True


# -- compat probe: kfuncs ----------------------------------------------------------------------


def test_probe_kfunc_lines():
    """The kfunc count is a number only where the BTF lists kfuncs (decl tags); struct_ops is
    tried against one struct_ops type; supported types the probe cannot load say 'not probed'."""
    from compat.cli.kernels import kfunc_count, kfunc_line
    from compat.results.inventory import Inventory

    old = Inventory.from_probe({"prog_types": {"xdp": True, "struct_ops": True, "ext": True, "kprobe": False},
                                "kfuncs_btf": ["tcp_reno_cong_avoid"], "kfuncs_source": "requested",
                                "kfunc_allowed": {"tcp_reno_cong_avoid": {"xdp": False,
                                                                          "struct_ops:tcp_congestion_ops": True}}})
    assert kfunc_count(old) == "unknown (this kernel's BTF does not list kfuncs)"
    assert kfunc_line("tcp_reno_cong_avoid", "6.1", old) == (
        "tcp_reno_cong_avoid on 6.1: present; callable from: struct_ops:tcp_congestion_ops; not probed: ext")
    new = Inventory.from_probe({"kfuncs_btf": ["a", "b"], "kfuncs_source": "decl_tag"})
    assert kfunc_count(new) == "2" and new.to_json()["kfuncs_source"] == "decl_tag"
    assert kfunc_line("c", "6.12", new) == "c on 6.12: absent; callable from: none"
