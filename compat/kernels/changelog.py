"""The BPF backports between two point releases, read from Debian kernel changelogs.

Every Debian kernel image package carries its changelog (usr/share/doc/<package>/changelog.gz),
which lists each upstream stable update it brought::

    linux (6.1.187-1) bookworm-security; urgency=high

      * New upstream stable update:
        https://www.kernel.org/pub/linux/kernel/v6.x/ChangeLog-6.1.186
        - bpf: Fix ... (CVE-...)
        https://www.kernel.org/pub/linux/kernel/v6.x/ChangeLog-6.1.187
        - ...
      * bpf: a patch Debian applied itself

python-debian parses the entries; this module reads, within each entry, which upstream stable
update brought which commit subject, and picks the BPF-related ones (SUBJECT_PATTERNS). The
newer release's changelog holds every entry of the older one, so the suspects between two
releases are the commits of the updates after the older version up to the newer one.

These are candidates, not a proven cause: a verdict that changed between two releases was
changed by one of these commits, or by one that does not name BPF at all.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .version import upstream_version, version_key

# Bounds: a real changelog is ~1.3 MB compressed, ~5 MB of text (6.1.192: 61k lines).
MAX_COMPRESSED = 64 << 20
MAX_TEXT = 256 << 20

# Which commit subjects are BPF-related: a subject matches when one of these finds a match
# (after any "[arch] " prefix Debian adds). One table, so that what counts is written once.
SUBJECT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("bpf subsystem", re.compile(r"^bpf[:,/ ]", re.I)),  # "bpf: …", "bpf, sockmap: …", "bpf/selftests: …"
    ("bpf selftests", re.compile(r"^selftests/bpf\b", re.I)),
    ("libbpf", re.compile(r"^libbpf\b", re.I)),
    ("bpftool", re.compile(r"^(tools/bpf/)?bpftool\b", re.I)),
    ("names BPF", re.compile(r"(?<![a-z0-9])e?bpf(?![a-z0-9])", re.I)),  # "riscv, bpf: …", "BPF JIT", "lwt_bpf"
    ("verifier", re.compile(r"\bverifier\b", re.I)),
    ("BTF", re.compile(r"\bbtf\b", re.I)),
    ("kfunc", re.compile(r"\bkfuncs?\b", re.I)),
    ("BPF helper", re.compile(r"\bbpf_[a-z0-9_]+", re.I)),  # bpf_find_vma(), bpf_get_btf_vmlinux
)
# Subjects that name a "verifier" that is not BPF's: the NFS write verifier.
NOT_BPF = re.compile(r"^(nfsd|nfs|nfsv4[.\d]*|sunrpc|pnfs)\b.*\bverifier\b", re.I)

_ARCH_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
_STABLE_URL = re.compile(r"ChangeLog-(\d+\.\d+(?:\.\d+)?)\s*$")
_STABLE_BULLET = re.compile(r"^\s*\*\s+New upstream (stable update|release)", re.I)


def is_bpf_related(subject: str) -> bool:
    """Whether a commit subject is BPF-related (SUBJECT_PATTERNS), ignoring Debian's "[arch] " prefix."""
    text = _ARCH_PREFIX.sub("", subject).strip()
    if NOT_BPF.search(text):
        return False
    return any(p.search(text) for _, p in SUBJECT_PATTERNS)


@dataclass(frozen=True)
class Commit:
    """One line of a changelog entry: a commit subject, the upstream point release that brought
    it (an upstream stable update) or None for a patch Debian applied itself, and the entry."""

    subject: str
    release: str  # upstream point release: the ChangeLog-X.Y.Z it was listed under, or the entry's own
    debian_version: str  # the changelog entry (Debian version) that lists it
    upstream: bool = True  # False: a Debian patch (a "* …" bullet of the entry)

    def to_json(self) -> dict:
        return {"subject": self.subject, "release": self.release, "debian_version": self.debian_version,
                "upstream": self.upstream}  # fmt: skip


@dataclass
class ParsedChangelog:
    """A Debian kernel changelog: its newest entry's versions and every commit line, newest entry first."""

    debian_version: str  # of the newest entry, e.g. 6.1.190+1 (linux-signed) or 6.1.187-1
    version: str  # its upstream point release, e.g. 6.1.190
    commits: list[Commit] = field(default_factory=list)
    stable_updates: list[str] = field(default_factory=list)  # the ChangeLog-X.Y.Z it lists, newest first

    def bpf_commits(self) -> list[Commit]:
        """The BPF-related commits (is_bpf_related), in changelog order."""
        return [c for c in self.commits if is_bpf_related(c.subject)]


@dataclass
class Suspects:
    """The BPF-related commits between two point releases, newest first; ``note`` says why
    there are none when no changelog could be read."""

    old_version: str
    new_version: str
    commits: list[Commit] = field(default_factory=list)
    note: str = ""  # "" when a changelog was read (possibly with no BPF commit in the range)

    @property
    def known(self) -> bool:
        return not self.note

    def to_json(self) -> dict:
        return {"from": self.old_version, "to": self.new_version, "note": self.note or None,
                "suspects": [c.to_json() for c in self.commits]}  # fmt: skip


