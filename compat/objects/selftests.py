"""The Linux kernel's BPF selftests, built from Debian's linux-source-<series> package: the objects
`compat selftests` checks over a stable series, each carrying its own expectations as BTF decl
tags (compat/objects/expectations.py).

The kernel's own selftests (tools/testing/selftests/bpf/progs/*.c) are built the way the
selftests Makefile does, without the kernel's build system:

- the source comes from Debian's ``linux-source-<series>`` package, fetched through compat's own
  private apt root (apt verifies it against the signed index; the host's apt configuration is
  never touched). Only the directories the programs need are extracted: the selftests, libbpf's
  headers, tools/include, the uapi headers and scripts/bpf_doc.py (which generates
  bpf_helper_defs.h);
- vmlinux.h is dumped by bpftool from the BTF of the series' kernel (the uncompressed vmlinux
  compat keeps in its cache to boot that kernel); for arm64 (``arch="arm64"``), the BTF of the
  series' arm64 kernel, read out of its Image (a flat binary without sections: the BTF blob is
  found by its header), built into a folder of its own (selftests-arm64, selftests-SERIES-arm64)
  with ``-D__TARGET_ARCH_arm64`` and arm64's uapi headers;
- every progs/*.c is compiled with the Makefile's flags (``-g -O2 --target=bpf -mcpu=v3
  -D__TARGET_ARCH_x86 (arm64) -DENABLE_ATOMICS_TESTS``, per-file ``-CFLAGS``, clang's system includes
  with ``-idirafter``; the newest clang-N installed), in parallel, each under a timeout. A file
  that does not compile is recorded with one line of why and skipped. The objects the Makefile
  links from several (LINKED_SKELS) are linked with ``bpftool gen object`` as <name>.linked.bpf.o.

Nothing is ever loaded into the host kernel: this only compiles. Results, failures included,
are kept in the cache with a manifest (schema MANIFEST_SCHEMA): a second call for the same
selection asks apt nothing and compiles nothing. bench/selftests.py is this module's command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from debian.debfile import DebFile
from debian.debian_support import Version

from compat.arch import ARCHES, DEFAULT_ARCH
from compat.cache import Cache, sha256_file, sha256_json, write_atomic
from compat.errors import CompatError, UserError
from compat.kernels.apt import AptRepo, PackageVersion, debian_sources
from compat.kernels.matrix import load_matrix
from compat.kernels.sources import KernelStore
from compat.paths import cache_root

DEFAULT_SERIES = "6.12"
# trixie's point releases and security updates are trixie too; sid is the fallback for a
# package trixie lacks; bookworm's for the older series.
SUITES = (("trixie", "trixie-security", "trixie-updates"), ("sid", "unstable"),
          ("bookworm", "bookworm-security", "bookworm-updates", "bookworm-backports"))  # fmt: skip


def package_of(series: str) -> str:
    """linux-source-6.12: the Debian package of a series' source."""
    return f"linux-source-{series}"


def tarball_of(series: str) -> str:
    return f"usr/src/linux-source-{series}.tar.xz"


SELFTESTS = "tools/testing/selftests/bpf"
# What the programs include, relative to the top of the source tree. Everything else of the
# 150 MB tarball (drivers, fs, ...) is skipped while streaming it.
EXTRACT = (
    SELFTESTS + "/",
    "tools/lib/bpf/",
    "tools/include/",
    "include/uapi/",
    "arch/x86/include/uapi/",
    "arch/arm64/include/uapi/",  # --arch arm64's (a tree extracted before has no need of it)
    "scripts/bpf_doc.py",
)
MANIFEST = "selftests.json"
MANIFEST_SCHEMA = "compat-selftests/v1"
# Bumped when the way objects are built changes, so that cached objects are rebuilt.
RECIPE = 1
DEFAULT_TIMEOUT = 300.0  # s per file: pyperf600 and the verifier scale tests take minutes
MAX_ERROR = 300  # characters of a compile error kept in the manifest


@dataclass
class Build:
    """The outcome of compiling one progs/*.c file."""

    source: str  # the file name under progs/
    status: str  # "ok", "failed" or "timeout"
    object: str | None  # relative to dest, when built
    size: int
    sha256: str | None
    seconds: float
    error: str  # one line: why it did not build ("" when it did)


