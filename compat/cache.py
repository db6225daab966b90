"""A content-keyed cache of directories, safe for several compat processes at once.

An entry is built in a private temporary directory, described by a manifest (every file's
size and sha256, the identity each file had when it was saved, and a digest of the metadata),
and renamed into place only when complete: a half-written entry is never seen. A lock per entry
makes concurrent builders wait for the first one instead of building twice.

Integrity is checked cheaply on every use (sizes, and each file's inode and mtime against those
recorded at save: any write changes them) and fully (every sha256) when a file's identity
changed, when a user of the entry could not load it (Cache.verify_entry) and in
`compat cache verify` (Cache.verify). An entry that fails a check is moved aside, removed and
rebuilt by the next Cache.ensure: damage costs one rebuild, never the run.

Every use of an entry is recorded (to the hour) as its directory's mtime, so that entries no
compat run has used for a while can be pruned (Cache.prune) without touching those in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from filelock import FileLock, Timeout

from .errors import CompatError, InfraError, UserError
from .paths import TEMP_DIR_RE, TEMP_PREFIX, cache_root, owner_alive, owner_tag, pid_alive_since
from .progress import Progress

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "compat-cache/v1"
LOCK_TIMEOUT = 30 * 60  # a kernel download on a slow mirror may take long; never wait forever
DAY = 24 * 3600
# Last use is recorded to the hour: a warm run's lookups then cost one stat each, not a write each.
MARK_INTERVAL = 3600
NEVER_PRUNED = frozenset({"state"})  # small files that remember things (hashes, timings, accel)
PRUNE_STAMP = "last-prune"  # in state/: when prune_daily last ran
TMP_KIND = "tmp"  # guests' work directories (sockets, console logs), named by their owner process
# A temporary in a kind's directory: ".tmp-<what>-<pid>[-<thread>]-<8 hex>" (ensure's build
# directories, replace_text's files; <pid> may be a full owner tag) or ".tmp-rm-<8 hex>" (an entry
# renamed aside to be deleted).
DOT_TMP_RE = re.compile(r"^\.tmp-.+?-(?P<owner>\d+(?:\.\d+\.[0-9a-f]{8})?)(?:-\d+)?-[0-9a-f]{8}$")
REMOVING_RE = re.compile(r"^\.tmp-rm-[0-9a-f]{8}$")
# What a VM's work directory holds (compat before its names carried an owner tag left such
# directories, "compat-<kernel>-<8 random>", in the system's temporary directory).
VM_WORK_FILES = frozenset({"console.log", "console.log.old", "qemu.err", "ch.sock", "con.sock", "qmp.sock"})
NOT_ENTRIES = frozenset({"state", "locks", "apt", "corpus", "tmp"})  # no manifests: not verified
# Every kind of entries compat makes (the modules that make them name their KIND from this set;
# tests/unit/test_cache.py holds them to it): `compat cache clean|prune|verify KIND` takes these,
# any kind directory the cache holds now (a "selftests-<series>" build, say) and nothing else.
KINDS = frozenset({
    "apt", "boot", "changelogs", "corpus", "images", "initrd", "kernels", "locks", "modsyms",
    "modules", "probes", "results", "selftests", "snapshots", "state", TMP_KIND,
})  # fmt: skip


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


RECENT_NS = 2_000_000_000


class HashMemo:
    """sha256 of files, remembered per file identity (device, inode, size, mtime and ctime) in a
    small JSON file: a cache entry's big files (kernel images, initrds, the guest image) are not
    re-read on every use. Any write to a file changes its ctime, which no one can set back, so
    an altered file is still hashed again and caught."""

    _memos: ClassVar[dict[Path, HashMemo]] = {}
    _memos_lock = threading.Lock()

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._known: dict[str, list] | None = None

    @classmethod
    def at(cls, path: Path) -> HashMemo:
        with cls._memos_lock:
            return cls._memos.setdefault(path, cls(path))

    @staticmethod
    def _identity(st: os.stat_result) -> list:
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def _load(self) -> dict[str, list]:
        try:
            doc = json.loads(self.path.read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def sha256(self, path: Path) -> str:
        path = Path(path)
        identity = self._identity(path.stat())
        key = str(path)
        with self._lock:
            if self._known is None:
                self._known = self._load()
            hit = self._known.get(key)
            if isinstance(hit, list) and hit[:-1] == identity:
                return hit[-1]
        digest = sha256_file(path)
        if self._identity(path.stat()) != identity or time.time_ns() - identity[4] < RECENT_NS:
            # Changed while being read, or changed so recently that another write within the
            # same clock tick would leave its ctime as it is: hashed again next time.
            return digest
        with self._lock:
            known = {k: v for k, v in self._load().items() if os.path.exists(k)}
            known[key] = [*identity, digest]
            self._known = known
            write_atomic(self.path, json.dumps(known))  # if not remembered: hashed again next time
        return digest


def mark_used(path: Path, now: float | None = None) -> None:
    """Record that the cache entry (or file) at path was just used: its mtime becomes now, unless
    a use within the last hour is recorded already. A cache that cannot be written is no error."""
    now = time.time() if now is None else now
    try:
        if now - os.stat(path).st_mtime > MARK_INTERVAL:
            os.utime(path)
    except OSError:
        pass


def sha256_json(value: object) -> str:
    """A stable hash of a JSON-able value (sorted keys), used for cache keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def replace_text(path: Path, text: str) -> None:
    """Replace path with text at once: a temporary file unique to this process and thread is
    renamed over it, so readers see the old or the new content, never a part, and concurrent
    writers of the same file never take each other's temporary file. Raises OSError."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> bool:
    """replace_text, but False, with path left as it was, when it cannot be written (a read-only
    or full disk): for files that only remember things, that is no error."""
    try:
        replace_text(path, text)
        return True
    except OSError:
        return False


@dataclass
class EntryCheck:
    """What a full check found about one cache entry (Cache.verify_entry)."""

    kind: str
    key: str
    path: Path
    damage: str | None = None  # None: intact; else what is wrong, in words
    removed: bool = False  # moved aside and deleted (rebuilt on next use)
    partial: bool = False  # an older entry without digests of all its files: only what it records

    @property
    def intact(self) -> bool:
        return self.damage is None

    def as_json(self) -> dict:
        return {"kind": self.kind, "key": self.key, "intact": self.intact, "damage": self.damage,
                "removed": self.removed, "partial": self.partial}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """A complete cache entry: its directory and the metadata its builder recorded."""

    path: Path
    meta: dict

    def file(self, rel: str) -> Path:
        return self.path / rel


class Cache:
    """The compat cache: entries of several kinds (kernels, images, …) under one root."""

    def __init__(self, root: Path | None = None, notify: Callable[[str], None] | None = None):
        self.root = Path(root) if root else cache_root()
        self.hashes = HashMemo.at(self.root / "state" / "hashes.json")
        # Told (one line) when a damaged entry is moved aside: the run goes on, the user learns why
        # it was slower. Default: stderr.
        self.notify = notify if notify is not None else _to_stderr
        # What the run is doing (downloads, image build, boots, saves): passed down with the
        # cache, as notify is; the command line sets it (compat/progress.py), nothing by default.
        self.progress: Progress = Progress()

    def file_sha256(self, path: Path) -> str:
        """The sha256 of a file, remembered while the file is unchanged (see HashMemo)."""
        return self.hashes.sha256(path)

    def dir(self, kind: str = "") -> Path:
        """The directory of one kind of entries (the root when kind is empty), created if needed."""
        d = self.root / kind if kind else self.root
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create cache directory {d}: {e.strerror}", "set COMPAT_CACHE") from None
        return d

    def lock(self, kind: str, key: str) -> FileLock:
        return FileLock(str(self.dir("locks") / f"{kind}-{key}.lock"), timeout=LOCK_TIMEOUT)

    def lookup(self, kind: str, key: str, *, record_use: bool = True) -> Entry | None:
        """The entry if it is present and intact (sizes match; hashed files checked). A hit counts
        as a use (see mark_used) unless record_use is False: callers that only scan entries (to
        choose one, to drop outdated ones) should pass False, or nothing would ever look unused."""
        path = self.root / kind / key
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
            return None
        moved: dict[str, list[int]] = {}
        if not _intact(path, manifest, self.hashes, moved):
            return None
        _refresh_stamps(path, manifest, moved)
        if record_use:
            mark_used(path)
        return Entry(path, manifest.get("meta", {}))

    def ensure(
        self,
        kind: str,
        key: str,
        build: Callable[[Path], dict],
        hashed: Iterable[str] = (),
    ) -> Entry:
        """Return the entry kind/key, building it first if it is missing or damaged.

        ``build(tmpdir)`` fills tmpdir and returns metadata (JSON-able). ``hashed`` names the
        files (relative paths) whose sha256 is recorded and checked on every use.
        """
        entry = self.lookup(kind, key)
        if entry:
            return entry
        try:
            with self.lock(kind, key):
                entry = self.lookup(kind, key)
                if entry:
                    return entry
                final = self.root / kind / key
                if os.path.lexists(final):
                    # Damaged (see lookup): moved aside and removed, then built again, once.
                    # (This lock is held: verify_entry must not take it again.)
                    damage = self.verify_entry(kind, key).damage or "its files changed"
                    _remove(final)
                    self.notify(f"cache entry {kind}/{key[:12]} was damaged ({damage}): rebuilding it")
                # The owner tag (pid, start time, boot), not the bare pid: a later run's sweep can
                # tell a dead builder's directory from a live one's even when the pid is reused.
                tmp = self.dir(kind) / f".tmp-{key[:16]}-{owner_tag()}-{uuid.uuid4().hex[:8]}"
                tmp.mkdir()
                try:
                    meta = build(tmp)
                    _write_manifest(tmp, meta, hashed)
                    os.rename(tmp, final)
                except BaseException:
                    _remove(tmp)
                    raise
        except Timeout:
            raise InfraError(f"timed out waiting for another compat process to build {kind}/{key[:12]}") from None
        except OSError as e:
            if e.errno == 28:  # ENOSPC: the temporary entry is gone, the cache stays consistent
                raise InfraError(
                    f"disk full while writing the cache at {self.root}", "free space or set COMPAT_CACHE"
                ) from None
            raise
        entry = self.lookup(kind, key)
        if entry is None:
            raise InfraError(f"cache entry {kind}/{key[:12]} is damaged right after being built")
        return entry

    # -- integrity --------------------------------------------------------------------------
    def verify_entry(self, kind: str, key: str, *, repair: bool = False) -> EntryCheck:
        """Check one entry fully (its manifest, metadata digest and every file's sha256; a result
        file its payload digest). With repair, a damaged entry is moved aside and removed, so the
        next ensure rebuilds it. Used when a user of an entry could not load it, and by verify."""
        path = self.root / kind / key
        found = EntryCheck(kind, key, path)
        if kind == "results":
            found.damage = _result_damage(path)
        else:
            found.damage, found.partial = _entry_damage(path)
        if found.damage and repair and os.path.lexists(path):
            # Under the entry's lock, not waiting long: an entry being rebuilt is its builder's.
            try:
                with self.lock(kind, key).acquire(timeout=5) if kind != "results" else contextlib.nullcontext():
                    _remove(path)
            except Timeout:
                return found  # another process holds it (rebuilding it, probably): left to it
            found.removed = not os.path.lexists(path)
        return found

    def verify_path(self, path: Path, *, repair: bool = True) -> EntryCheck | None:
        """verify_entry for the entry that holds the file at path (None: no entry of this cache,
        e.g. a kernel image given by path)."""
        try:
            rel = Path(path).relative_to(self.root)
        except ValueError:
            return None
        if len(rel.parts) < 2 or rel.parts[0] in NOT_ENTRIES or not _is_kind_name(rel.parts[1]):
            return None
        return self.verify_entry(rel.parts[0], rel.parts[1], repair=repair)

    def verify(self, kinds: Iterable[str] | None = None, *, repair: bool = True) -> list[EntryCheck]:
        """verify_entry for every entry of these kinds (all kinds that hold entries when None):
        entries built by ensure and result files. apt roots, locks and state are no entries."""
        names = _kind_names(kinds) if kinds else [
            p.name for p in sorted(self.root.iterdir()) if p.is_dir() and _is_kind_name(p.name)
        ] if self.root.is_dir() else []  # fmt: skip
        found = []
        for kind in names:
            if kind in NOT_ENTRIES:
                continue
            for path in self.entries(kind):
                if kind == "results" and path.suffix != ".json":
                    continue
                if kind != "results" and not path.is_dir():
                    continue
                found.append(self.verify_entry(kind, path.name, repair=repair))
        return found

    def known_kinds(self) -> list[str]:
        """The kinds a user may name: those compat makes and those this cache holds now."""
        held = [p.name for p in _listdir(self.root) if p.is_dir() and _is_kind_name(p.name)]
        return sorted(KINDS.union(held))

    def kind_names(self, names: Iterable[str]) -> list[str]:
        """The names, each a known kind: anything else (a typo, a path, which must never reach a
        removal) is a UserError that lists the known kinds. The one check of `compat cache
        clean|prune|verify KIND…` (the methods themselves take any kind name and find nothing)."""
        names = _kind_names(names)
        known = self.known_kinds()
        unknown = [name for name in names if name not in known]
        if unknown:
            raise UserError(f"unknown kind of cache entries: {', '.join(unknown)}",
                            f"known kinds: {', '.join(known)}")  # fmt: skip
        return names

    def entries(self, kind: str) -> list[Path]:
        d = self.root / kind
        return sorted(p for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []

    def size(self, path: Path | None = None) -> int:
        return _walk_size(path or self.root)

    def clean(self, kinds: Iterable[str] | None = None) -> int:
        """Remove whole kinds of entries (all when None); returns bytes freed."""
        freed = 0
        if kinds:
            targets = [self.root / k for k in _kind_names(kinds)]
        else:
            targets = list(self.root.iterdir()) if self.root.is_dir() else []
        for target in targets:
            # tmp/: live guests' work directories, of this or another process (the sweep removes
            # those whose owner is gone).
            if target.name in ("locks", TMP_KIND) or not target.exists():
                continue
            freed += self.size(target)
            _remove(target)
        return freed

    def remove(self, kind: str, key: str) -> None:
        """Remove one entry (named by compat itself, never by a user)."""
        _remove(self.root / kind / key)

    def sweep_temporaries(self, older_than: float = 3600) -> int:
        """Remove the temporaries of compat processes that are gone (killed outright: SIGKILL, a
        crash, a power cut); returns how many were removed. Runs at the start of every command
        that uses the cache, so nothing a killed run left stays for long.

        - the guests' work directories (``tmp/compat-<kernel>-<owner>-*``, and the same names in
          the system's temporary directory) whose owner process (pid, start time and boot, see
          paths.owner_tag) no longer runs;
        - half-built entries and half-written files in each kind's directory and in each apt
          root (``.tmp-<what>-<pid>-…``) whose process is gone, or whose pid now belongs to a
          process started after they were last written; entries renamed aside to be deleted
          (``.tmp-rm-*``) at once;
        - work directories of older compat versions (``compat-<kernel>-<8 random>`` in the system's
          temporary directory, holding only a guest's files) older than ``older_than`` seconds
          that no running process names on its command line (QEMU names its sockets there).

        A temporary whose owner still runs is never touched: several compat processes share a
        cache and a temporary directory."""
        removed = 0
        for path in self._owned_temporaries(older_than):
            _remove(path)
            removed += not os.path.lexists(path)
        for path in _legacy_vm_dirs(Path(tempfile.gettempdir()), older_than):
            shutil.rmtree(path, ignore_errors=True)
            removed += not os.path.lexists(path)
        return removed

    def _owned_temporaries(self, older_than: float) -> Iterator[Path]:
        """Temporaries under the cache and the system's temporary directory whose owner is gone."""
        for parent in (self.root / TMP_KIND, Path(tempfile.gettempdir())):
            for path in _listdir(parent, TEMP_PREFIX):
                m = TEMP_DIR_RE.match(path.name)
                if m and not owner_alive(m["owner"]):
                    yield path
        parents = [d for d in _listdir(self.root) if d.is_dir() and not d.is_symlink() and d.name != TMP_KIND]
        # apt roots hold their own half-written files (replace_text's) one level down.
        apt = self.root / "apt"
        if not apt.is_symlink():  # a linked kind directory is another cache's
            parents += [d for d in _listdir(apt) if d.is_dir() and not d.is_symlink()]
        for parent in parents:
            for path in _listdir(parent, ".tmp-"):
                if REMOVING_RE.match(path.name):
                    yield path
                    continue
                m = DOT_TMP_RE.match(path.name)
                if m is None:
                    # Not a name compat gives today: removed once old enough, as before owner tags.
                    with contextlib.suppress(OSError):
                        if time.time() - path.lstat().st_mtime > older_than:
                            yield path
                    continue
                owner = m["owner"]
                if "." in owner:
                    gone = not owner_alive(owner)
                else:
                    try:
                        gone = not pid_alive_since(int(owner), path.lstat().st_ctime)
                    except OSError:
                        continue
                if gone:
                    yield path

    # -- pruning ----------------------------------------------------------------------------
    def prune(self, older_than_days: float, kinds: Iterable[str] | None = None) -> tuple[int, int]:
        """Remove what no compat run has used for older_than_days days; returns (entries removed,
        bytes freed).

        Per kind (all kinds when kinds is None): an entry built by ``ensure`` goes when its last
        use (its directory's mtime, see ``mark_used``) is older than the limit; a result file
        (``results/*.json``) when its mtime and atime both are; an apt root (``apt/<key>``) when
        it, its ``state/status`` (touched by every AptRepo that opens it) and its
        ``state/updated`` stamp all are. ``state`` is never pruned. Lock files (``locks/``, and
        those of apt roots that are gone) are deleted when old and not held; they are not
        counted as entries. Anything else (a directory without a manifest, a symbolic link to
        another cache's data, a ``.tmp-*`` temporary) is left alone.

        Each entry is removed under its lock, taken without waiting: an entry another process is
        building or refreshing is skipped, and its last use is read again once the lock is held.
        Removal renames the entry aside first, so a concurrent reader never sees half of it.
        """
        if not older_than_days >= 0:  # also NaN
            raise ValueError(f"older_than_days must be >= 0, not {older_than_days}")
        cutoff = time.time() - older_than_days * DAY
        removed = freed = 0
        for kind_dir in self._prunable_kinds(kinds):
            for path in self._stale(kind_dir, cutoff):
                try:
                    lock = self._lock_of(kind_dir.name, path)
                    with contextlib.ExitStack() as held:
                        if lock is not None:
                            held.enter_context(lock.acquire(timeout=0))  # Timeout: in use right now
                        last = _last_use(kind_dir.name, path)
                        if last is None or last >= cutoff:
                            continue  # used while we were looking
                        if _is_lock_file(kind_dir.name, path):
                            path.unlink()  # while held: a waiter finds the unlinked file and retries
                            continue
                        size = _footprint(path)
                        _remove(path)
                        if os.path.lexists(path):
                            continue  # could not be renamed away (a read-only cache): not freed
                        removed += 1
                        freed += size
                except (Timeout, OSError, CompatError):
                    continue  # held by another process, or not ours to remove: left as it is
        return removed, freed

    def unused(self, kind: str, older_than_days: float) -> int:
        """Bytes that prune(older_than_days, [kind]) would free now (locks aside); 0 for a name
        that is no kind (a temporary)."""
        if not _is_kind_name(kind):
            return 0
        kind_dirs = self._prunable_kinds([kind])
        cutoff = time.time() - older_than_days * DAY
        return sum(_footprint(path) for kind_dir in kind_dirs for path in self._stale(kind_dir, cutoff))

    def prune_daily(self, older_than_days: float, interval: float = DAY) -> tuple[int, int] | None:
        """prune(older_than_days) at most once per interval for the whole cache, as recorded by a
        stamp in state/; None when it is not due (one stat: cheap enough for every run)."""
        stamp = self.root / "state" / PRUNE_STAMP
        try:
            if 0 <= time.time() - stamp.stat().st_mtime < interval:
                return None
        except FileNotFoundError:
            pass
        # Stamped before pruning: a prune that fails fails once a day, not on every run.
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        return self.prune(older_than_days)

    def _prunable_kinds(self, kinds: Iterable[str] | None) -> list[Path]:
        if kinds is None:
            found = self.root.iterdir() if self.root.is_dir() else []
            names = [p.name for p in found if not p.name.startswith(".")]  # .tmp-rm-*: a kind being cleaned
        else:
            names = _kind_names(kinds)
        # Locks last: the entries' own passes may leave lock files that are old and free.
        names = sorted(dict.fromkeys(names), key=lambda name: name == "locks")
        # A linked kind directory is another cache's (a benchmark's scratch cache shares apt/).
        dirs = [self.root / name for name in names if name not in NEVER_PRUNED]
        return [d for d in dirs if d.is_dir() and not d.is_symlink()]

    @staticmethod
    def _stale(kind_dir: Path, cutoff: float) -> Iterator[Path]:
        try:
            paths = sorted(kind_dir.iterdir())
        except OSError:
            return
        for path in paths:
            last = _last_use(kind_dir.name, path)
            if last is not None and last < cutoff:
                yield path

    def _lock_of(self, kind: str, path: Path) -> FileLock | None:
        if _is_lock_file(kind, path):
            return FileLock(str(path))  # the lock is the file itself
        if kind == "apt":
            return FileLock(str(path) + ".lock")  # AptRepo's lock, held while it updates the index
        if kind == "results":
            return None  # one file replaced at once: a reader has all of it or none of it
        return self.lock(kind, path.name)


def _write_manifest(root: Path, meta: dict, hashed: Iterable[str]) -> None:
    """Describe the finished entry at root: every file's size and sha256 ("digests"), the identity
    (inode, mtime) each file has now ("stamps", for the cheap check on use), and a digest of the
    metadata. "sha256" (the files named by hashed) is what older compat versions check."""
    sizes: dict[str, int] = {}
    digests: dict[str, str] = {}
    stamps: dict[str, list[int]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            if full.is_symlink() or (full.parent == root and name == MANIFEST):
                continue
            rel = str(full.relative_to(root))
            digests[rel] = sha256_file(full)  # once per entry, at save: every later full check needs it
            st = full.stat()  # after reading it: the identity of the content just hashed
            sizes[rel] = st.st_size
            stamps[rel] = _stamp(st)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "created": time.time(),
        "meta": meta,
        "meta_sha256": sha256_json(meta),
        "sizes": sizes,
        "sha256": {rel: digests[rel] for rel in hashed},
        "digests": digests,
        "stamps": stamps,
    }
    replace_text(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def _stamp(st: os.stat_result) -> list[int]:
    """A file's identity for the cheap check: a copy changes its inode, any write its mtime and
    its ctime; the ctime because no one can set it back (a write that restores the mtime with
    utime still moves it). A hard link or chmod moves it too: that costs one full hash, after
    which the new identity is recorded (_refresh_stamps). Stamps of older manifests, without the
    ctime, never match: each such file is hashed once and stamped anew."""
    return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _intact(path: Path, manifest: dict, hashes: HashMemo | None = None, moved: dict | None = None) -> bool:
    """The cheap check on use: metadata digest, sizes, and for each file whose identity is not the
    one recorded at save (written since, or copied), its full sha256. Older manifests (no
    "digests") are checked as they were: sizes and the files named in "sha256". The new identity
    of each file that moved but kept its content is put in moved (see _refresh_stamps)."""
    digest_of = hashes.sha256 if hashes else sha256_file
    base = str(path)
    try:
        if "meta_sha256" in manifest and manifest["meta_sha256"] != sha256_json(manifest.get("meta", {})):
            return False
        digests, stamps = manifest.get("digests"), manifest.get("stamps") or {}
        full = isinstance(digests, dict)
        for rel, size in manifest.get("sizes", {}).items():
            st = os.stat(os.path.join(base, rel))  # thousands of files in a kernel entry: kept lean
            if st.st_size != size:
                return False
            if full and stamps.get(rel) != _stamp(st):
                if sha256_file(path / rel) != digests.get(rel):
                    return False
                if moved is not None:
                    moved[rel] = _stamp(st)
        if full:
            return True
        return all(digest_of(path / rel) == digest for rel, digest in manifest.get("sha256", {}).items())
    except (OSError, TypeError, ValueError, AttributeError):
        return False


def _refresh_stamps(path: Path, manifest: dict, moved: dict) -> None:
    """After a full check passed for files whose identity changed (a copied cache, a file touched
    without being changed), record their new identity so that the next use is cheap again. Best
    effort: a read-only cache is checked fully each time, which is correct, only slower."""
    if moved and isinstance(manifest.get("stamps"), dict):
        stamps = {**manifest["stamps"], **moved}
        write_atomic(path / MANIFEST, json.dumps({**manifest, "stamps": stamps}, indent=1, sort_keys=True))


def _entry_damage(path: Path) -> tuple[str | None, bool]:
    """What is wrong with the entry at path after a full check (None: nothing), and whether the
    check was partial (an older manifest without digests of all files)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest", False
    except (OSError, ValueError) as e:
        return f"manifest unreadable: {e.__class__.__name__}", False
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        return "manifest of an unknown schema", False
    try:
        if "meta_sha256" in manifest and manifest["meta_sha256"] != sha256_json(manifest.get("meta", {})):
            return "manifest metadata differs from its digest", False
        digests = manifest.get("digests")
        partial = not isinstance(digests, dict)
        expected = manifest.get("sha256", {}) if partial else digests
        for rel, size in manifest.get("sizes", {}).items():
            try:
                actual = (path / rel).stat().st_size
            except FileNotFoundError:
                return f"{rel}: missing", partial
            if actual != size:
                return f"{rel}: {actual} bytes instead of {size}", partial
        for rel, digest in expected.items():
            if sha256_file(path / rel) != digest:
                return f"{rel}: content differs from its sha256", partial
    except OSError as e:
        return f"unreadable: {e.strerror or e.__class__.__name__}", False
    except (TypeError, ValueError, AttributeError):
        return "manifest malformed", False
    return None, partial


def _result_damage(path: Path) -> str | None:
    """What is wrong with one result file (None: nothing): each carries the sha256 of its payload
    (see resultcache)."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as e:
        return f"unreadable: {e.__class__.__name__}"
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        return "malformed"
    if doc.get("sha256") != sha256_json(doc["payload"]):
        return "content differs from its sha256"
    return None


def _to_stderr(message: str) -> None:
    print(f"compat: cache: {message}", file=sys.stderr)


def _is_kind_name(name: str) -> bool:
    """A directory right under the cache root that holds entries (not a temporary, not a path)."""
    return bool(name) and "/" not in name and not name.startswith(".")


def _kind_names(names: Iterable[str]) -> list[str]:
    """The names, each a kind (a UserError for anything else: a path must never reach a removal)."""
    names = list(names)
    for name in names:
        if not _is_kind_name(name):
            raise UserError(f"'{name}' is not a kind of cache entries", "see 'compat cache info'")
    return names


def _is_lock_file(kind: str, path: Path) -> bool:
    return path.suffix == ".lock" and kind in ("locks", "apt")


def _last_use(kind: str, path: Path) -> float | None:
    """When the thing at path was last used, or None when prune must leave it alone."""
    try:
        st = path.lstat()
        if path.name.startswith(".") or stat.S_ISLNK(st.st_mode):
            return None  # a temporary (sweep_temporaries' job), or a link to another cache's data
        regular, directory = stat.S_ISREG(st.st_mode), stat.S_ISDIR(st.st_mode)
        if _is_lock_file(kind, path):
            # An apt root's lock goes only with its root.
            gone = kind == "locks" or not path.with_suffix("").exists()
            return st.st_mtime if regular and gone else None
        if kind == "locks":
            return None
        if kind == "results":
            # ResultCache reads its files directly; a read updates the atime at least once a day
            # (relatime), which is enough for pruning by days. With noatime, an unchanged result
            # simply goes after the limit and is computed again.
            return max(st.st_mtime, st.st_atime) if regular and path.suffix == ".json" else None
        if kind == "apt":
            if not directory:
                return None
            stamps = [path / "state" / "status", path / "state" / "updated"]
            return max([st.st_mtime] + [s.stat().st_mtime for s in stamps if s.exists()])
        return st.st_mtime if directory and (path / MANIFEST).is_file() else None
    except OSError:
        return None


def _listdir(path: Path, prefix: str = "") -> list[Path]:
    """The entries of path whose names start with prefix (a Path only for those: a kind's directory
    holds thousands of entries, and every command's sweep looks for its few temporaries)."""
    try:
        with os.scandir(path) as entries:
            return [Path(e.path) for e in entries if e.name.startswith(prefix)]
    except OSError:
        return []


def _legacy_vm_dirs(parent: Path, older_than: float) -> list[Path]:
    """Work directories older compat versions left in parent (see Cache.sweep_temporaries)."""
    now = time.time()
    candidates = []
    for path in _listdir(parent, TEMP_PREFIX):
        name = path.name
        if not (len(name) > len(TEMP_PREFIX) + 9 and name[-9] == "-"):
            continue
        if TEMP_DIR_RE.match(name):
            continue  # named with its owner: handled by owner
        try:
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or now - st.st_mtime < older_than:
                continue
            if os.listdir(path) and not set(os.listdir(path)) <= VM_WORK_FILES:
                continue  # not a guest's work directory: not ours to remove
        except OSError:
            continue
        candidates.append(path)
    if not candidates:
        return []
    in_use = b"\0".join(_command_lines())
    return [p for p in candidates if str(p).encode() + b"/" not in in_use]


def _command_lines() -> list[bytes]:
    """The command lines of the running processes (a QEMU names its work directory's sockets)."""
    lines = []
    for entry in _listdir(Path("/proc")):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                lines.append((entry / "cmdline").read_bytes())
    return lines


def _footprint(path: Path) -> int:
    """Bytes under path (a directory or one file), as Cache.size counts them."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    return _walk_size(path) if stat.S_ISDIR(st.st_mode) else st.st_size


def _walk_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove(path: Path) -> None:
    # Rename first so a concurrent reader never sees a half-deleted entry under its real name.
    if not path.exists():
        return
    doomed = path.with_name(f".tmp-rm-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, doomed)
    except OSError:
        doomed = path
    if doomed.is_dir() and not doomed.is_symlink():
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        doomed.unlink(missing_ok=True)
