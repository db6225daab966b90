"""A private apt configuration under the compat cache.

compat never touches the system's apt sources: adding suites there would upgrade the whole
host. Each archive (mirror + suites + keyring) gets its own apt root (Dir, Dir::State,
Dir::Etc) under the cache, queried with apt-cache and fetched with apt-get download, so
apt's own signature and hash checks protect every package.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock

from compat.cache import Cache, replace_text, sha256_json, write_atomic
from compat.errors import InfraError, UserError

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Suites searched for Debian kernels, oldest first. Security suites live on their own mirror.
DEBIAN_SUITES = ("bullseye", "bookworm", "bookworm-backports", "trixie", "sid")
DEBIAN_SECURITY_SUITES = ("bullseye-security", "bookworm-security", "trixie-security")
# sid's Release file may be older than its Valid-Until on a frozen mirror.
NO_VALID_UNTIL = ("sid", "unstable", "experimental")
DEFAULT_MAX_AGE = 24 * 3600
STOP_POLL_SECONDS = 0.5  # how soon a running apt notices that the run must stop
# Answers of apt-cache queries, kept while the index they came from is unchanged: a run whose
# kernels and image are all cached then asks apt nothing (48 apt-cache processes cost ~2-4 s).
QUERY_MEMO = "state/compat-queries.json"
QUERY_MEMO_VERSION = 1


@dataclass(frozen=True)
class AptSource:
    """One deb line: an archive URI, its suites and components, and the keyring that signs it."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    keyring: str = DEBIAN_KEYRING

    def lines(self) -> list[str]:
        out = []
        for suite in self.suites:
            opts = f"signed-by={self.keyring}"
            if suite in NO_VALID_UNTIL:
                opts += " check-valid-until=no"
            out.append(f"deb [{opts}] {self.uri} {suite} {' '.join(self.components)}")
        return out


class MirrorMissing(InfraError):
    """The signed index lists a package the mirror does not serve (HTTP 404): a partial or
    lagging mirror (seen here: bullseye-security's arm64 kernels). ``package`` is name=version."""

    def __init__(self, message: str, package: str):
        super().__init__(message)
        self.package = package


MISSING_KEY = "missing packages"  # in the query memo: name=version of packages the mirror answered 404 for


@dataclass(frozen=True)
class PackageVersion:
    """One version of one binary package, as the archive index describes it."""

    name: str
    version: str
    suite: str
    size: int
    sha256: str
    depends: str = ""


def host_debian_mirrors() -> tuple[str | None, str | None]:
    """The Debian archive and security URIs from the host's own apt sources (or None)."""
    main = security = None
    for uri in _host_source_uris():
        tail = urlparse(uri).path.rstrip("/").rsplit("/", 1)[-1]
        if tail == "debian" and main is None:
            main = uri.rstrip("/")
        elif tail == "debian-security" and security is None:
            security = uri.rstrip("/")
    return main, security


def _host_source_uris() -> list[str]:
    uris: list[str] = []
    etc = Path("/etc/apt")
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for f in files:
        try:
            for line in f.read_text().splitlines():
                line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(line) >= 2 and line[0] == "deb":
                    uris.append(line[1])
        except OSError:
            continue
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        try:
            for line in f.read_text().splitlines():
                if line.lower().startswith("uris:"):
                    uris.extend(line.split(":", 1)[1].split())
        except OSError:
            continue
    return uris


def debian_sources() -> list[AptSource]:
    """The Debian archive sources compat searches for kernels and guest packages.

    The mirror comes from COMPAT_DEBIAN_MIRROR (and COMPAT_DEBIAN_SECURITY_MIRROR) or else from
    the host's apt sources; compat names no mirror of its own.
    """
    host_main, host_security = host_debian_mirrors()
    main = os.environ.get("COMPAT_DEBIAN_MIRROR") or host_main
    if not main:
        raise UserError(
            "no Debian mirror configured",
            "set COMPAT_DEBIAN_MIRROR to a Debian archive URI, or add one to the host's apt sources",
        )
    main = main.rstrip("/")
    security = os.environ.get("COMPAT_DEBIAN_SECURITY_MIRROR") or host_security
    if not security:
        # The security archive sits beside the main one on Debian's own mirrors.
        security = main[: -len("debian")] + "debian-security" if main.endswith("/debian") else None
    if not Path(DEBIAN_KEYRING).is_file():
        raise UserError(f"Debian archive keyring {DEBIAN_KEYRING} is missing", "apt-get install debian-archive-keyring")
    sources = [AptSource(main, DEBIAN_SUITES)]
    if security:
        sources.append(AptSource(security.rstrip("/"), DEBIAN_SECURITY_SUITES))
    return sources


