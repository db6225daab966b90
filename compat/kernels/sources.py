"""Kernels: resolve a matrix entry to real packages (or a local image), fetch and cache them.

matrix entry (KernelSpec) ──resolve──► ResolvedKernel (packages + cache key) ──fetch──► Kernel
(a vmlinuz and its modules tree in the cache, ready to boot).
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from debian.debian_support import Version

from compat.cache import Cache, Entry, sha256_file, sha256_json
from compat.errors import CompatError, InfraError, UserError

from .apt import AptRepo, AptSource, MirrorMissing, PackageVersion, debian_sources
from .imagearch import arm64_release, gunzip_image, image_arch
from .matrix import DEFAULT_ARCH, KernelSpec, check_name
from .version import release_version, upstream_version, version_key

# Kernels fetched at once: downloads wait on the network, unpacking (xz) takes a core: three keep
# a fast mirror busy without starving the guests booting on a 2-core machine.
FETCH_WORKERS = 3
MAX_MISSING = 8  # packages of one kernel a partial mirror may lack before the fetch gives up
KIND = "kernels"
BOOT_KIND = "boot"
CHANGELOG_KIND = "changelogs"  # changelogs of kernels whose entries were cached without one
CHANGELOG = "changelog.gz"  # in a kernel entry: the image package's Debian changelog (see changelog.py)
# An image package: linux-image-<abi>-<flavour>, where every part of the ABI after X.Y.Z has a
# digit (6.1.0-56, 6.1.0-0.deb11.52, 6.12.117+deb13, 6.8.0-40) so "cloud" or "rt" never pass
# for ABI; X.Y-only names (linux-image-6.1-amd64) are meta packages.
_ABI = r"\d+\.\d+\.\d+(?:[-+.~][a-z]*\d[0-9a-z]*)*"


@dataclass(frozen=True)
class ResolvedKernel:
    """A matrix entry bound to concrete packages (or a local file) and its cache key."""

    spec: KernelSpec
    version: str  # upstream point release, e.g. 6.1.176
    release: str  # uname -r, e.g. 6.1.0-50-amd64
    key: str
    packages: tuple[PackageVersion, ...] = ()
    suite: str | None = None


@dataclass(frozen=True)
class Kernel:
    """A kernel ready to boot: its image and modules in the cache."""

    spec: KernelSpec
    version: str
    release: str
    key: str
    vmlinuz: Path
    modules: Path | None
    packages: tuple[str, ...] = field(default=())
    changelog: Path | None = None  # the package's Debian changelog (changelog.gz), when the entry kept it
    arch: str = "amd64"  # Debian's name (amd64, arm64): of the packages, or read from a local image

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def label(self) -> str:
        return self.spec.label


def image_package_re(flavour: str) -> re.Pattern[str]:
    return re.compile(rf"^linux-image-(?:unsigned-)?(?P<abi>{_ABI})-{re.escape(flavour)}$")


class KernelStore:
    """Resolves matrix entries and keeps fetched kernels in the cache."""

    def __init__(self, cache: Cache, refresh: bool = False, stop: Callable[[], str | None] | None = None):
        self.cache = cache
        self.refresh = refresh
        self.stop = stop  # see AptRepo
        self._repos: dict[tuple, AptRepo] = {}
        self._repos_lock = threading.Lock()  # fetches run in threads (prefetch): one AptRepo per archive

    # -- archives ---------------------------------------------------------------------------
    def repo_for(self, spec: KernelSpec) -> AptRepo:
        # The names become apt source lines and apt's file names: plain names only, checked again
        # here for specs made in code rather than read from a matrix (load_matrix checks them first).
        for kind, names in (("suite", [spec.suite] if spec.suite else []), ("component", spec.components),
                            ("flavour", [spec.flavour]), ("package", [spec.package] if spec.package else [])):
            for name in names:
                check_name(kind, name, f"kernel '{spec.id}': ")
        if spec.source == "apt":
            sources = [
                AptSource(
                    spec.mirror,
                    (spec.suite,),
                    spec.components,
                    spec.keyring or "/usr/share/keyrings/debian-archive-keyring.gpg",
                )
            ]
            if spec.keyring and not Path(spec.keyring).is_file():
                raise UserError(f"kernel '{spec.id}': keyring {spec.keyring} does not exist")
        else:
            sources = debian_sources()
        key = (*tuple(s.lines()[0] for s in sources), len(sources), spec.arch)
        with self._repos_lock:
            if key not in self._repos:
                repo = AptRepo(self.cache, sources, stop=self.stop, arch=spec.arch)
                repo.update(force=self.refresh)
                self._repos[key] = repo
            return self._repos[key]

    def candidates(self, spec: KernelSpec) -> list[PackageVersion]:
        """Every image package version that matches the entry, newest first."""
        repo = self.repo_for(spec)
        pattern = image_package_re(spec.flavour)
        names = [n for n in repo.package_names("linux-image-") if pattern.match(n)]
        if spec.package:
            names = [n for n in names if n == spec.package]
        out = []
        # Packages the mirror turned out not to serve: the newest the mirror has is the newest
        # (a pinned version or package stays, and its fetch says the mirror lacks it).
        lacking = repo.missing() if not (spec.version or spec.package) else set()
        for pv in repo.versions(names):
            if f"{pv.name}={pv.version}" in lacking:
                continue
            up = upstream_version(pv.version)
            if spec.suite and pv.suite != spec.suite:
                continue
            if spec.series and not (up == spec.series or up.startswith(spec.series + ".")):
                continue
            if spec.version and up != spec.version:
                continue
            out.append(pv)
        # Newest upstream first; for one upstream version prefer the native build (no "~debNuM"
        # backport suffix), then the highest Debian revision.
        out.sort(
            key=lambda p: (version_key(upstream_version(p.version)), "~" not in p.version, Version(p.version)),
            reverse=True,
        )
        return out

    # -- resolution -------------------------------------------------------------------------
    def resolve(self, spec: KernelSpec) -> ResolvedKernel:
        """Bind a matrix entry to packages (newest match) or to its local image."""
        if spec.source == "local":
            return self._resolve_local(spec)
        if spec.releases:  # a series (debian:6.12.*): series.expand makes one spec per release first
            raise UserError(f"kernel '{spec.id}' stands for several point releases ({spec.releases})",
                            f"name one, e.g. debian:{spec.series}.1, or use a command that expands series")  # fmt: skip
        found = self.candidates(spec)
        if not found:
            what = spec.describe()
            raise UserError(
                f"kernel '{spec.id}': the archive has no package for {what}",
                f"see 'compat kernels available {spec.series or (spec.version or '')[:3] or 'SERIES'}'",
            )
        image = found[0]
        repo = self.repo_for(spec)
        packages = [image, *self._companions(repo, image)]
        release = image.name.removeprefix("linux-image-").removeprefix("unsigned-")
        key = sha256_json(sorted(p.sha256 or f"{p.name}={p.version}" for p in packages))
        if spec.arch != DEFAULT_ARCH:
            # The packages' hashes differ per architecture already; the arch in the key says so
            # (amd64 keys stay what they were: cached kernels and results remain valid).
            key = sha256_json({"packages": key, "arch": spec.arch})
        return ResolvedKernel(spec, upstream_version(image.version), release, key, tuple(packages), image.suite)

    def _companions(self, repo: AptRepo, image: PackageVersion) -> list[PackageVersion]:
        """Packages that carry the rest of a split kernel (sid: linux-binary/-modules/-base;
        Ubuntu: linux-modules): the image's exact-version dependencies on same-ABI packages."""
        release = image.name.removeprefix("linux-image-").removeprefix("unsigned-")
        seen: dict[str, PackageVersion] = {}
        todo = [image]
        while todo:
            pkg = todo.pop()
            for dep in re.split(r",\s*", pkg.depends):
                m = re.match(r"^(linux-[a-z-]+?-" + re.escape(release) + r")\s*\(=\s*([^)]+)\)$", dep.strip())
                if not m or m.group(1) in seen or m.group(1) == image.name:
                    continue
                match = [v for v in repo.versions([m.group(1)]) if v.version == m.group(2).strip()]
                if match:
                    seen[m.group(1)] = match[0]
                    todo.append(match[0])
        return list(seen.values())

    def _resolve_local(self, spec: KernelSpec) -> ResolvedKernel:
        image = spec.image
        assert image is not None
        if not image.exists():
            raise UserError(f"kernel '{spec.id}': image {image} does not exist")
        if not image.is_file():
            raise UserError(f"kernel '{spec.id}': image {image} is not a file")
        arch = image_arch(image)
        if arch is None:
            raise UserError(
                f"kernel '{spec.id}': {image} is not a Linux kernel image (no bzImage or arm64 Image header)",
                "point 'image' at arch/x86/boot/bzImage, arch/arm64/boot/Image(.gz) or a vmlinuz",
            )
        if arch != spec.arch:
            raise UserError(f"kernel '{spec.id}': {image} is an {arch} kernel image, not {spec.arch}",
                            f"use arch {arch} for it, or an {spec.arch} image")  # fmt: skip
        release = bzimage_release(image) if arch == "amd64" else local_arm64_release(image)
        if spec.modules and not spec.modules.is_dir():
            raise UserError(f"kernel '{spec.id}': modules directory {spec.modules} does not exist")
        release = release or ""
        version = release_version(release)
        parts = {"image": sha256_file(image), "modules": str(spec.modules or "")}
        key = sha256_json(parts if arch == DEFAULT_ARCH else {**parts, "arch": arch})
        return ResolvedKernel(spec, version, release, key)

    # -- fetching ---------------------------------------------------------------------------
    def cached(self, resolved: ResolvedKernel) -> Entry | None:
        return self.cache.lookup(KIND, resolved.key)

    def fetch(self, spec: KernelSpec) -> Kernel:
        """Resolve and fetch one kernel (download, verify, extract), using the cache. A series
        whose newest package the mirror does not serve (404: a partial mirror) falls back to the
        newest one it does, with a warning; a pinned version or package does not."""
        resolved = self.resolve(spec)
        if spec.source == "local":
            entry = self.cache.ensure(KIND, resolved.key, lambda d: self._build_local(resolved, d), hashed=["vmlinuz"])
            return self.kernel_from_entry(spec, entry)
        repo = self.repo_for(spec)
        lacking: list[str] = []
        for _ in range(MAX_MISSING):
            try:
                entry = self.cache.ensure(KIND, resolved.key, functools.partial(self._build_packages, repo, resolved),
                                          hashed=["vmlinuz"])  # fmt: skip
            except MirrorMissing as e:
                if spec.version or spec.package:
                    raise
                repo.mark_missing(e.package)
                lacking.append(e.package.partition("=")[2])
                resolved = self.resolve(spec)  # UserError when the mirror has none of the series
                continue
            if lacking:
                logging.getLogger("compat").warning(
                    "kernel %s: the mirror lacks packages its index lists (%s): using %s", spec.id,
                    ", ".join(lacking), resolved.packages[0].version if resolved.packages else resolved.version)
            return self.kernel_from_entry(spec, entry)
        raise InfraError(f"kernel '{spec.id}': the mirror lacks {MAX_MISSING} packages of it in a row",
                         "check the mirror (COMPAT_DEBIAN_MIRROR)")  # fmt: skip

    def changelog(self, kernel: Kernel) -> Path | None:
        """The kernel's Debian changelog: the one its entry kept, else (an entry cached before
        compat kept changelogs) read from its packages once into the cache ("changelogs" entries:
        a download, no unpacking of the rest). None for a local kernel or a package without one."""
        if kernel.changelog is not None or kernel.spec.source == "local" or not kernel.packages:
            return kernel.changelog
        packages = []
        for text in kernel.packages:
            name, _, version = text.partition("=")
            packages.append(PackageVersion(name, version, "", 0, ""))
        repo = self.repo_for(kernel.spec)

        def build(dest: Path) -> dict:
            debs, root = dest / "debs", dest / "root"
            root.mkdir()
            for pkg in packages:
                deb = repo.download(pkg, debs)
                # Only the documentation directory: dpkg-deb's tar stream, filtered by tar (a package
                # without one makes tar fail: not an error, it has no changelog).
                stream = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
                subprocess.run(["tar", "-x", "-C", str(root), "--wildcards", "./usr/share/doc/*"],
                               stdin=stream.stdout, capture_output=True)  # fmt: skip
                assert stream.stdout is not None
                stream.stdout.close()
                stream.wait()
                deb.unlink()
            found = find_changelog(root, tuple(packages))
            if found:
                shutil.move(found, dest / CHANGELOG)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(debs, ignore_errors=True)
            return {"packages": list(kernel.packages), "found": bool(found)}

        entry = self.cache.ensure(CHANGELOG_KIND, kernel.key, build)
        path = entry.path / CHANGELOG
        return path if path.is_file() else None

    def prefetch(self, specs: Sequence[KernelSpec], workers: int = FETCH_WORKERS) -> Prefetch:
        """Start fetching the kernels, ``workers`` at a time, in the order given; the caller takes
        each one when it needs it (Prefetch.get waits for that kernel only), so a guest boots as
        soon as its own kernel is there, while the others are still downloading."""
        return Prefetch(self, specs, workers)

    def fetch_all(self, specs: Sequence[KernelSpec], workers: int = FETCH_WORKERS) -> list[Kernel | CompatError]:
        """Fetch the kernels in parallel; per spec, in order, the Kernel or the error that kept it
        from being fetched (one failed download never loses the others)."""
        pending = self.prefetch(specs, workers)
        out: list[Kernel | CompatError] = []
        try:
            for spec in specs:
                try:
                    out.append(pending.get(spec))
                except CompatError as e:
                    out.append(e)
        finally:
            pending.cancel()
        return out

    def boot_image(self, kernel: Kernel) -> Path:
        """What QEMU boots: amd64, the uncompressed vmlinux when the kernel has a PVH entry, else
        the bzImage (see bootimage.py: this saves the guest's slow decompression on every boot);
        arm64, the uncompressed ``Image`` (qemu-system-aarch64 -kernel), decompressed once from
        Debian's gzip-compressed vmlinuz, else the vmlinuz as it is."""
        from .bootimage import build_arm64_image, build_boot_image  # pyelftools, zstandard: only when built

        if kernel.arch == "arm64":
            entry = self.cache.ensure(BOOT_KIND, kernel.key, lambda d: build_arm64_image(kernel.vmlinuz, d))
            return entry.file("Image") if entry.meta.get("image") else kernel.vmlinuz
        entry = self.cache.ensure(BOOT_KIND, kernel.key, lambda d: build_boot_image(kernel.vmlinuz, d))
        return entry.file("vmlinux") if entry.meta.get("pvh") else kernel.vmlinuz

    @staticmethod
    def kernel_from_entry(spec: KernelSpec, entry: Entry) -> Kernel:
        meta = entry.meta
        modules = entry.file("modules") if (entry.path / "modules").is_dir() else None
        if spec.source == "local" and spec.modules:
            modules = spec.modules
        return Kernel(
            spec=spec,
            version=meta["version"],
            release=meta["release"],
            key=entry.path.name,
            vmlinuz=entry.file("vmlinuz"),
            modules=modules,
            packages=tuple(meta.get("packages", [])),
            # Entries made before the changelog was kept have none: no suspects, not an error.
            changelog=entry.file(CHANGELOG) if (entry.path / CHANGELOG).is_file() else None,
            arch=meta.get("arch", DEFAULT_ARCH),  # entries from before arm64 are all amd64
        )

    def _build_local(self, resolved: ResolvedKernel, dest: Path) -> dict:
        assert resolved.spec.image is not None
        shutil.copyfile(resolved.spec.image, dest / "vmlinuz")
        return {
            "version": resolved.version,
            "release": resolved.release,
            "source": "local",
            "image": str(resolved.spec.image),
            "arch": resolved.spec.arch,
        }

    def _build_packages(self, repo: AptRepo, resolved: ResolvedKernel, dest: Path) -> dict:
        if not shutil.which("dpkg-deb"):
            raise UserError("dpkg-deb is not installed", "apt-get install dpkg")
        debs, root = dest / "debs", dest / "root"
        root.mkdir()
        size = sum(pkg.size for pkg in resolved.packages)
        with self.cache.progress.stage(f"fetching kernel {resolved.spec.id}", size or None, "bytes") as shown:
            for pkg in resolved.packages:
                with shown.watch(debs):
                    deb = repo.download(pkg, debs)
                proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise InfraError(f"cannot unpack {deb.name}: {proc.stderr.strip()[:200]}")
                deb.unlink()  # the extracted tree and its manifest are what we keep
            shown.done(f"fetched kernel {resolved.spec.id} ({resolved.version}, {size / 1e6:.0f} MB)")
        shutil.rmtree(debs, ignore_errors=True)
        vmlinuz = _find_first(root, ["boot/vmlinuz-*", "usr/lib/modules/*/vmlinuz", "lib/modules/*/vmlinuz"])
        if vmlinuz is None:
            raise InfraError(
                f"kernel '{resolved.spec.id}': no vmlinuz in {', '.join(p.name for p in resolved.packages)}"
            )
        found = image_arch(vmlinuz)
        if found != resolved.spec.arch:
            raise InfraError(f"kernel '{resolved.spec.id}': the package's vmlinuz is a {found or 'unknown'} image, "
                             f"not {resolved.spec.arch}")  # fmt: skip
        release = (bzimage_release(vmlinuz) if found == "amd64" else None) or resolved.release
        moddir = _find_first(
            root, [f"usr/lib/modules/{release}", f"lib/modules/{release}", "usr/lib/modules/*", "lib/modules/*"]
        )
        config = _find_first(root, ["boot/config-*", "usr/lib/modules/*/config", "lib/modules/*/config"])
        shutil.move(vmlinuz, dest / "vmlinuz")
        changelog = find_changelog(root, resolved.packages)
        if changelog:
            shutil.move(changelog, dest / CHANGELOG)
        if config:
            shutil.move(config, dest / "config")
        if moddir and moddir.is_dir():
            shutil.move(moddir, dest / "modules")
        shutil.rmtree(root)
        return {
            "version": resolved.version,
            "release": release,
            "source": resolved.spec.source,
            "suite": resolved.suite,
            "packages": [f"{p.name}={p.version}" for p in resolved.packages],
            "arch": resolved.spec.arch,
        }


