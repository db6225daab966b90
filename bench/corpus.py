"""A corpus of real third-party BPF objects, taken from Debian packages.

    python3 bench/corpus.py [--dest DIR] [--list] [--refresh]

compat's own test programs are written for compat; the objects it meets in the field are built
by other projects, with other compilers, flags and libbpf conventions. This script collects
such objects from Debian (trixie, else sid) through compat's own private apt root (so apt
verifies every package against the signed index and the host's apt configuration is never
touched):

- BPF ELF objects shipped as files (libxdp's dispatcher, xdpdump and xdpfilt objects, xdp-tests,
  opensnitch, suricata);
- BPF ELF objects embedded in ordinary binaries: libbpf skeletons (bpftool gen skeleton) keep
  the whole object as a byte array, e.g. in xdp-tools' commands, systemd's libsystemd-core and
  systemd-nsresourced. They are carved out by their ELF header.

Objects with the same bytes found in several packages are listed once by corpus() (the first
package of PACKAGES keeps them).

Importable: ``corpus(dest)`` returns the object paths. The result is cached in dest (a manifest
of every object's size and sha256): a second call asks apt nothing and downloads nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# Runnable from a checkout without installing compat: the package sits one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from debian.debfile import DebFile

from compat.cache import Cache, sha256_file, write_atomic
from compat.kernels.apt import AptRepo, PackageVersion, debian_sources
from compat.objects.embedded import ELF64_HEADER, ELF_MAGIC, carve, is_bpf_elf, source_stem
from compat.objects.objfile import MAX_OBJECT_BYTES, BadObject, inspect_bytes
from compat.objects.selftests import newest_by_suite
from compat.paths import cache_root

# Packages known (from trixie's Contents-amd64 and from what their sources build) to carry BPF
# objects, as files or embedded in binaries. Every regular file of each package is examined,
# so a file list that moves between versions needs no edit here.
PACKAGES = (
    "libxdp1",  # xdp-dispatcher.o, xsk_def_xdp_prog*.o (and, in trixie, xdpdump_*.o, xdpfilt_*.o)
    "xdp-tools",  # skeletons in xdp-bench, xdp-forward, xdp-monitor, xdp-trafficgen
    "xdp-tests",  # usr/libexec/xdp-tools/*.o
    "opensnitch-ebpf-modules",  # usr/lib/opensnitchd/ebpf/*.o (kprobes)
    "suricata",  # usr/lib/suricata/ebpf/*.bpf (XDP/socket filters, legacy map definitions)
    "libsystemd-shared",  # embedded skeletons: restrict-fs, restrict-ifaces, socket-bind, ...
    "systemd-container",  # embedded skeleton: userns-restrict (systemd-nsresourced)
    "bpftool",  # skeletons pid_iter, profiler when built with them (Debian's are not: no objects)
    "libbpf-tools",  # bcc's libbpf tools: one skeleton per tool (biolatency, execsnoop, tcpconnect, ...)
    "pwru",  # Go (cilium/ebpf): the kprobe-per-function packet tracer's objects embedded by bpf2go
    "bpftop",  # Rust (libbpf-rs): skeleton
    "bpfilter",  # packet filter: skeletons of its generated programs' helpers
    "libknot15",  # Knot DNS's XDP program, embedded
    "pcp",  # Performance Co-Pilot's bpf PMDA modules, if built
    "qemu-system-x86",  # QEMU's virtio-net RSS steering program, embedded by its skeleton
)
# trixie's point releases and security updates are trixie too; sid is the fallback for a
# package trixie lacks.
SUITES = (("trixie", "trixie-security", "trixie-updates"), ("sid", "unstable"))

MANIFEST = "corpus.json"
MANIFEST_SCHEMA = "compat-corpus/v2"


@dataclass
class CorpusObject:
    """One BPF object of the corpus and where it came from."""

    package: str
    version: str
    suite: str
    file: str  # relative to the corpus directory
    source: str  # the file in the package (for a carved object: the binary it was found in)
    offset: int | None  # byte offset in that binary, for a carved object
    size: int
    sha256: str
    programs: int  # as compat names them (compat/objects/objfile.py); 0 when compat refuses the object


def default_dest() -> Path:
    """compat's cache directory (COMPAT_CACHE, XDG_CACHE_HOME, ~/.cache), subfolder corpus/."""
    return cache_root() / "corpus"