class AptRepo:
    """A private apt root for a set of sources, with its own index, state and download cache."""

    def __init__(
        self,
        cache: Cache,
        sources: list[AptSource],
        max_age: float | None = None,
        stop: Callable[[], str | None] | None = None,
        arch: str = "amd64",
    ):
        for tool in ("apt-get", "apt-cache"):
            if not shutil.which(tool):
                raise UserError(
                    f"{tool} is not installed", "compat fetches kernels with apt; run it on a Debian or Ubuntu host"
                )
        self.sources = sources
        self.stop = stop  # why apt must stop now (the run deadline passed), or None: polled while it runs
        # The architecture whose packages this root lists and downloads (Debian's name). Each
        # architecture has a root of its own, with its own index: an amd64-only run never fetches
        # arm64 indices, and package names need no ":arm64" qualifier. amd64's root keeps the key
        # it always had (an existing cache stays valid).
        self.arch = arch
        lines = [s.lines() for s in sources]
        key = sha256_json(lines if arch == "amd64" else [lines, arch])[:16]
        self.root = cache.dir("apt") / key
        self.max_age = DEFAULT_MAX_AGE if max_age is None else max_age
        env_age = os.environ.get("COMPAT_APT_MAX_AGE")
        if env_age and env_age.isdigit():
            self.max_age = int(env_age)
        self._lock = FileLock(str(self.root) + ".lock", timeout=600)
        self._memo_lock = threading.Lock()
        self._memo_cache: tuple[str, dict] | None = None
        self._setup()

    def _setup(self) -> None:
        r = self.root
        for sub in (
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
            "state/lists/partial",
            "cache/archives/partial",
        ):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "state/status").touch()
        sources = "\n".join(line for s in self.sources for line in s.lines()) + "\n"
        _write_if_changed(r / "sources.list", sources)
        conf = [
            f'Dir "{r}/";',
            f'Dir::State "{r}/state/";',
            f'Dir::State::status "{r}/state/status";',
            f'Dir::Etc "{r}/etc/";',
            f'Dir::Etc::SourceList "{r}/sources.list";',
            f'Dir::Etc::SourceParts "{r}/etc/sources.list.d/";',
            f'Dir::Etc::Parts "{r}/etc/apt.conf.d/";',
            f'Dir::Etc::Preferences "{r}/etc/preferences";',
            f'Dir::Etc::PreferencesParts "{r}/etc/preferences.d/";',
            f'Dir::Cache "{r}/cache/";',
            # In this private configuration only (never the host's): the architecture whose
            # Packages indices (binary-ARCH) apt fetches; apt-get download runs no dpkg, so the
            # host's own architecture does not matter.
            f'APT::Architecture "{self.arch}";',
            f'APT::Architectures {{ "{self.arch}"; }};',
            'Acquire::Languages "none";',
            'Acquire::Retries "3";',
            'Acquire::http::Timeout "60";',
            'Binary::apt-get::Acquire::AllowInsecureRepositories "false";',
        ]
        if os.geteuid() == 0:
            # apt drops to _apt for downloads, which cannot write into root's cache directory.
            conf.append('APT::Sandbox::User "root";')
        text = "\n".join(conf) + "\n"
        # Named by its content: the same apt root reached through another path (a linked cache)
        # gets its own file, so no run rewrites the configuration another run is reading.
        self.conf = r / f"apt-{sha256_json(text)[:12]}.conf"
        _write_if_changed(self.conf, text)

    def _run(self, args: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "APT_CONFIG": str(self.conf), "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
        # Its own process group, killed whole (apt's download methods too) when compat stops it:
        # a big kernel package from a slow mirror must not outlive the run's deadline or Ctrl-C.
        # If compat is killed outright, nothing of apt may go on writing into a build directory
        # that the next run's sweep removes: the kernel signals a small guard shell when compat
        # dies (parent-death signal), and the guard kills its whole process group, apt-get and
        # its download methods (which write the files; they outlived apt-get alone).
        command = ["setpriv", "--pdeathsig", "TERM", "--", "sh", "-c", APT_GUARD, "apt-guard", *args]
        if not shutil.which("setpriv"):
            command = args
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=STOP_POLL_SECONDS if self.stop else None)
                    break
                except subprocess.TimeoutExpired:  # only with a stop() to poll
                    reason = self.stop()
                    if reason:
                        raise InfraError(f"{args[0]} {args[1]} stopped: {reason}") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        if check and proc.returncode != 0:
            err_lines = [ln for ln in err.splitlines() if ln.startswith(("E:", "W:", "Err"))] or err.splitlines()
            last = err_lines[-1] if err_lines else f"exit {proc.returncode}"
            raise InfraError(f"{args[0]} {args[1]} failed: {last}")
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    def update(self, force: bool = False) -> None:
        """Refresh the index when it is older than max_age (or forced); apt checks signatures."""
        stamp = self.root / "state/updated"
        with self._lock:
            fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < self.max_age
            if fresh and not force:
                return
            proc = self._run(["apt-get", "update", "-q"], check=False)
            failed = [ln for ln in proc.stderr.splitlines() if ln.startswith(("E:", "Err:"))]
            if proc.returncode != 0 or failed:
                detail = failed[0] if failed else f"exit {proc.returncode}"
                if stamp.exists():
                    # An index we already have is still usable: a mirror hiccup must not stop a run.
                    return
                raise InfraError(f"cannot read the package index from the archive: {detail}")
            stamp.touch()

    # -- query memo -------------------------------------------------------------------------
    def index_signature(self) -> str:
        """Identifies the index apt-cache answers from: the name, size and mtime of every list
        file (apt-get update rewrites the files that changed and only those)."""
        lists = self.root / "state/lists"
        files = []
        try:
            for entry in os.scandir(lists):
                if entry.is_file(follow_symlinks=False) and entry.name != "lock":
                    st = entry.stat(follow_symlinks=False)
                    files.append((entry.name, st.st_size, st.st_mtime_ns))
        except OSError:
            return ""
        return sha256_json([QUERY_MEMO_VERSION, sorted(files)])

    def _memo(self, query: str, compute: Callable[[], object]) -> object:
        """compute()'s JSON-able answer to query, remembered on disk for the current index."""
        signature = self.index_signature()
        if not signature:
            return compute()
        path = self.root / QUERY_MEMO
        with self._memo_lock:
            if self._memo_cache is None or self._memo_cache[0] != signature:
                self._memo_cache = (signature, self._read_memo(path, signature))
            answers = self._memo_cache[1]
            if query in answers:
                return answers[query]
        value = compute()
        with self._memo_lock:
            answers = self._read_memo(path, signature)  # another process may have added answers
            answers.update(self._memo_cache[1] if self._memo_cache and self._memo_cache[0] == signature else {})
            answers[query] = value
            self._memo_cache = (signature, answers)
            # A read-only or full cache: the answers are simply not kept.
            write_atomic(path, json.dumps({"signature": signature, "answers": answers}))
        return value

    def missing(self) -> set[str]:
        """name=version of the packages this index lists and the mirror answered 404 for (kept
        while the index is unchanged: an updated index, or mirror, is asked again)."""
        answers = self._read_memo(self.root / QUERY_MEMO, self.index_signature())
        found = answers.get(MISSING_KEY)
        return set(found) if isinstance(found, list) else set()

    def mark_missing(self, package: str) -> None:
        """Remember that the mirror lacks ``package`` (name=version) for the current index."""
        signature = self.index_signature()
        if not signature:
            return
        path = self.root / QUERY_MEMO
        with self._memo_lock:
            answers = self._read_memo(path, signature)
            answers[MISSING_KEY] = sorted(self.missing() | {package})
            self._memo_cache = None  # re-read: the answers above are the newest
            write_atomic(path, json.dumps({"signature": signature, "answers": answers}))

    @staticmethod
    def _read_memo(path: Path, signature: str) -> dict:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("signature") != signature or not isinstance(doc.get("answers"), dict):
            return {}
        return doc["answers"]

    def package_names(self, prefix: str) -> list[str]:
        """Names of all binary packages that start with prefix."""
        self.update()
        return list(self._memo(f"pkgnames {prefix}", lambda: self._package_names(prefix)))  # type: ignore[arg-type]

    def _package_names(self, prefix: str) -> list[str]:
        proc = self._run(["apt-cache", "pkgnames", prefix])
        return sorted(set(proc.stdout.split()))

    def versions(self, names: list[str]) -> list[PackageVersion]:
        """Every version of the named packages in every suite, with size, hash and dependencies."""
        if not names:
            return []
        self.update()
        query = "versions " + " ".join(names)
        found = self._memo(query, lambda: [asdict(p) for p in self._versions(names)])
        return [PackageVersion(**p) for p in found]  # type: ignore[union-attr]

    def _versions(self, names: list[str]) -> list[PackageVersion]:
        suites: dict[tuple[str, str], str] = {}
        for chunk in _chunks(names, 200):
            for line in self._run(["apt-cache", "madison", *chunk]).stdout.splitlines():
                parts = [p.strip() for p in line.split("|")]
                if len(parts) >= 3 and parts[2].endswith("Packages"):
                    suite = parts[2].split()[1].split("/")[0]
                    suites.setdefault((parts[0], parts[1]), suite)
        out: list[PackageVersion] = []
        wanted = [f"{n}={v}" for (n, v) in suites]
        for chunk in _chunks(wanted, 200):
            for stanza in parse_deb822(self._run(["apt-cache", "show", *chunk]).stdout):
                name, version = stanza.get("Package", ""), stanza.get("Version", "")
                if (name, version) not in suites or any(p.name == name and p.version == version for p in out):
                    continue
                out.append(
                    PackageVersion(
                        name=name,
                        version=version,
                        suite=suites[(name, version)],
                        size=int(stanza.get("Size", "0") or 0),
                        sha256=stanza.get("SHA256", ""),
                        depends=", ".join(filter(None, (stanza.get("Pre-Depends"), stanza.get("Depends")))),
                    )
                )
        return out

    def download(self, pkg: PackageVersion, dest: Path) -> Path:
        """Download one package version into dest; apt verifies it against the signed index."""
        dest.mkdir(parents=True, exist_ok=True)
        before = set(dest.glob("*.deb"))
        try:
            self._run(["apt-get", "download", "-q", f"{pkg.name}={pkg.version}"], cwd=dest)
        except InfraError as e:
            if " 404 " in str(e) or "404  Not Found" in str(e):
                raise MirrorMissing(f"the mirror lacks {pkg.name} {pkg.version} (404), which its index lists",
                                    f"{pkg.name}={pkg.version}") from None  # fmt: skip
            # apt says "No space left on device" in its own words; say which directory is full
            # (the half-written file is in a build directory that is never used: see Cache.ensure).
            if "No space left" in str(e) or _free_bytes(dest) < 1 << 20:
                cache = self.root.parent.parent
                raise InfraError(
                    f"disk full while downloading {pkg.name} into the cache at {cache}",
                    "free space or set COMPAT_CACHE",
                ) from None
            raise
        new = sorted(set(dest.glob("*.deb")) - before) or sorted(dest.glob(f"{pkg.name}_*.deb"))
        if not new:
            raise InfraError(f"apt-get download {pkg.name}={pkg.version} produced no file")
        return new[0]


# Runs "$@" and waits for it; on SIGTERM (compat died) kills its own process group, "$@" included.
APT_GUARD = 'trap "kill -KILL 0" TERM; "$@" & wait $!'


def parse_deb822(text: str) -> list[dict[str, str]]:
    """apt-cache show output as one dict per stanza."""
    from debian.deb822 import Deb822  # ~30 ms to import: only runs that ask apt need it

    return [dict(p) for p in Deb822.iter_paragraphs(text)]


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62  # cannot tell: not "full"


def _chunks(items: list[str], n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        replace_text(path, text)