def default_dest(series: str = DEFAULT_SERIES, arch: str = DEFAULT_ARCH) -> Path:
    """compat's cache directory (COMPAT_CACHE, XDG_CACHE_HOME, ~/.cache), subfolder selftests/,
    one folder per series (6.12 keeps the folder it always had) and architecture (arm64's carry
    -arm64: selftests-arm64, selftests-6.1-arm64)."""
    name = "selftests" if series == DEFAULT_SERIES else f"selftests-{series}"
    return cache_root() / (name if arch == DEFAULT_ARCH else f"{name}-{arch}")


def require_tools() -> str:
    """The clang to build with; a UserError (exit 2) naming the package when clang or bpftool is missing."""
    if shutil.which("bpftool") is None:
        raise UserError("bpftool is not installed: the selftests' vmlinux.h is dumped with it",
                        "apt-get install bpftool")  # fmt: skip
    return newest_clang()


def selftests(dest: Path | None = None, limit: int | None = None, **options: Any) -> list[Path]:
    """The paths of the built selftests objects of the selection (all, or a sample of limit);
    options are build()'s (jobs, timeout, clang, refresh, warn).

    With a manifest that already covers the selection (built or failed), apt is not asked and
    nothing is compiled; refresh=True asks apt for the newest source package again.
    """
    dest = Path(dest) if dest else default_dest()
    builds = build(dest, limit, **options)
    return [dest / b.object for b in builds if b.status == "ok" and b.object]


