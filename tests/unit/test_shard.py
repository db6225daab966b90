"""--shard I/N (a deterministic part of the kernel × object matrix) and `compat merge`."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_compat
from hypothesis import given
from hypothesis import strategies as st
from synthetic_run import baseline, current

from compat.errors import UserError
from compat.results.compare import compare
from compat.results.model import RunResult
from compat.run.options import differing_options
from compat.run.shard import Shard, baseline_plan, merge, plan, restrict

KERNELS = ["5.10", "6.1", "6.12", "sid"]


def objs(n: int) -> list:
    return [SimpleNamespace(name=f"o{i:02d}.o", sha256=f"{i:064x}") for i in range(n)]


def cells(p: dict) -> list[tuple[str, str]]:
    return [(k, o.name) for k, os_ in p.items() for o in os_]


def test_parse():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard.parse(" 1 / 1 ")) == "1/1"
    for bad in ("0/4", "5/4", "1/0", "a/b", "2", "-1/2", ""):
        with pytest.raises(UserError):
            Shard.parse(bad)


@given(st.integers(1, 30), st.integers(1, 9), st.integers(1, 6))
def test_shards_cover_every_cell_exactly_once(n_objects, count, n_kernels):
    kernels, objects = KERNELS[:n_kernels] + [f"k{i}" for i in range(max(0, n_kernels - 4))], objs(n_objects)
    everything = cells(plan(kernels, objects, None))
    parts = [cells(plan(kernels, objects, Shard(i, count))) for i in range(1, count + 1)]
    assert sorted(c for part in parts for c in part) == sorted(everything)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # equal slices


def test_shards_are_deterministic_and_keep_kernels_together():
    objects = objs(10)
    shuffled = list(reversed(objects))  # another runner's glob order
    for i in range(1, 5):
        a, b = plan(KERNELS, objects, Shard(i, 4)), plan(KERNELS, shuffled, Shard(i, 4))
        assert cells(a) == cells(b)
        assert list(a) == [KERNELS[i - 1]]  # 40 cells, 4 shards: one kernel each
    assert [len(plan(KERNELS, objects, Shard(i, 3))) for i in (1, 2, 3)] == [2, 2, 2]


def test_baseline_builds_follow_their_objects():
    new = [SimpleNamespace(name="a.o", sha256="1" * 64), SimpleNamespace(name="b.o", sha256="2" * 64)]
    old = [SimpleNamespace(name="a.o", sha256="3" * 64), SimpleNamespace(name="b.o", sha256="4" * 64)]
    main = plan(KERNELS, new, Shard(2, 3))
    base = baseline_plan(main, old)
    for k, objects in main.items():
        assert sorted(o.name for o in base[k]) == sorted(o.name for o in objects)
    # A lone pair with different names is paired too.
    lone = baseline_plan({"6.1": [SimpleNamespace(name="new.o", sha256="5" * 64)]}, [old[0]])
    assert [o.name for o in lone["6.1"]] == ["a.o"]


def split(run: RunResult, groups: list[list[str]]) -> list[RunResult]:
    """The run as shard results: one per group of kernel ids."""
    out = []
    for i, group in enumerate(groups, 1):
        part = copy.deepcopy(run)
        part.kernels = [k for k in part.kernels if k.id in group]
        part.results = [r for r in part.results if r.kernel in group]
        part.options = {**part.options, "shard": {"index": i, "count": len(groups)}, "wall_seconds": float(i)}
        out.append(part)
    return out


def key(r) -> tuple:
    return (r.object, r.program, r.kernel, r.verdict, r.reason, r.message)


def test_merge_puts_the_shards_back_together():
    run = current()
    parts = split(run, [["sid", "5.10"], ["6.1.170"], ["6.1.176"]])
    merged = merge([(f"s{i}.json", p) for i, p in enumerate(reversed(parts))])
    assert not merged.warnings
    result = merged.result
    assert [k.id for k in result.kernels] == [k.id for k in run.kernels]
    assert sorted(map(key, result.results)) == sorted(map(key, run.results))
    assert [o.object for o in result.objects] == [o.object for o in run.objects]
    assert result.options["wall_seconds"] == 3.0 and result.options["shards"] == 3
    # The merged comparison is the one of the whole run.
    whole, pieced = compare(run, baseline()), compare(result, baseline())

    def transitions(comp):
        return sorted((c.object, c.program, c.kernel, c.transition) for c in comp.cells)

    assert transitions(whole) == transitions(pieced)
    assert [p.floor for p in whole.programs] == [p.floor for p in pieced.programs]


def test_merge_refuses_inconsistent_shards():
    run = current()
    a, b, c = split(run, [["sid", "5.10"], ["6.1.170"], ["6.1.176"]])
    with pytest.raises(UserError, match="missing: 3/3"):
        merge([("a", a), ("b", b)])
    with pytest.raises(UserError, match="also"):
        merge([("a", a), ("a2", copy.deepcopy(a)), ("b", b), ("c", c)])
    odd = copy.deepcopy(c)
    odd.options["shard"] = {"index": 3, "count": 4}
    with pytest.raises(UserError, match="different splits"):
        merge([("a", a), ("b", b), ("c", odd)])
    plain = copy.deepcopy(c)
    del plain.options["shard"]
    with pytest.raises(UserError, match="not a shard"):
        merge([("a", a), ("b", b), ("c", plain)])
    other_build = copy.deepcopy(c)
    other_build.objects = [replace(o, sha256="9" * 64) for o in other_build.objects]
    with pytest.raises(UserError, match="differs"):
        merge([("a", a), ("b", b), ("c", other_build)])


def test_merge_of_plain_runs_on_disjoint_kernels_and_overlaps():
    run = current()
    a, b = split(run, [["sid", "5.10"], ["6.1.170", "6.1.176"]])
    for part in (a, b):
        del part.options["shard"]
    assert len(merge([("a", a), ("b", b)]).result.results) == len(run.results)
    with pytest.raises(UserError, match="also in a"):
        merge([("a", a), ("a again", copy.deepcopy(a))])


def test_merge_warns_about_different_images_and_builds():
    run = current()
    a, b = split(run, [["sid", "5.10"], ["6.1.170", "6.1.176"]])
    b.image = {**a.image, "key": "other", "libbpf": "1.7.0"}
    b.kernels[0].version = "6.1.999"
    extra = copy.deepcopy(a)
    extra.results = []
    extra.kernels = [replace(b.kernels[0], version="6.1.170")]
    extra.options["shard"] = {"index": 3, "count": 3}
    a.options["shard"]["count"] = b.options["shard"]["count"] = 3
    warnings = merge([("a", a), ("b", b), ("x", extra)]).warnings
    assert any("different guest images" in w for w in warnings)
    assert any("different builds" in w for w in warnings)
    # The options that change verdicts travel with the merge, or are warned about when they differ.
    a.options["set_global"] = b.options["set_global"] = extra.options["set_global"] = ["debug=1"]
    a.options["program_types"] = ["encap_*=lwt_xmit"]
    merged = merge([("a", a), ("b", b), ("x", extra)])
    assert merged.result.options["set_global"] == ["debug=1"] and "program_types" not in merged.result.options
    assert any("different --program-type options" in w for w in merged.warnings)
    assert differing_options([a, b]) == ["--program-type"] and differing_options([b, extra]) == []


def test_restrict_keeps_the_baseline_cells_of_the_shard():
    run = current()
    (part,) = split(run, [["5.10"]])
    cut = restrict(baseline(), part)
    assert {r.kernel for r in cut.results} == {"5.10"}
    removed = [c for c in compare(part, cut).cells if c.transition == "removed"]
    assert all(c.kernel == "5.10" for c in removed)


def test_merge_command_renders_and_gates(tmp_path: Path):
    run = current()
    files = []
    for i, part in enumerate(split(run, [["sid", "5.10"], ["6.1.170", "6.1.176"]]), 1):
        path = tmp_path / f"shard{i}.json"
        doc = part.to_json()
        doc["comparison"] = compare(part, restrict(baseline(), part), "file", "old.json").to_json()
        path.write_text(json.dumps(doc))
        files.append(str(path))
    out = tmp_path / "merged.json"
    args = ["merge", *files, "--format", "json", "--output", str(out), "--format", "table"]
    proc = run_compat(*args)
    assert proc.returncode == 1, proc.stderr  # the synthetic run has a regression against its baseline
    doc = json.loads(out.read_text())
    assert len(doc["results"]) == len(run.results)
    assert doc["comparison"]["baseline"]["label"] == "old.json"
    assert doc["comparison"]["summary"]["regressions"] == len(compare(run, baseline()).regressions())
    assert "regression" in proc.stdout
    # The merged file renders again like any result file.
    again = run_compat("report", str(out), "--format", "markdown")  # fmt: skip
    assert again.returncode == 1 and "<details>" in again.stdout
    missing = run_compat("merge", files[0])
    assert missing.returncode == 2 and missing.stderr.startswith("compat: error: shard result(s) missing: 2/2")


def test_the_ci_example_shards_and_merges_and_names_no_mirror():
    import re

    import yaml

    path = Path(__file__).resolve().parents[2] / "examples" / "github-actions.yml"
    text = path.read_text()
    doc = yaml.safe_load(text)
    shards = doc["jobs"]["check"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(doc["env"]["SHARDS"]) + 1))
    steps = "\n".join(s.get("run", "") for job in doc["jobs"].values() for s in job["steps"])
    # The check jobs are the compat action (action.yml) with a shard each; the report job merges.
    (check,) = [s for s in doc["jobs"]["check"]["steps"] if "compat@" in s.get("uses", "")]
    assert check["with"]["shard"] == "${{ matrix.shard }}/${{ env.SHARDS }}" and "compat merge" in steps
    assert doc["jobs"]["report"]["needs"] == "check"
    assert doc["env"]["COMPAT_DEBIAN_MIRROR"] == "${{ vars.DEBIAN_MIRROR }}"
    hosts = set(re.findall(r"https?://([^/\s\"']+)", text))
    assert hosts <= {"github.com"}, hosts  # mirrors come from repository variables, never from this file