def corpus(dest: Path | None = None, refresh: bool = False, warn=print,
           suites: tuple[tuple[str, ...], ...] = SUITES) -> list[Path]:  # fmt: skip
    """The paths of the corpus objects, downloading and extracting only what dest lacks.

    With a complete manifest in dest, apt is not asked at all (refresh=True asks it again, and
    fetches a package only when its chosen version changed).
    """
    dest = Path(dest) if dest else default_dest()
    return [dest / o.file for o in unique(build(dest, refresh, warn, suites))]


def unique(objects: list[CorpusObject]) -> list[CorpusObject]:
    """The first object of each content: xdp-tools and xdp-tests embed libxdp's dispatcher and
    AF_XDP programs byte for byte, and checking the same bytes twice only costs guest time."""
    seen: set[str] = set()
    out = []
    for o in objects:
        if o.sha256 not in seen:
            seen.add(o.sha256)
            out.append(o)
    return out


def build(dest: Path, refresh: bool = False, warn=print,
          suites: tuple[tuple[str, ...], ...] = SUITES) -> list[CorpusObject]:  # fmt: skip
    """The corpus objects, of every package (duplicates included); see corpus()."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(dest)
    if not refresh and manifest is not None:
        versions, objects = manifest
        if versions.keys() >= set(PACKAGES) and all(_intact(dest, o) for o in objects):
            _warn_empty(versions, objects, warn)
            return objects
    old_versions, previous = manifest or ({}, [])
    repo = AptRepo(Cache(), debian_sources())
    chosen = newest_by_suite(repo.versions(list(PACKAGES)), suites)
    versions: dict[str, str | None] = {}
    objects = []
    for name in PACKAGES:
        pkg = chosen.get(name)
        versions[name] = pkg.version if pkg else None
        if pkg is None:
            continue
        kept = [o for o in previous if o.package == name]
        # An unchanged version whose files are all still there needs no download.
        if old_versions.get(name) == pkg.version and all(_intact(dest, o) for o in kept):
            objects.extend(kept)
        else:
            objects.extend(_fetch(repo, pkg, dest, warn))
    _write_manifest(dest, versions, objects)
    _warn_empty(versions, objects, warn)
    return objects


def _warn_empty(versions: dict[str, str | None], objects: list[CorpusObject], warn) -> None:
    """One line per package that gave nothing: absent from the index, or without BPF objects."""
    for name in PACKAGES:
        if versions.get(name) is None:
            warn(f"corpus: warning: package {name} is not in the archive index (suites trixie, sid); skipped")
        elif not any(o.package == name for o in objects):
            warn(f"corpus: warning: {name} {versions[name]} carries no BPF object")




def _fetch(repo: AptRepo, pkg: PackageVersion, dest: Path, warn) -> list[CorpusObject]:
    """Download one package, and write every BPF object it carries (files and carved) to dest."""
    out_dir = dest / pkg.name
    for old in out_dir.glob("*") if out_dir.is_dir() else []:
        old.unlink()  # objects of an older version must not linger under the same names
    out_dir.mkdir(parents=True, exist_ok=True)
    found: list[CorpusObject] = []
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="compat-corpus-") as tmp:
        deb = repo.download(pkg, Path(tmp))
        for member, data in _members(deb):
            if not data.startswith(ELF_MAGIC):
                continue
            if is_bpf_elf(data):
                # A BPF object shipped as a file: kept whole, under its own name.
                blobs = [(data, Path(member).name, None)]
            else:
                blobs = [(blob, _carved_name(pkg.name, blob, off), off) for off, blob in carve(data, MAX_OBJECT_BYTES)]
            for blob, filename, offset in blobs:
                digest = hashlib.sha256(blob).hexdigest()
                if digest in seen:  # the same skeleton linked into two binaries
                    continue
                seen.add(digest)
                filename = _unique(out_dir, filename)
                (out_dir / filename).write_bytes(blob)
                try:
                    programs = len(inspect_bytes(blob, filename))
                except BadObject as e:
                    warn(f"corpus: warning: compat refuses {pkg.name}/{filename}: {e}")
                    programs = 0
                found.append(
                    CorpusObject(
                        package=pkg.name,
                        version=pkg.version,
                        suite=pkg.suite,
                        file=f"{pkg.name}/{filename}",
                        source="/" + member.lstrip("./"),
                        offset=offset,
                        size=len(blob),
                        sha256=digest,
                        programs=programs,
                    )
                )
    return found


def _members(deb: Path):
    """(path, bytes) of every regular file of the package's data archive, read in memory.

    Nothing is extracted to disk: the archive's paths never become host paths.
    """
    with DebFile(str(deb)) as debfile:
        tar: tarfile.TarFile = debfile.data.tgz()
        for info in tar:
            if not info.isfile() or info.size < ELF64_HEADER.size:
                continue
            f = tar.extractfile(info)
            if f is not None:
                yield info.name, f.read()


def _carved_name(package: str, blob: bytes, offset: int) -> str:
    """`<package>-<source name>.o` from the object's own BTF/DWARF file names, else the offset."""
    return f"{package}-{source_stem(blob) or f'{offset:#x}'}.o"