def build(
    dest: Path,
    limit: int | None = None,
    *,
    jobs: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    clang: str | None = None,
    refresh: bool = False,
    warn: Callable[[str], object] = print,
    series: str = DEFAULT_SERIES,
    source: str | None = None,
    names: list[str] | None = None,
    cache: Cache | None = None,
    arch: str = DEFAULT_ARCH,
) -> list[Build]:
    """The Build of every source of the selection (names: these progs/*.c files; else all, or a
    sample of limit), compiling only what the manifest lacks. ``source`` is the Debian version of
    linux-source-<series> to build (default: the newest the archive offers); ``arch`` the
    architecture whose kernel BTF and target the objects are built for (dest: its own folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(dest)
    same_source = source is None or (
        manifest is not None and manifest.get("package") == f"{package_of(series)}={source}"
    )
    if not refresh and manifest is not None and not clang and "linked" in manifest and same_source:
        wanted = _selection(manifest["sources"], limit, names)
        listed = [*wanted, *_linked_of(manifest["linked"], wanted)]
        known: dict[str, Build] = manifest["builds"]
        if all(name in known and _intact(dest, known[name]) for name in listed):
            return [known[name] for name in listed]

    compiler = clang or require_tools()
    cache = cache or Cache()
    repo = AptRepo(cache, debian_sources())
    package = package_of(series)
    offered = repo.versions([package])
    if source is not None:
        pkg = next((p for p in offered if p.version == source or p.version.split("-")[0] == source), None)
        if pkg is None:
            have = ", ".join(sorted({p.version for p in offered}, key=Version)) or "none"
            raise UserError(f"--source {source}: the archive has no {package}={source}", f"it offers: {have}")
    else:
        pkg = newest_by_suite(offered).get(package)
        if pkg is None:
            raise UserError(f"the archive has no {package} (the source of series {series})",
                            "see 'compat kernels available SERIES' for the series it has")  # fmt: skip
    src = _source_tree(repo, pkg, dest, warn, series)
    vmlinux = _vmlinux(cache, series) if arch == DEFAULT_ARCH else _kernel_btf(cache, series, arch, dest)
    keyed = {
        "recipe": RECIPE,
        "package": [pkg.name, pkg.version, pkg.sha256],
        "vmlinux": cache.file_sha256(vmlinux),
        "clang": _clang_version(compiler),
    }
    if arch != DEFAULT_ARCH:  # amd64's key stays what it was (its built objects stay valid)
        keyed["arch"] = arch
    key = sha256_json(keyed)[:16]
    if manifest is None or manifest["key"] != key:
        if manifest is not None:
            shutil.rmtree(dest / "obj", ignore_errors=True)  # objects of another source or compiler
        sources = sorted(p.name for p in (src / SELFTESTS / "progs").glob("*.c"))
        manifest = {"schema": MANIFEST_SCHEMA, "key": key, "package": f"{pkg.name}={pkg.version}",
                    "clang": _clang_version(compiler), "sources": sources, "builds": {}}  # fmt: skip
    manifest["linked"] = _linked_groups(src)
    include = _include_dir(src, dest / "include" / key, vmlinux, arch)
    wanted = _selection(manifest["sources"], limit, names)
    builds: dict[str, Build] = manifest["builds"]
    todo = [name for name in wanted if name not in builds or not _intact(dest, builds[name])]
    if todo:
        recipe = _recipe(src, include, compiler, arch)
        out_dir = dest / "obj"
        out_dir.mkdir(exist_ok=True)
        started = time.monotonic()
        done = 0

        def one(name: str) -> Build:
            return _compile(recipe, src / SELFTESTS / "progs" / name, out_dir, dest, timeout)

        workers = jobs or min(2, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(one, todo):
                builds[result.source] = result
                done += 1
                if done % 50 == 0 or done == len(todo):
                    warn(f"selftests: compiled {done}/{len(todo)} in {time.monotonic() - started:.0f} s")
                    _write_manifest(dest, manifest)  # an interrupted run keeps what it built
    # The objects the Makefile links from several (LINKED_SKELS): test_usdt_multispec.bpf.o alone
    # has an unresolved extern, only test_usdt.linked.bpf.o is what test_progs loads.
    groups = _linked_of(manifest["linked"], wanted)
    missing = [name for name in groups if name not in builds or not _intact(dest, builds[name])]
    for name in missing:
        builds[name] = _link(name, [builds[dep] for dep in groups[name]], dest, timeout)
    if missing:
        _write_manifest(dest, manifest)
    return [builds[name] for name in [*wanted, *groups]]


def _selection(sources: list[str], limit: int | None, names: list[str] | None) -> list[str]:
    if names is None:
        return sample(sources, limit)
    unknown = [n for n in names if n not in sources]
    if unknown:
        raise UserError(f"no selftest source {unknown[0]!r} in progs/", "name a progs/*.c file of the source")
    return list(names)


def newest_by_suite(
    versions: list[PackageVersion], suites: tuple[tuple[str, ...], ...] = SUITES
) -> dict[str, PackageVersion]:
    """The newest version of each package in the first group of suites that has it (a group is a
    suite with its -security, -updates, … companions)."""
    chosen: dict[str, PackageVersion] = {}
    for group in suites:
        for pkg in versions:
            if pkg.suite not in group or (pkg.name in chosen and chosen[pkg.name].suite not in group):
                continue
            best = chosen.get(pkg.name)
            if best is None or Version(pkg.version) > Version(best.version):
                chosen[pkg.name] = pkg
    return chosen


def sample(sources: list[str], limit: int | None) -> list[str]:
    """A deterministic sample: every k-th of the sorted names, so it spans the alphabet (and so
    the kinds of programs: the selftests group their files by name prefix)."""
    names = sorted(sources)
    if not limit or limit >= len(names):
        return names
    step = len(names) // limit
    return names[::step][:limit]


# -- the source --------------------------------------------------------------------------------


def _source_tree(repo: AptRepo, pkg: PackageVersion, dest: Path, warn: Callable[[str], object],
                 series: str = DEFAULT_SERIES) -> Path:  # fmt: skip
    """The extracted parts of the kernel source of one package version (extracted once)."""
    tree = dest / "src" / pkg.version
    if (tree / ".complete").is_file():
        return tree
    warn(f"selftests: downloading {pkg.name}={pkg.version} ({pkg.size >> 20} MiB) and extracting the BPF parts")
    with tempfile.TemporaryDirectory(prefix="compat-selftests-") as tmp:
        deb = repo.download(pkg, Path(tmp))
        return _build_once(tree, lambda staging: _extract(deb, staging, tarball_of(series)))


def _build_once(final: Path, fill: Callable[[Path], object]) -> Path:
    """final, filled by fill(staging) in a staging directory that takes final's name only once
    complete (an interrupted build is redone); the other versions beside it are removed."""
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        fill(staging)
        (staging / ".complete").touch()
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in final.parent.iterdir():
        if old != final and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)  # an older version
    return final


def _extract(deb: Path, out: Path, tarball: str) -> None:
    """Stream the tarball inside the package and extract only the EXTRACT paths into out.

    The tarball's top directory (linux-source-6.12/) is dropped. tarfile's "data" filter
    refuses absolute paths, links out of the tree and device files, so a hostile archive
    cannot write outside out.
    """
    with DebFile(str(deb)) as debfile:
        outer: tarfile.TarFile = debfile.data.tgz()
        for info in outer:
            if info.name.lstrip("./") != tarball:
                continue
            f = outer.extractfile(info)
            if f is None:
                break
            with tarfile.open(fileobj=f, mode="r|xz") as inner:
                for member in inner:
                    rel = member.name.split("/", 1)[1] if "/" in member.name else ""
                    if not rel.startswith(EXTRACT):
                        continue
                    member.name = rel
                    inner.extract(member, out, filter="data")
            return
    raise CompatError(f"selftests: {deb.name} has no {tarball}")


def _vmlinux(cache: Cache, series: str = DEFAULT_SERIES) -> Path:
    """The uncompressed vmlinux of the matrix's 6.12 kernel, which carries its BTF.

    compat keeps it in its cache to boot the kernel (compat/kernels/bootimage.py); fetching it here
    is what `compat kernels fetch` would do, so the check that follows finds it warm.
    """
    store = KernelStore(cache)
    kernel = store.fetch(load_matrix().select([f"debian:{series}"])[0])
    image = store.boot_image(kernel)
    if image == kernel.vmlinuz:
        raise CompatError(f"selftests: debian:{series} has no extractable vmlinux (no PVH entry?): cannot dump its BTF")
    return image


def _kernel_btf(cache: Cache, series: str, arch: str, dest: Path) -> Path:
    """The BTF of the series' kernel of ``arch`` as a raw BTF file (in dest), which bpftool dumps
    as it dumps a vmlinux: read out of the kernel's boot image (an arm64 Image is a flat binary
    that holds the .BTF section's bytes, found by their header: see btf_blob)."""
    store = KernelStore(cache)
    kernel = store.fetch(load_matrix(None, arch).select([f"debian:{series}"])[0])
    blob = btf_blob(store.boot_image(kernel).read_bytes())
    if blob is None:
        raise CompatError(f"selftests: debian:{series} on {arch} has no BTF in its boot image: cannot dump vmlinux.h")
    out = dest / f"vmlinux-{arch}.btf"
    if not out.is_file() or out.read_bytes() != blob:
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, out)  # whole or not at all: the build key hashes it
    return out


