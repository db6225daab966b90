"""compat selftests --privilege and --arch arm64 on real guests: one release of 6.12 each, a small
sample (--limit 30: four annotated objects, about 60 annotated programs). The unprivileged column
is judged against the tests' unprivileged expectations beside root's; on arm64 the selftests are
built against the arm64 kernel's BTF for arm64's target, in their own folder, and swept on the
arm64 release.

Needs the network once (linux-source-6.12 into the cache), clang and bpftool."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_compat

from compat.objects.selftests import default_dest

pytestmark = pytest.mark.vm

RELEASE = "6.12.118"


def sweep(tmp_path, *extra: str) -> tuple[dict, str]:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (apt-get install bpftool)")
    out, table = tmp_path / "s.json", tmp_path / "s.txt"
    proc = run_compat("-q", "selftests", "--series", "6.12", "--from", RELEASE, "--to", RELEASE, "--limit", "30",
                      "--privilege", "root", "--privilege", "unprivileged", *extra,
                      "--format", "json", "--output", out, "--format", "table", "--output", table)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "× 2 mode(s)" in proc.stderr
    return json.loads(out.read_text()), table.read_text()


def test_each_release_is_judged_under_each_privilege(tmp_path):
    doc, table = sweep(tmp_path)
    assert doc["releases"] == [RELEASE] and doc["privileges"] == ["root", "unprivileged"]
    per = {r["privilege"]: r for r in doc["per_release"]}
    assert per["root"]["met"] > 0 and per["unprivileged"]["met"] > 0  # unpriv expectations judged
    # the tests without an unprivileged mode are not judged there (test_loader runs them privileged only)
    assert per["unprivileged"]["not_judged"] > per["root"]["not_judged"]
    modes = {o["privilege"] for p in doc["programs"] for o in p["outcomes"]}
    assert modes == {"root", "unprivileged"}
    assert f"{RELEASE} (unprivileged): " in table and "checked under root, unprivileged" in table


def test_arm64_builds_and_sweeps_the_arm64_release(tmp_path):
    doc, table = sweep(tmp_path, "--arch", "arm64")
    assert doc["releases"] == [f"{RELEASE}-arm64"]
    per = {r["privilege"]: r for r in doc["per_release"]}
    assert per["root"]["met"] > 0 and not doc["failed_releases"]
    dest = default_dest("6.12", "arm64")
    assert all(o["path"].startswith(str(dest)) for o in doc["objects"])  # its own folder
    (header,) = list((dest / "include").glob("*/vmlinux.h"))[:1]
    assert "struct user_pt_regs {" in header.read_text()  # arm64's kernel BTF
    assert f"{RELEASE}-arm64: " in table
