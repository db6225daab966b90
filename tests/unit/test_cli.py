"""The command line: output and exit statuses, bad input as one line on stderr (no traceback)."""


import pytest
from conftest import run_compat


def one_line_error(proc, status, words):
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compat: error:") and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors():
    one_line_error(run_compat(), 2, "required")
    one_line_error(run_compat("kernels", "frobnicate"), 2, "invalid choice")


def test_bad_matrix_and_kernel(tmp_path):
    one_line_error(run_compat("kernels", "list", "--matrix", str(tmp_path / "none.yaml")), 2, "does not exist")
    bad = tmp_path / "m.yaml"
    bad.write_text("kernels: [{series: '6.1', colour: red}]")
    one_line_error(run_compat("kernels", "list", "--matrix", str(bad)), 2, "unknown key 'colour'")
    one_line_error(run_compat("kernels", "list", "--kernel", "nope"), 2, "unknown kernel 'nope'")


def test_qemu_missing(tmp_path):
    # -q: the image may be (re)built first, and its progress line is not the point here.
    one_line_error(run_compat("-q", "vm", "smoke", env={"COMPAT_QEMU": str(tmp_path / "no-qemu")}), 2, "qemu")


def test_corrupt_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run_compat("--cache", str(blocker / "sub"), "cache", "info"), 2, "cannot create cache directory")


def test_no_mirror_configured(tmp_path, monkeypatch, capsys):
    # No Debian source on the host and no COMPAT_DEBIAN_MIRROR: compat says so and how to fix it.
    import compat.kernels.apt
    from compat.cli import main

    monkeypatch.setattr(compat.kernels.apt, "_host_source_uris", lambda: [])
    monkeypatch.setenv("COMPAT_DEBIAN_MIRROR", "")
    assert main(["--cache", str(tmp_path), "kernels", "list"]) == 2  # returned, not raised
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Debian mirror configured" in err[0] and "COMPAT_DEBIAN_MIRROR" in err[0]


def _deep_json(depth: int) -> str:
    return '{"schema": "compat/v1", "kernels": ' + "[" * depth + "]" * depth + ', "objects": [], "results": []}'


@pytest.mark.parametrize("depth", [100_000, 500])  # past the decoder's recursion; shallower but past any result
def test_deeply_nested_result_files_are_one_line(tmp_path, depth):
    """Deep JSON given to report, merge or --baseline ended in RecursionError (exit 3)."""
    deep = tmp_path / "deep.json"
    deep.write_text(_deep_json(depth))
    obj = tmp_path / "x.o"
    obj.write_bytes(b"\x7fELF")
    for args in (["report", str(deep)], ["merge", str(deep)],
                 ["--cache", str(tmp_path / "c"), "check", str(obj), "--baseline", str(deep)]):  # fmt: skip
        one_line_error(run_compat(*args), 2, "not a compat result file (nested more than 64 levels deep)")


def test_matrix_defects_of_issue_14_through_the_cli(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text('kernels:\n  - id: "x"\n    series: 6.10\n')  # silently checked the 6.1 series
    one_line_error(run_compat("--cache", str(tmp_path / "c"), "kernels", "list", "--matrix", str(m)), 2,
                   "'series' is the number 6.10 (line 3), not a string (write series: \"6.10\" in quotes")  # fmt: skip
    m.write_text("kernels: " + "[" * 5000 + "]" * 5000)  # RecursionError, exit 3
    one_line_error(run_compat("--cache", str(tmp_path / "c"), "kernels", "list", "--matrix", str(m)), 2, "nests more")
    m.write_text('kernels:\n  - {id: x, source: apt, mirror: "http://mirror.invalid/d", suite: ../../../x}\n')
    one_line_error(run_compat("--cache", str(tmp_path / "c"), "kernels", "list", "--matrix", str(m)), 2,
                   "suite '../../../x' is not a plain suite name")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "m.yaml"]  # no apt root outside the cache


def test_result_depth_bound_is_exact_and_real_results_pass(tmp_path):
    from pathlib import Path

    from compat.errors import UserError
    from compat.results.model import MAX_DEPTH, RunResult, _depth_exceeds

    golden = Path(__file__).parents[1] / "golden" / "baseline.json.json"
    assert RunResult.read_document(golden)["schema"] == "compat/v1"  # a real result, with its baseline, passes
    nested: list = []
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    assert not _depth_exceeds(nested, MAX_DEPTH) and _depth_exceeds([nested], MAX_DEPTH)
    path = tmp_path / "r.json"
    path.write_text(_deep_json(MAX_DEPTH))  # the document itself is one level more
    with pytest.raises(UserError, match="nested more than 64 levels"):
        RunResult.read_document(path)
    path.write_text(_deep_json(MAX_DEPTH - 1))
    assert RunResult.read_document(path)["schema"] == "compat/v1"