# A BTF header (include/uapi/linux/btf.h): magic 0xeB9F, version 1, flags 0, hdr_len 24, then
# type_off, type_len, str_off, str_len (little-endian: the architectures compat boots are).
_BTF_MAGIC = b"\x9f\xeb\x01\x00\x18\x00\x00\x00"
MIN_KERNEL_BTF = 1 << 20  # a kernel's BTF is megabytes; a module's or a stray match is not


def btf_blob(image: bytes) -> bytes | None:
    """The kernel's BTF inside a boot image without sections (arm64's Image): the first header
    whose sections follow each other, types first, and whose size (at least MIN_KERNEL_BTF)
    fits in the image; None when there is none."""
    at = image.find(_BTF_MAGIC)
    while at >= 0:
        if at + 24 <= len(image):
            hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", image, at + 4)
            size = hdr_len + str_off + str_len
            if type_off == 0 and str_off == type_len and MIN_KERNEL_BTF <= size <= len(image) - at:
                return image[at : at + size]
        at = image.find(_BTF_MAGIC, at + 1)
    return None


def _include_dir(src: Path, include: Path, vmlinux: Path, arch: str = DEFAULT_ARCH) -> Path:
    """The headers the Makefile generates or installs, in one directory (built once per key):

    - vmlinux.h from the kernel's BTF;
    - bpf/*.h: libbpf's headers, as `make install_headers` puts them, with bpf_helper_defs.h
      generated from the uapi bpf.h by scripts/bpf_doc.py;
    - usr/include: the uapi headers, cleaned as scripts/headers_install.sh does (its sed part;
      the unifdef of __KERNEL__ is unnecessary since clang never defines it). The generated
      asm headers (unistd_64.h...) are missing and come from the host's through -idirafter.
    """
    if (include / ".complete").is_file():
        return include

    def fill(staging: Path) -> None:
        (staging / "bpf").mkdir(parents=True)
        with open(staging / "vmlinux.h", "w") as f:
            subprocess.run(["bpftool", "btf", "dump", "file", str(vmlinux), "format", "c"], stdout=f, check=True)
        for header in (src / "tools/lib/bpf").glob("*.h"):
            shutil.copy(header, staging / "bpf" / header.name)
        with open(staging / "bpf" / "bpf_helper_defs.h", "w") as f:
            subprocess.run(
                [sys.executable, str(src / "scripts/bpf_doc.py"), "--header", "--file",
                 str(src / "tools/include/uapi/linux/bpf.h")],
                stdout=f, check=True,
            )  # fmt: skip
        for uapi in (src / "include/uapi", src / f"arch/{ARCHES[arch].srcarch}/include/uapi"):
            for header in uapi.rglob("*.h"):
                target = staging / "usr/include" / header.relative_to(uapi)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(_headers_install(header.read_text(errors="replace")))

    return _build_once(include, fill)