class ChangelogError(ValueError):
    """A changelog that cannot be read or parsed (reported as "no suspects", never raised to users)."""


def read_text(path: Path) -> str:
    """A changelog file's text (gzip-compressed or plain), bounded; ChangelogError when unreadable."""
    try:
        if path.stat().st_size > MAX_COMPRESSED:
            raise ChangelogError(f"{path.name} is larger than {MAX_COMPRESSED >> 20} MiB")
        raw = path.read_bytes()
    except OSError as e:
        raise ChangelogError(f"cannot read {path.name}: {e.strerror or e.__class__.__name__}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            # Bounded decompression: a small file must not expand into gigabytes.
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = d.decompress(raw, MAX_TEXT)
            if d.unconsumed_tail:
                raise ChangelogError(f"{path.name} expands to more than {MAX_TEXT >> 20} MiB")
            if not d.eof:
                raise zlib.error("truncated")
        except (zlib.error, EOFError, gzip.BadGzipFile) as e:
            raise ChangelogError(f"{path.name} is not a valid gzip file ({e})") from None
    else:
        data = raw
    return data.decode("utf-8", "replace")


def parse(text: str) -> ParsedChangelog:
    """Parse a Debian kernel changelog's text; ChangelogError when it has no entry python-debian can read."""
    from debian.changelog import Changelog  # python-debian: only runs that look for suspects need it

    try:
        # strict=False: a malformed line is skipped, not fatal (python-debian warns instead).
        log = Changelog(text, strict=False)
        blocks = list(log)
    except Exception as e:  # python-debian raises several kinds on garbage; all mean "unreadable"
        raise ChangelogError(f"not a Debian changelog ({e.__class__.__name__})") from None
    blocks = [b for b in blocks if b.version is not None]
    if not blocks:
        raise ChangelogError("not a Debian changelog (no entry)")
    top = str(blocks[0].version)
    out = ParsedChangelog(debian_version=top, version=upstream_version(top))
    for block in blocks:
        _parse_block(block, out)
    return out


def _parse_block(block, out: ParsedChangelog) -> None:
    dversion = str(block.version)
    own = upstream_version(dversion)
    stable: str | None = None  # the ChangeLog-X.Y.Z the following "- " lines belong to
    current: list[str] | None = None  # the subject being read (continuation lines append to it)
    entries: list[tuple[list[str], str, bool]] = []
    for line in block.changes():
        stripped = line.strip()
        if not stripped or stripped.startswith("["):  # a blank line or "[ Maintainer ]"
            current = None
            if not stripped:
                continue
            stable = None
            continue
        if stripped.startswith("* "):
            current = None
            if _STABLE_BULLET.match(line):
                stable = own  # until a ChangeLog URL says which update
                continue
            stable = None
            current = [stripped[2:]]
            entries.append((current, own, False))
            continue
        m = _STABLE_URL.search(stripped)
        if m and stripped.startswith("http"):
            stable, current = m.group(1), None
            out.stable_updates.append(stable)
            continue
        if stripped.startswith("- "):  # a commit of the update being read, or of a Debian bullet's list
            current = [stripped[2:]]
            entries.append((current, stable or own, stable is not None))
            continue
        if current is not None:  # a wrapped subject
            current.append(stripped)
    for words, release, upstream in entries:
        out.commits.append(Commit(" ".join(words), release, dversion, upstream))


def load(path: Path | None) -> ParsedChangelog:
    """Read and parse a changelog file; ChangelogError when it is missing, unreadable or malformed."""
    if path is None:
        raise ChangelogError("no changelog")
    return parse(read_text(path))


def suspects(old: Path | None, new: Path | None, old_version: str, new_version: str) -> Suspects:
    """The BPF-related commits that came after ``old_version`` up to ``new_version`` (upstream point
    releases, e.g. 6.12.43 and 6.12.57), newest release first, read from the newer release's
    changelog ``new`` (it lists every earlier entry too; ``old``, the older release's, is used when
    the newer one is missing). Never raises: a missing or malformed changelog gives no suspects and
    a ``note`` that says why."""
    result = Suspects(old_version, new_version)
    if version_key(new_version) <= version_key(old_version):
        result.note = f"{new_version} is not newer than {old_version}"
        return result
    parsed: ParsedChangelog | None = None
    problems = []
    for path, which in ((new, new_version), (old, old_version)):
        try:
            parsed = load(path)
            break
        except ChangelogError as e:
            problems.append(f"{which}: {e}")
    if parsed is None:
        result.note = "no changelog to read (" + "; ".join(problems) + ")"
        return result
    lo, hi = version_key(old_version), version_key(new_version)
    if version_key(parsed.version) < hi:
        # Only the older release's changelog: what came after it is not in it.
        result.note = f"the changelog read ends at {parsed.version}, before {new_version} ({'; '.join(problems)})"
        return result
    picked = [c for c in parsed.bpf_commits() if lo < version_key(c.release) <= hi]
    # Newest release first; within one release, the changelog's own order (sorted() is stable).
    result.commits = sorted(picked, key=lambda c: version_key(c.release), reverse=True)
    return result