class Prefetch:
    """Kernels being fetched in a small thread pool (KernelStore.prefetch)."""

    def __init__(self, store: KernelStore, specs: Sequence[KernelSpec], workers: int):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fetch")
        self._futures: dict[str, Future[Kernel]] = {}
        for spec in specs:
            if spec.id not in self._futures:
                self._futures[spec.id] = self._pool.submit(store.fetch, spec)
        self._store = store

    def get(self, spec: KernelSpec) -> Kernel:
        """The fetched kernel (waits for its fetch only); raises what the fetch raised. A spec
        that was not prefetched is fetched now, in the caller's thread."""
        future = self._futures.get(spec.id)
        if future is None or future.cancelled():
            return self._store.fetch(spec)
        return future.result()

    def cancel(self) -> None:
        """Drop the fetches not yet started (running ones stop through the store's stop())."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def find_changelog(root: Path, packages: tuple[PackageVersion, ...]) -> Path | None:
    """The Debian changelog among extracted kernel packages: usr/share/doc/<package>/changelog.gz
    (changelog.Debian.gz in some packages). A split kernel (sid: linux-image, -binary, -base,
    -modules) may carry it in any of them, or link one package's doc directory to another's:
    the image package's own file first, then the largest real file (the full kernel changelog)."""
    doc = root / "usr/share/doc"
    found = [p for name in ("changelog.gz", "changelog.Debian.gz") for p in doc.glob(f"*/{name}")
             if p.is_file() and not p.is_symlink()]  # fmt: skip
    if not found:
        return None
    image = packages[0].name if packages else ""
    return max(found, key=lambda p: (p.parent.name == image, p.stat().st_size))