# The sed expressions of scripts/headers_install.sh, in the same order.
_HEADERS_INSTALL = (
    (re.compile(r"([\s(])(__user|__force|__iomem)\s"), r"\1"),
    (re.compile(r"__attribute_const__(\s|$)", re.M), r"\1"),
    (re.compile(r"^#include <linux/compiler(|_types)\.h>", re.M), ""),
    (re.compile(r"(^|[^a-zA-Z0-9])__packed([^a-zA-Z0-9_]|$)", re.M), r"\1__attribute__((packed))\2"),
    (re.compile(r"(^|[\s(])(inline|asm|volatile)([\s(]|$)", re.M), r"\1__\2__\3"),
    (re.compile(r"#(ifndef|define|endif\s*/[*])\s*_UAPI"), r"#\1 "),
)


def _headers_install(text: str) -> str:
    lines = []
    for line in text.split("\n"):  # sed works line by line: no pattern may span lines
        for pattern, repl in _HEADERS_INSTALL:
            line = pattern.sub(repl, line)
        lines.append(line)
    return "\n".join(lines)


# -- compiling ---------------------------------------------------------------------------------


def newest_clang() -> str:
    """The newest clang-N on PATH (Debian installs several side by side), else plain clang.

    The selftests follow upstream clang: Debian 12's default clang 14 cannot assemble the
    inline asm of a few verifier_*.c files (5 of 798 in 6.12), clang-19 (bookworm too) builds all.
    """
    best = (0, "clang")
    for d in os.environ.get("PATH", "").split(os.pathsep):
        for path in Path(d).glob("clang-[0-9]*") if Path(d).is_dir() else []:
            m = re.fullmatch(r"clang-(\d+)", path.name)
            if m and os.access(path, os.X_OK) and int(m.group(1)) > best[0]:
                best = (int(m.group(1)), str(path))
    if shutil.which(best[1]) is None:
        raise UserError("clang is not installed: the selftests are compiled with it", "apt-get install clang")
    return best[1]


