"""The guest image: a hermetic, uncompressed initramfs with python, libbpf and the agent.

Built from Debian packages of one suite, fetched through the private apt root. The stdlib is
trimmed to the modules the agent really imports (traced by running the guest's own python
on the host through the guest's dynamic loader) and precompiled to sourceless .pyc. Booted
uncompressed: decompression under software emulation costs more than it saves.

One image per architecture (``ImageBuilder(cache, arch="arm64")``). An arm64 image is built from
the same suite's arm64 packages without running any arm64 code on the host: the imports are
traced and the .pyc compiled by the same suite's amd64 python (a .pyc depends on the python
version, not on the machine), and the files the trace names are taken from the arm64 packages
(extension modules by their arm64 names: *-x86_64-linux-gnu.so -> *-aarch64-linux-gnu.so).

Per kernel, a second small archive carries the kernel modules the guest needs (virtio for
the channel); the kernel accepts the two concatenated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from debian.debian_support import Version

from compat.arch import ARCHES, DEFAULT_ARCH, host
from compat.cache import Cache, sha256_file, sha256_json
from compat.errors import InfraError, UserError
from compat.kernels.apt import AptRepo, PackageVersion, debian_sources
from compat.kernels.kmod import resolve_modules
from compat.kernels.sources import Kernel
from compat.paths import agent_source_dir, data_file

from .cpio import CpioWriter

IMAGE_KIND = "images"
MODULES_KIND = "modules"
INITRD_KIND = "initrd"
BUILDER_VERSION = 3  # bump when the image layout changes (3: reproducible .pyc)
# The architecture whose python traces and compiles every image: this host's (.pyc files are the
# same on every architecture; the host runs no other architecture's code).
HOST_ARCH = (host() or ARCHES[DEFAULT_ARCH]).name


@dataclass(frozen=True)
class ArchLayout:
    """Where an architecture's libraries and dynamic loader live (Debian's multiarch layout)."""

    arch: str  # Debian's name (compat/arch.py)
    loader: str  # the loader's name in the lib dir: ld-linux-x86-64.so.2
    loader_link: tuple[str, str]  # (path in the image, symlink target): the PT_INTERP path every binary names

    @property
    def triplet(self) -> str:
        """The multiarch triplet of its library directories: x86_64-linux-gnu."""
        return ARCHES[self.arch].triplet

    @property
    def libdir(self) -> str:
        return f"usr/lib/{self.triplet}"


LAYOUTS = {
    "amd64": ArchLayout("amd64", "ld-linux-x86-64.so.2",
                        ("usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")),
    "arm64": ArchLayout("arm64", "ld-linux-aarch64.so.1",
                        ("usr/lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu/ld-linux-aarch64.so.1")),
}  # fmt: skip
LIBDIR = LAYOUTS[HOST_ARCH].libdir
DIST_PACKAGES = "usr/lib/python3/dist-packages"
# Parts of libc6 the guest never uses.
_SKIP_LIBS = re.compile(
    r"^(gconv|libmemusage|libpcprofile|libc_malloc_debug|libBrokenLocale|libnss_|libthread_db|libanl)"
)


@dataclass(frozen=True)
class Image:
    """A built guest image in the cache."""

    key: str
    path: Path  # the initramfs (uncompressed cpio)
    suite: str
    python: str
    libbpf: str  # Debian version of libbpf1
    packages: tuple[str, ...]
    size: int
    arch: str = "amd64"  # the architecture of its binaries (Debian's name)


@dataclass(frozen=True)
class Recipe:
    suite: str
    packages: tuple[str, ...]
    applets: tuple[str, ...]


def load_recipe() -> Recipe:
    doc = yaml.safe_load(data_file("guest.yaml").read_text())
    suite = os.environ.get("COMPAT_IMAGE_SUITE") or doc["suite"]
    extra = tuple((doc.get("suite_packages") or {}).get(suite) or ())
    return Recipe(suite=suite, packages=tuple(doc["packages"]) + extra, applets=tuple(doc["applets"]))


def agent_files() -> dict[str, bytes]:
    """The agent's sources and init script, by POSIX path relative to the package directory.

    Sub-packages are taken recursively: a file left out here would be missing in the guest
    without any error until the agent imports it, and every file is part of the image key."""
    src = agent_source_dir()
    return {
        p.relative_to(src).as_posix(): p.read_bytes()
        for p in sorted(src.rglob("*"))
        if p.suffix in (".py", ".sh") and p.is_file() and "__pycache__" not in p.relative_to(src).parts
    }


# In a test build of the image only: the agent then injects faults on request (agent.py).
TEST_FAULTS_MARKER = "etc/compat-test-faults"


class ImageBuilder:
    """Builds (once per input set) and finds the guest image and per-kernel initrds.

    ``test_faults=True`` builds the fault-injection variant for compat's own tests: the same
    image plus a marker file that arms the agent's fault hook. The marker is part of the cache
    key, so the product image (and its snapshots, keyed by the initrd) is never affected."""

    def __init__(self, cache: Cache, test_faults: bool = False, stop: Callable[[], str | None] | None = None,
                 arch: str = DEFAULT_ARCH):  # fmt: skip
        if arch not in LAYOUTS:
            raise UserError(f"unknown arch {arch!r} for the guest image", f"use one of {', '.join(LAYOUTS)}")
        self.cache = cache
        self.recipe = load_recipe()
        self.test_faults = test_faults
        self.stop = stop  # see AptRepo
        self.arch = arch
        self.layout = LAYOUTS[arch]
        self._repos: dict[str, AptRepo] = {}

    def repo_of(self, arch: str) -> AptRepo:
        """The private apt root of an architecture's packages."""
        if arch not in self._repos:
            self._repos[arch] = AptRepo(self.cache, debian_sources(), stop=self.stop, arch=arch)
        return self._repos[arch]

    @property
    def repo(self) -> AptRepo:
        """The apt root of the image's own architecture."""
        return self.repo_of(self.arch)

    def _pick(self, name: str, arch: str | None = None) -> PackageVersion:
        """The newest version of a package in the image suite (or its security updates)."""
        suites = {self.recipe.suite, f"{self.recipe.suite}-security"}
        found = [p for p in self.repo_of(arch or self.arch).versions([name]) if p.suite in suites]
        if not found:
            raise UserError(
                f"guest image: package {name} is not in suite {self.recipe.suite}", "check COMPAT_IMAGE_SUITE"
            )
        return max(found, key=lambda p: Version(p.version))

    def packages(self, arch: str | None = None) -> list[PackageVersion]:
        """The exact package versions the image is made of (of ``arch``: the image's by default)."""
        dep = self._pick("python3-minimal", arch).depends
        m = re.search(r"python(3\.\d+)-minimal", dep)
        if not m:
            raise InfraError(f"cannot tell the python version of suite {self.recipe.suite}")
        return [self._pick(name.format(python=m.group(1)), arch) for name in self.recipe.packages]

    def host_packages(self) -> list[PackageVersion]:
        """The packages whose python traces and compiles the image: the image's own for an amd64
        image, the same suite's amd64 ones for an image of another architecture."""
        return [] if self.arch == HOST_ARCH else self.packages(HOST_ARCH)

    def inputs(self) -> tuple[str, list[PackageVersion]]:
        """The image's cache key (packages, recipe, agent, builder; the arch and the python
        that compiled it for an image of another architecture) and its packages."""
        pkgs = self.packages()
        agent = {name: sha256_json(data.decode(errors="replace")) for name, data in agent_files().items()}
        foreign = {}
        if self.arch != DEFAULT_ARCH:  # amd64's key stays what it was: its cached image remains valid
            foreign = {"arch": self.arch, "host_packages": sorted(p.sha256 for p in self.host_packages())}
        key = sha256_json(
            {
                "builder": BUILDER_VERSION,
                "recipe": [self.recipe.suite, self.recipe.packages, self.recipe.applets],
                "packages": sorted(p.sha256 for p in pkgs),
                "agent": agent,
                **({"test_faults": True} if self.test_faults else {}),
                **foreign,
            }
        )
        return key, pkgs

    def build(self) -> Image:
        """The guest image, built now if its inputs changed since the last build."""
        key, pkgs = self.inputs()
        what = "the guest image" if self.arch == DEFAULT_ARCH else f"the {self.arch} guest image"

        def build(dest: Path) -> dict:
            with self.cache.progress.stage(f"building {what}") as shown:
                meta = self._build(pkgs, dest)
                shown.done(f"built {what.removeprefix('the ')} ({meta['size'] / 1e6:.0f} MB)")
            return meta

        entry = self.cache.ensure(IMAGE_KIND, key, build, hashed=["initramfs.cpio"])
        return _image(key, entry)

    def cached(self) -> Image | None:
        """The newest image of the builder's arch already in the cache, without asking the archive anything."""
        best = None
        for path in self.cache.entries(IMAGE_KIND):
            entry = self.cache.lookup(IMAGE_KIND, path.name, record_use=False)  # looking is no use
            if entry and entry.meta.get("test_faults"):
                continue  # compat's own fault-injection image is never "the" image
            if entry and entry.meta.get("arch", DEFAULT_ARCH) != self.arch:
                continue
            if entry and (
                best is None
                or (entry.path / "manifest.json").stat().st_mtime > (best.path / "manifest.json").stat().st_mtime
            ):
                best = entry
        if best is None:
            return None
        return _image(best.path.name, best)

    # -- the build itself -------------------------------------------------------------------
    def _unpack(self, pkgs: list[PackageVersion], stage: Path, debs: Path, arch: str) -> None:
        stage.mkdir()
        for pkg in pkgs:
            deb = self.repo_of(arch).download(pkg, debs)
            proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(stage)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise InfraError(f"cannot unpack {deb.name}: {proc.stderr.strip()[:200]}")
        shutil.rmtree(debs)

    def _build(self, pkgs: list[PackageVersion], dest: Path) -> dict:
        if not shutil.which("dpkg-deb"):
            raise UserError("dpkg-deb is not installed", "apt-get install dpkg")
        stage = dest / "stage"
        self._unpack(pkgs, stage, dest / "debs", self.arch)
        pybin = next(iter(sorted((stage / "usr/bin").glob("python3.*"))), None)
        if pybin is None:
            raise InfraError("guest image: the python package has no interpreter")
        pyver = pybin.name.removeprefix("python")
        libbpf = next(p.version for p in pkgs if p.name.startswith("libbpf"))
        pylib = f"usr/lib/python{pyver}"
        # The python that runs on this host to trace the imports and compile: the image's own
        # (amd64), or the same suite's amd64 one for an image of another architecture.
        host_stage, host_pybin = stage, pybin
        if self.arch != HOST_ARCH:
            host_stage = dest / "host-stage"
            self._unpack(self.host_packages(), host_stage, dest / "host-debs", HOST_ARCH)
            host_pybin = host_stage / "usr/bin" / pybin.name
            if not host_pybin.is_file():
                raise InfraError(f"guest image: the suite's {HOST_ARCH} python is not python{pyver} as on {self.arch}")

        # The agent goes into the stdlib directory so `python3 -S -m compat_agent` finds it.
        for where in {stage, host_stage}:
            agent_dir = where / pylib / "compat_agent"
            agent_dir.mkdir()
            for name, data in agent_files().items():
                (agent_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (agent_dir / name).write_bytes(data)
        info = {"suite": self.recipe.suite, "python": pyver, "libbpf": libbpf}
        if self.arch != HOST_ARCH:
            info["arch"] = self.arch

        root = dest / "root"
        self._assemble(stage, root, pybin, pylib, info, host_stage, host_pybin)
        out = dest / "initramfs.cpio"
        with open(out, "wb") as f:
            w = CpioWriter(f)
            w.tree(root)
            w.close()
        shutil.rmtree(stage)
        shutil.rmtree(host_stage, ignore_errors=True)
        shutil.rmtree(root)
        return {
            **info,
            "arch": self.arch,
            "packages": [f"{p.name}={p.version}" for p in pkgs],
            **({"compiled_by": [f"{p.name}={p.version}" for p in self.host_packages()]} if host_stage != stage else {}),
            "size": out.stat().st_size,
            **({"test_faults": True} if self.test_faults else {}),
        }

    def _run_staged_python(self, stage: Path, pybin: Path, args: list[str]) -> str:
        """Run a staged python of this host's architecture on the host, through the stage's own
        loader and libraries."""
        loader = stage / LIBDIR / LAYOUTS[HOST_ARCH].loader
        env = {
            "PYTHONHOME": str(stage / "usr"),
            "PYTHONPATH": str(stage / DIST_PACKAGES),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LC_ALL": "C",
        }
        cmd = [str(loader), "--library-path", str(stage / LIBDIR), str(pybin), "-S", "-X", "utf8", *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InfraError(f"guest python failed on the host: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        return proc.stdout

    def _traced(self, stage: Path, host_stage: Path, host_pybin: Path) -> list[str]:
        """The files the agent imports, as paths in ``stage``: traced by the host's python in
        ``host_stage`` (the same stage for an amd64 image). For another architecture, a file of
        the trace is the same file of that architecture's packages: pure python is the same,
        an extension module is named for its architecture (_ctypes.cpython-313-x86_64-linux-gnu.so
        is _ctypes.cpython-313-aarch64-linux-gnu.so); one that is missing there is an error."""
        traced = json.loads(self._run_staged_python(host_stage, host_pybin, ["-m", "compat_agent", "--trace-imports"]))
        if host_stage == stage:
            return traced
        host_triplet = LAYOUTS[HOST_ARCH].triplet
        out = []
        for f in traced:
            path = Path(f)
            if not path.is_relative_to(host_stage):
                continue
            rel = path.relative_to(host_stage)
            mapped = stage / rel.parent / rel.name.replace(host_triplet, self.layout.triplet)
            if not mapped.exists():
                raise InfraError(f"guest image: the {self.arch} packages have no {mapped.relative_to(stage)} "
                                 f"(the agent imports {rel})")  # fmt: skip
            out.append(str(mapped))
        return out

    def _assemble(self, stage: Path, root: Path, pybin: Path, pylib: str, info: dict,
                  host_stage: Path | None = None, host_pybin: Path | None = None) -> None:  # fmt: skip
        host_stage, host_pybin = host_stage or stage, host_pybin or pybin
        traced = self._traced(stage, host_stage, host_pybin)
        # The stdlib, and Debian's python3-* packages (pyroute2) in dist-packages.
        for libdir in (pylib, DIST_PACKAGES):
            src = stage / libdir
            keep = {Path(f).relative_to(src) for f in traced if Path(f).is_relative_to(src)}
            if libdir == pylib:
                # The codecs python may pick at start-up depend on the environment: keep them all.
                keep |= {p.relative_to(src) for p in (src / "encodings").glob("*.py")}
            else:
                # Packages read their own metadata (importlib.metadata): keep the dist-info.
                tops = {rel.parts[0] for rel in keep}
                keep |= {
                    p.relative_to(src)
                    for d in src.glob("*.dist-info")
                    if d.name.split("-")[0].lower() in tops
                    for p in d.rglob("*")
                    if p.is_file()
                }
            for rel in sorted(keep):
                target = root / libdir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, target)
                # Packages need their __init__ even if only a submodule was traced.
                for parent in rel.parents:
                    init = src / parent / "__init__.py"
                    if parent != Path(".") and init.exists() and not (root / libdir / parent / "__init__.py").exists():
                        shutil.copy2(init, root / libdir / parent / "__init__.py")
            if (root / libdir).is_dir():
                # Compile with the host's python of the image's version (the guest's own for amd64)
                # into legacy (sourceless) .pyc beside each source: a .pyc is the same on every
                # architecture. Equal inputs must give equal bytes: each file is named by its path
                # in the guest (-s/-p), not the build directory's, and the header holds a hash,
                # not the source's mtime (the agent's files are written at build time).
                compile_args = ["-b", "-q", "-s", str(root), "-p", "/", "--invalidation-mode", "unchecked-hash"]
                self._run_staged_python(host_stage, host_pybin, ["-m", "compileall", *compile_args, str(root / libdir)])
                for py in (root / libdir).rglob("*.py"):
                    py.unlink()

        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(pybin, root / "usr/bin/python3")
        busybox = stage / "usr/bin/busybox"
        if not busybox.exists():
            busybox = stage / "bin/busybox"
        shutil.copy2(busybox, root / "usr/bin/busybox")
        for applet in self.recipe.applets:
            os.symlink("busybox", root / "usr/bin" / applet)
        libdir = root / self.layout.libdir
        libdir.mkdir(parents=True)
        for lib in sorted((stage / self.layout.libdir).iterdir()):
            if lib.is_dir() or _SKIP_LIBS.match(lib.name):
                continue
            if lib.is_symlink():
                os.symlink(os.readlink(lib), libdir / lib.name)
            else:
                shutil.copy2(lib, libdir / lib.name)
        # The loader at the path every binary names (PT_INTERP): /lib64/ld-linux-x86-64.so.2,
        # /lib/ld-linux-aarch64.so.1.
        loader_path, loader_target = self.layout.loader_link
        (root / loader_path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(loader_target, root / loader_path)
        (root / "usr/lib64").mkdir(exist_ok=True)
        # Merged /usr, made by hand (base-files is not in the image).
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            os.symlink(target, root / link)
        for d in ("proc", "sys", "dev", "tmp", "run", "root", "compat-modules", "etc", "boot"):
            (root / d).mkdir(exist_ok=True)
        (root / "etc/compat-image.json").write_text(json.dumps(info))
        if self.test_faults:
            (root / TEST_FAULTS_MARKER).write_text("compat test build: the agent injects faults on request\n")
        shutil.copy2(agent_source_dir() / "init.sh", root / "init")
        os.chmod(root / "init", 0o755)

    # -- per-kernel parts -------------------------------------------------------------------
    def modules_archive(self, kernel: Kernel) -> Path:
        """A cpio with this kernel's parts of the guest: the modules /init loads, the modules the
        agent loads on demand, and the kernel config (libbpf reads /boot/config-$(uname -r) to
        resolve __kconfig externs)."""
        recipe = yaml.safe_load(data_file("modules.yaml").read_text())
        boot, on_demand = list(recipe["boot"]), list(recipe.get("on_demand") or [])
        config = kernel.vmlinuz.parent / "config"
        key = sha256_json(
            {"kernel": kernel.key, "modules": str(kernel.modules or ""), "recipe": recipe, "v": BUILDER_VERSION}
        )

        def build(dest: Path) -> dict:
            first = resolve_modules(kernel.modules, boot)
            loaded = {name for name, _ in first}
            later = [m for m in resolve_modules(kernel.modules, on_demand, optional=True) if m[0] not in loaded]
            with open(dest / "modules.cpio", "wb") as f:
                w = CpioWriter(f)
                for name, elf in first + later:
                    w.file(f"compat-modules/{name}.ko", elf)
                w.file("compat-modules/order", "".join(f"{n}\n" for n, _ in first).encode())
                w.file("compat-modules/on-demand", "".join(f"{n}\n" for n, _ in later).encode())
                if config.is_file():
                    w.file(f"boot/config-{kernel.release}", config.read_bytes())
                w.close()
            return {"modules": sorted(loaded), "on_demand": [n for n, _ in later]}

        return self.cache.ensure(MODULES_KIND, key, build).file("modules.cpio")

    def initrd(self, image: Image, kernel: Kernel) -> Path:
        """The image and this kernel's modules, concatenated into one initrd for QEMU."""
        if image.arch != kernel.arch:
            raise InfraError(f"kernel '{kernel.id}' is {kernel.arch}, the guest image {image.arch}",
                             f"build the image with ImageBuilder(cache, arch={kernel.arch!r})")  # fmt: skip
        modules = self.modules_archive(kernel)
        key = sha256_json({"image": image.key, "modules": sha256_file(modules)})

        def build(dest: Path) -> dict:
            with open(dest / "initrd.cpio", "wb") as out:
                for part in (image.path, modules):
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out)
            return {"image": image.key, "kernel": kernel.key}

        return self.cache.ensure(INITRD_KIND, key, build).file("initrd.cpio")


def _image(key: str, entry) -> Image:
    m = entry.meta
    return Image(key, entry.file("initramfs.cpio"), m["suite"], m["python"], m["libbpf"], tuple(m["packages"]),
                 m["size"], m.get("arch", DEFAULT_ARCH))  # fmt: skip


def describe(image: Image) -> dict:
    """Image facts for listings and results."""
    return {
        "key": image.key[:16],
        "arch": image.arch,
        "suite": image.suite,
        "python": image.python,
        "libbpf": image.libbpf,
        "size_mb": round(image.size / 1e6, 1),
        "path": str(image.path),
    }
