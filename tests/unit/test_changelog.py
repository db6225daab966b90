"""Debian kernel changelogs: the upstream stable updates, their commit subjects, and the
BPF-related ones between two point releases (changelog.py).

tests/unit/data/changelog-6.1.190-excerpt is an excerpt of a real changelog: the entries
6.1.190+1 down to 6.1.177-1 of usr/share/doc/linux-image-6.1.0-54-amd64/changelog.gz in the
Debian package linux-image-6.1.0-54-amd64 6.1.190-1 (bookworm-security), with every line kept
except most of the non-BPF commit subjects (the first two of each stable update are kept).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from compat.kernels.changelog import ChangelogError, is_bpf_related, load, parse, suspects

EXCERPT = Path(__file__).parent / "data" / "changelog-6.1.190-excerpt"


def test_entries_updates_and_commits_of_a_real_changelog():
    log = load(EXCERPT)
    assert (log.debian_version, log.version) == ("6.1.190+1", "6.1.190")
    # the ChangeLog-X.Y.Z headers, in the changelog's order (newest entry first, oldest update first within it)
    assert log.stable_updates == ["6.1.188", "6.1.189", "6.1.190", "6.1.181", "6.1.182", "6.1.183", "6.1.184",
                                  "6.1.185", "6.1.186", "6.1.187", "6.1.178", "6.1.179", "6.1.180", "6.1.177"]
    by_subject = {c.subject: c for c in log.commits}
    # a subject wrapped over two lines is one subject
    bloom = by_subject["bpf: Harden bloom filter sizing and indexing on 32-bit kernels (CVE-2026-89579)"]
    assert (bloom.release, bloom.debian_version, bloom.upstream) == ("6.1.188", "6.1.190+1", True)
    # a patch Debian applied itself belongs to its entry's release
    own = by_subject["exec: Cleanup POSIX timers right after de_thread() (CVE-2026-98260)"]
    assert (own.release, own.upstream) == ("6.1.190", False)
    # the URL line that follows a subject is not part of it
    assert not any("https://" in c.subject for c in log.commits)


@pytest.mark.parametrize(("subject", "bpf"), [
    ("bpf: Guard stack limits against 32bit overflow (CVE-2023-52676)", True),
    ("bpf, sockmap: Fix sk_redir use-after-free in send verdict", True),
    ("selftests/bpf: Add a test", True),
    ("libbpf: Also reset {insn,data}_cur on realloc failure", True),
    ("bpftool: Fix double close in map dump", True),
    ("tools/bpf/bpftool: Reset vmlinux BTF after map commands", True),
    ("[x86] bugs: Enable IBPB flush on BPF JIT allocation (CVE-2026-64507)", True),
    ("lwt_bpf: Restore reserved headroom after xmit program (CVE-2026-90160)", True),
    ("net: fix a verifier-visible ctx access", True),
    ("tracing: make bpf_get_stackid() safe", True),
    ("selftests: add kfunc test", True),
    ("nfsd: Reset write verifier when async COPY writeback fails (CVE-2026-89706)", False),
    ("staging: fbtft: make dirty_lock IRQ-safe (CVE-2026-98094)", False),
    ("wifi: libertas_tf: fix UAF in lbtf_free_adapter()", False),
    ("ALSA: aloop: Fix racy access at PCM trigger (CVE-2026-23191)", False),
])
def test_which_subjects_are_bpf_related(subject, bpf):
    assert is_bpf_related(subject) is bpf


def test_suspects_between_two_releases_newest_first():
    found = suspects(None, EXCERPT, "6.1.180", "6.1.187")
    assert found.known and found.note == ""
    releases = [c.release for c in found.commits]
    # 20 BPF commits came with 6.1.183, 4 with 6.1.184 and 2 with 6.1.187 (none with 181, 182, 185, 186)
    assert releases == ["6.1.187"] * 2 + ["6.1.184"] * 4 + ["6.1.183"] * 20
    assert found.commits[0].subject == "bpf: Remove tst_run from lwt_seg6local_prog_ops. (CVE-2024-46754)"
    assert all(is_bpf_related(c.subject) for c in found.commits)
    # the old release's own commits and the newer releases' are left out
    one = suspects(EXCERPT, EXCERPT, "6.1.188", "6.1.189")
    assert {c.release for c in one.commits} == {"6.1.189"}
    assert "bpf: Mask pseudo pointer values in verifier logs (CVE-2026-72402)" in [c.subject for c in one.commits]
    none = suspects(EXCERPT, EXCERPT, "6.1.189", "6.1.190")  # 6.1.190 brought no BPF commit
    assert none.known and none.commits == []
    assert suspects(None, EXCERPT, "6.1.177", "6.1.180").commits[-1].release == "6.1.178"
    doc = found.to_json()
    assert doc["from"] == "6.1.180" and doc["suspects"][0]["release"] == "6.1.187"


def test_a_gzipped_changelog_reads_the_same(tmp_path):
    packed = tmp_path / "changelog.gz"
    packed.write_bytes(gzip.compress(EXCERPT.read_bytes()))
    assert [c.subject for c in load(packed).commits] == [c.subject for c in load(EXCERPT).commits]


def test_missing_or_malformed_changelogs_give_no_suspects_and_say_why(tmp_path):
    missing = suspects(None, None, "6.1.180", "6.1.187")
    assert not missing.commits and not missing.known and "no changelog" in missing.note
    garbage = tmp_path / "changelog.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00garbage")
    bad = suspects(None, garbage, "6.1.180", "6.1.187")
    assert not bad.commits and "not a valid gzip file" in bad.note
    text = tmp_path / "changelog"
    text.write_text("this is not\na changelog\n")
    assert "not a Debian changelog" in suspects(None, text, "6.1.180", "6.1.187").note
    with pytest.raises(ChangelogError):
        parse("")
    # only the older release's changelog: it cannot tell what came later
    older = suspects(EXCERPT, None, "6.1.190", "6.1.192")
    assert not older.commits and "ends at 6.1.190" in older.note
    assert "not newer" in suspects(EXCERPT, EXCERPT, "6.1.190", "6.1.190").note