def _find_first(root: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[0]
    return None


def bzimage_release(path: Path) -> str | None:
    """The release string (uname -r) from an x86 bzImage's setup header, or None if not a kernel."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x4000)
            if len(head) < 0x210 or head[0x1FE:0x200] != b"\x55\xaa" or head[0x202:0x206] != b"HdrS":
                return None
            (offset,) = struct.unpack_from("<H", head, 0x20E)
            if not offset:
                return ""
            f.seek(offset + 0x200)
            text = f.read(256).split(b"\0", 1)[0].decode("ascii", "replace")
    except OSError:
        return None
    return text.split(" ", 1)[0]


def local_arm64_release(path: Path) -> str | None:
    """The release (uname -r) of a local arm64 Image or Image.gz, from its version banner."""
    data = path.read_bytes()
    return arm64_release(gunzip_image(data) or data)


def available(
    store: KernelStore, series: str, flavour: str = "", source_spec: KernelSpec | None = None, arch: str = DEFAULT_ARCH
) -> list[PackageVersion]:
    """Point releases of a series in the archive, newest first, one package per upstream version
    (of ``arch``; ``flavour`` empty: the arch's generic flavour)."""
    spec = source_spec or KernelSpec(id=f"debian:{series}", label=series, series=series, flavour=flavour, arch=arch)
    seen: set[str] = set()
    out = []
    for pv in store.candidates(spec):
        up = upstream_version(pv.version)
        if up not in seen:
            seen.add(up)
            out.append(pv)
    return out
