"""A content-keyed cache of directories, safe for several compat processes at once.

An entry is built in a private temporary directory, described by a manifest (every file's
size, and the sha256 of the files that matter), and renamed into place only when complete:
a half-written entry is never seen. A lock per entry makes concurrent builders wait for the
first one instead of building twice. An entry whose files no longer match its manifest
(truncated, deleted, edited) is discarded and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from filelock import FileLock, Timeout

from .errors import InfraError, UserError
from .paths import cache_root

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "compat-cache/v1"
LOCK_TIMEOUT = 30 * 60  # a kernel download on a slow mirror may take long; never wait forever


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


@dataclass(frozen=True)
class Entry:
    """A complete cache entry: its directory and the metadata its builder recorded."""

    path: Path
    meta: dict

    def file(self, rel: str) -> Path:
        return self.path / rel


class Cache:
    """The compat cache: entries of several kinds (kernels, images, …) under one root."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_root()
        self.hashes = HashMemo.at(self.root / "state" / "hashes.json")

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

    def lookup(self, kind: str, key: str) -> Entry | None:
        """The entry if it is present and intact (sizes match; hashed files checked)."""
        path = self.root / kind / key
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
            return None
        if not _intact(path, manifest, self.hashes):
            return None
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
                if final.exists():
                    _remove(final)  # damaged: rebuild it
                tmp = self.dir(kind) / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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

    def entries(self, kind: str) -> list[Path]:
        d = self.root / kind
        return sorted(p for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []

    def size(self, path: Path | None = None) -> int:
        path = path or self.root
        total = 0
        for dirpath, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

    def clean(self, kinds: Iterable[str] | None = None) -> int:
        """Remove whole kinds of entries (all when None); returns bytes freed."""
        freed = 0
        targets = (
            [self.root / k for k in kinds] if kinds else [p for p in self.root.iterdir()] if self.root.is_dir() else []
        )
        for target in targets:
            if target.name == "locks" or not target.exists():
                continue
            freed += self.size(target)
            _remove(target)
        return freed

    def sweep_temporaries(self, older_than: float = 3600) -> None:
        """Remove temporary build directories left by killed processes."""
        now = time.time()
        for kind_dir in self.root.iterdir() if self.root.is_dir() else []:
            if not kind_dir.is_dir():
                continue
            for p in kind_dir.glob(".tmp-*"):
                try:
                    if now - p.stat().st_mtime > older_than:
                        _remove(p)
                except OSError:
                    pass


def _write_manifest(root: Path, meta: dict, hashed: Iterable[str]) -> None:
    sizes: dict[str, int] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            if full.is_symlink():
                continue
            sizes[str(full.relative_to(root))] = full.stat().st_size
    hashes = {rel: sha256_file(root / rel) for rel in hashed}
    manifest = {"schema": MANIFEST_SCHEMA, "created": time.time(), "meta": meta, "sizes": sizes, "sha256": hashes}
    replace_text(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def _intact(path: Path, manifest: dict, hashes: HashMemo | None = None) -> bool:
    digest_of = hashes.sha256 if hashes else sha256_file
    try:
        for rel, size in manifest.get("sizes", {}).items():
            if (path / rel).stat().st_size != size:
                return False
        return all(digest_of(path / rel) == digest for rel, digest in manifest.get("sha256", {}).items())
    except OSError:
        return False


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