def _unique(directory: Path, filename: str) -> str:
    """filename, or with a counter when an object of this package already took it."""
    candidate, n = filename, 1
    while (directory / candidate).exists():
        n += 1
        stem, dot, ext = filename.rpartition(".")
        candidate = f"{stem}-{n}.{ext}" if dot else f"{filename}-{n}"
    return candidate


def _intact(dest: Path, obj: CorpusObject) -> bool:
    path = dest / obj.file
    try:
        return path.stat().st_size == obj.size and sha256_file(path) == obj.sha256
    except OSError:
        return False


def _read_manifest(dest: Path) -> tuple[dict[str, str | None], list[CorpusObject]] | None:
    """The chosen version of every package (None: not in the index) and the objects, or None."""
    try:
        doc = json.loads((dest / MANIFEST).read_text())
        if doc.get("schema") != MANIFEST_SCHEMA:
            return None
        return dict(doc["packages"]), [CorpusObject(**o) for o in doc["objects"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent or from another version of this script: rebuilt


def _write_manifest(dest: Path, versions: dict[str, str | None], objects: list[CorpusObject]) -> None:
    doc = {"schema": MANIFEST_SCHEMA, "packages": versions, "objects": [asdict(o) for o in objects]}
    write_atomic(dest / MANIFEST, json.dumps(doc, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", type=Path, help=f"corpus directory (default: {default_dest()})")
    ap.add_argument("--list", action="store_true", help="print a table of the objects instead of their paths")
    ap.add_argument("--refresh", action="store_true", help="ask the archive again for the newest versions")
    ap.add_argument("--suite", help="take every package from this suite and its -security/-updates/-backports "
                    "(e.g. bookworm: the objects an older release ships) instead of trixie, else sid; give a "
                    "--dest of its own")  # fmt: skip
    args = ap.parse_args()
    if args.suite and not args.dest:
        ap.error("--suite needs a --dest of its own (the default corpus holds trixie's objects)")
    suites = ((args.suite, *(f"{args.suite}-{t}" for t in ("security", "updates", "backports"))),) if args.suite \
        else SUITES
    dest = args.dest or default_dest()
    objects = build(dest, args.refresh, warn=lambda line: print(line, file=sys.stderr), suites=suites)
    if not args.list:
        for o in unique(objects):
            print(dest / o.file)
        return
    from tabulate import tabulate

    first = {o.sha256: o.file for o in unique(objects)}
    rows = [
        (o.package, o.version, o.suite, o.file, o.source + (f" @{o.offset:#x}" if o.offset is not None else ""),
         o.size, o.programs, "" if first[o.sha256] == o.file else first[o.sha256])
        for o in objects
    ]  # fmt: skip
    headers = ["package", "version", "suite", "object", "from", "bytes", "programs", "same bytes as"]
    print(tabulate(rows, headers=headers))
    print(f"{len(first)} distinct objects, {sum(o.programs for o in unique(objects))} programs")


if __name__ == "__main__":
    main()