def _clang_version(clang: str) -> str:
    return subprocess.run([clang, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


@dataclass
class Recipe:
    """The compiler command of the selftests Makefile (CLANG_BPF_BUILD_RULE) for this tree."""

    clang: str
    flags: list[str]  # everything but the input, the output and the per-file flags
    per_file: dict[str, list[str]]  # progs/X.c-CFLAGS of the Makefile


def _recipe(src: Path, include: Path, clang: str, arch: str = DEFAULT_ARCH) -> Recipe:
    selftests_dir = src / SELFTESTS
    flags = [
        # BPF_CFLAGS, less -Werror: a newer clang's new warnings do not change the object
        "-g", "-Wall", f"-D__TARGET_ARCH_{ARCHES[arch].srcarch}", "-mlittle-endian",
        f"-I{include}", f"-I{selftests_dir}", f"-I{src / 'tools/include/uapi'}", f"-I{include / 'usr/include'}",
        "-Wno-compare-distinct-pointer-types",
        *_sys_includes(clang),  # CLANG_CFLAGS
        "-DENABLE_ATOMICS_TESTS",  # the default test_progs flavour's TRUNNER_BPF_CFLAGS
        "-O2", "--target=bpf", "-mcpu=v3",
    ]  # fmt: skip
    per_file: dict[str, list[str]] = {}
    makefile = (selftests_dir / "Makefile").read_text()
    for m in re.finditer(r"^progs/([\w.-]+\.c)-CFLAGS\s*:?=\s*(.*)$", makefile, re.M):
        per_file[m.group(1)] = m.group(2).split()
    return Recipe(clang, flags, per_file)


def _sys_includes(clang: str) -> list[str]:
    """clang's default include directories for the host, as -idirafter (the Makefile's
    get_sys_includes): --target=bpf alone does not find asm/, sys/cdefs.h and the like."""
    proc = subprocess.run([clang, "-v", "-E", "-"], input="", capture_output=True, text=True)
    out, inside = [], False
    for line in proc.stderr.splitlines():
        if line.startswith("#include <...> search starts here:"):
            inside = True
        elif line.startswith("End of search list."):
            break
        elif inside and line.startswith(" /"):
            out += ["-idirafter", line.strip()]
    return out


def _compile(recipe: Recipe, source: Path, out_dir: Path, dest: Path, timeout: float) -> Build:
    """Compile one file; a failure or a timeout is a Build with its reason, never an exception."""
    out = out_dir / (source.stem + ".bpf.o")
    tmp = out.with_name(f".{out.name}.tmp")
    cmd = [recipe.clang, *recipe.flags, *recipe.per_file.get(source.name, []), "-c", str(source), "-o", str(tmp)]
    started = time.monotonic()
    # Own process group: a timeout kills clang and anything it spawned (cc1 out of process).
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        tmp.unlink(missing_ok=True)
        return Build(source.name, "timeout", None, 0, None, round(time.monotonic() - started, 1),
                     f"clang did not finish in {timeout:g} s")  # fmt: skip
    seconds = round(time.monotonic() - started, 1)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        return Build(source.name, "failed", None, 0, None, seconds, _first_error(stderr, proc.returncode))
    tmp.rename(out)
    return Build(source.name, "ok", str(out.relative_to(dest)), out.stat().st_size, sha256_file(out), seconds, "")


def _linked_of(groups: dict[str, list[str]], wanted: list[str]) -> dict[str, list[str]]:
    """The linked objects all of whose parts are in the selection."""
    return {name: deps for name, deps in groups.items() if set(deps) <= set(wanted)}


def _linked_groups(src: Path) -> dict[str, list[str]]:
    """{"linked_funcs.linked": ["linked_funcs1.c", "linked_funcs2.c"], ...}: every LINKED_SKELS
    skeleton of the Makefile and the sources of the objects it is linked from."""
    makefile = (src / SELFTESTS / "Makefile").read_text().replace("\\\n", " ")
    listed = re.search(r"^LINKED_SKELS\s*:?=(.*)$", makefile, re.M)
    groups = {}
    for skel in listed.group(1).split() if listed else []:
        deps = re.search(rf"^{re.escape(skel)}-deps\s*:?=(.*)$", makefile, re.M)
        if deps:
            name = skel.removesuffix(".skel.h") + ".linked"
            groups[name] = [d.removesuffix(".bpf.o") + ".c" for d in deps.group(1).split()]
    return groups


def _link(name: str, parts: list[Build], dest: Path, timeout: float) -> Build:
    """Link built objects into one with bpftool gen object, as the Makefile does."""
    if any(p.status != "ok" or not p.object for p in parts):
        return Build(name, "failed", None, 0, None, 0.0, "a part did not build: " + ", ".join(p.source for p in parts))
    out = dest / "obj" / f"{name}.bpf.o"
    cmd = ["bpftool", "gen", "object", str(out), *(str(dest / p.object) for p in parts if p.object)]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc = None
    seconds = round(time.monotonic() - started, 1)
    if proc is None or proc.returncode != 0 or not out.is_file():
        out.unlink(missing_ok=True)
        why = _first_error(proc.stderr, proc.returncode) if proc else f"bpftool did not finish in {timeout:g} s"
        return Build(name, "failed", None, 0, None, seconds, why)
    return Build(name, "ok", str(out.relative_to(dest)), out.stat().st_size, sha256_file(out), seconds, "")


def _first_error(stderr: str, returncode: int) -> str:
    """The first `error:` line of clang's output, without the long source path, on one line."""
    for line in stderr.splitlines():
        if "error:" in line or "fatal error" in line:
            line = re.sub(r"^\S*/(progs/|tools/)", r"\1", line.strip())
            return line[:MAX_ERROR]
    tail = stderr.strip().splitlines()
    return (tail[-1] if tail else f"clang exited with {returncode}")[:MAX_ERROR]


# -- manifest ----------------------------------------------------------------------------------


def _intact(dest: Path, b: Build) -> bool:
    """A failure stays a failure (same source, same compiler); a built object must be unchanged."""
    if b.status != "ok":
        return True
    path = dest / (b.object or "")
    try:
        return path.stat().st_size == b.size and sha256_file(path) == b.sha256
    except OSError:
        return False


def _read_manifest(dest: Path) -> dict | None:
    try:
        doc = json.loads((dest / MANIFEST).read_text())
        if doc.get("schema") != MANIFEST_SCHEMA:
            return None
        doc["builds"] = {name: Build(**b) for name, b in doc["builds"].items()}
        doc["sources"] = list(doc["sources"])
        return doc
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent or from another version of this script: rebuilt


def _write_manifest(dest: Path, manifest: dict) -> None:
    doc = dict(manifest, builds={name: asdict(b) for name, b in sorted(manifest["builds"].items())})
    write_atomic(dest / MANIFEST, json.dumps(doc, indent=1))
