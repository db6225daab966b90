"""The team's own loader as `compat run` takes it: checked on the host before any guest boots.

The command exists, is a regular executable file, an ELF executable of the guests' architecture or a
script whose #! interpreter the guest image has; --with paths exist, directories hold no symlink
loop, everything together is bounded. A dynamically linked ELF brings the shared libraries its
DT_NEEDED entries name (resolved recursively against the host's library path, never the whole
/lib) and its ELF interpreter, which then runs it with --library-path: the guest's own C library
never mixes with the host's. Nothing here runs the command: it runs only in guests
(compat/run/command.py sends what prepare() returns).
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat_agent.wire.messages import RUN_DIR

from compat.arch import ARCHES, host, machine_words
from compat.errors import UserError

FILES_MAX_BYTES = 96 << 20  # the command, its libraries and --with files together: they live in guest memory
FILES_MAX_COUNT = 10_000
LIB_DIR = ".compat-lib"  # the private library directory of a dynamically linked command, under RUN_DIR
# Interpreters a script may name: what the guest image has (busybox sh, python3).
GUEST_INTERPRETERS = {"/bin/sh", "/usr/bin/sh", "/bin/busybox", "/usr/bin/busybox", "/usr/bin/python3",
                      "/bin/python3"}  # fmt: skip
ENV_INTERPRETERS = {"sh", "python3"}  # #!/usr/bin/env NAME: the guest has no env, so it is run as NAME
# Where the host's shared libraries are looked for after the binary's own RUNPATH/RPATH and
# ldconfig's cache: the host's multiarch directories, then the classic ones.
OTHER_LIB_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib")




@dataclass
class GuestFile:
    """A file the command's working directory gets: its path there, mode and bytes."""

    path: str
    mode: int
    data: bytes


@dataclass
class Prepared:
    """The command as it runs in the guest: argv, files, and what it is (for the result)."""

    command: str  # as given
    argv: list[str]  # in the guest
    files: list[GuestFile]
    kind: str  # "static", "dynamic" or "script"
    libraries: list[str] = field(default_factory=list)  # the shared libraries brought (dynamic)
    sources: list[Path] = field(default_factory=list)  # host files that may embed BPF objects (fidelity)

    def request(self, timeout: float, running_ok: bool, output_max: int) -> tuple[dict[str, Any], bytes]:
        """The agent's run request and its payload (the files' bytes, in order); output_max: the
        bytes of stdout and of stderr the agent keeps."""
        files = [{"path": f.path, "mode": f.mode, "size": len(f.data)} for f in self.files]
        message = {"type": "run", "argv": self.argv, "files": files, "timeout": timeout,
                   "running_ok": running_ok, "output_max": output_max}  # fmt: skip
        return message, b"".join(f.data for f in self.files)


# -- the host's checks, before any guest boots ------------------------------------------------------


def prepare(command: str, args: list[str], with_paths: list[str], arches: set[str]) -> Prepared:
    """The command and its files, checked (UserError, exit 2, with one line for anything wrong)."""
    path = _command_path(command)
    data = _read(path, f"command {command}")
    files: list[GuestFile] = []
    names: dict[str, Path] = {}
    for given in with_paths:
        files.extend(_with_files(given, names))
    name = path.name
    if name in names and names[name].resolve() != path.resolve():
        raise UserError(f"command {command}: its name {name!r} is also a --with path's", "rename one of them")
    if name not in names:
        files.append(GuestFile(name, 0o755, data))
    else:  # the command was also given with --with: it must be executable there too
        files = [GuestFile(f.path, f.mode | 0o755, f.data) if f.path == name else f for f in files]
    here = f"{RUN_DIR}/{name}"
    if data[:4] == b"\x7fELF":
        kind, argv, libraries, lib_files = _elf(command, path, data, arches, here)
        files.extend(lib_files)
    elif data[:2] == b"#!":
        kind, argv, libraries = "script", _script(command, data, here), []
    else:
        raise UserError(f"command {command}: neither an ELF executable nor a script starting with #!",
                        "give your loader's binary, or a script (#!/bin/sh, #!/usr/bin/python3)")  # fmt: skip
    total = sum(len(f.data) for f in files)
    if total > FILES_MAX_BYTES:
        raise UserError(f"the command and its files come to {total >> 20} MiB, more than {FILES_MAX_BYTES >> 20} MiB",
                        "they travel into the guest's memory: give fewer or smaller --with paths")  # fmt: skip
    sources = [path] + [p for p in names.values() if p.is_file()]
    return Prepared(command, argv + list(args), files, kind, libraries, sources)


def _command_path(command: str) -> Path:
    path = Path(command)
    if "/" not in command and not path.exists():
        found = shutil.which(command)  # a command named as a shell would find it (on the host's PATH)
        if found:
            path = Path(found)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"command {command}: no such file",
                        "give the path of your loader: a binary or a script") from None  # fmt: skip
    except OSError as e:
        raise UserError(f"command {command}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"command {command}: is a directory", "give the loader's file; put other files in --with")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"command {command}: not a regular file")
    if not st.st_mode & 0o111:
        raise UserError(f"command {command}: not executable", f"chmod +x {command}")
    return path


def _read(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > FILES_MAX_BYTES:
            raise UserError(f"{what}: {size >> 20} MiB, more than {FILES_MAX_BYTES >> 20} MiB",
                            "files travel into the guest's memory")  # fmt: skip
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{what}: cannot read it ({e.strerror})") from None


def _with_files(given: str, names: dict[str, Path]) -> list[GuestFile]:
    """The files of one --with path (a file, or a directory copied recursively; a symlink is
    followed, a symlink back into a directory being copied is a loop), named by its base name."""
    path = Path(given)
    if not path.exists():
        raise UserError(f"--with {given}: no such file or directory")
    name = path.resolve().name if path.name in ("", ".", "..") else path.name
    if name in names:
        raise UserError(f"--with {given}: {name!r} is given twice", "each --with path goes into the working "
                        "directory under its own name: rename one")  # fmt: skip
    names[name] = path
    if not path.is_dir():
        return [_guest_file(path, name, given)]
    out: list[GuestFile] = []
    total = 0

    def walk(directory: Path, rel: str, ancestors: tuple[tuple[int, int], ...]) -> None:
        nonlocal total
        st = directory.stat()
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            raise UserError(f"--with {given}: {rel} is a directory loop (a symlink to a directory that holds it)",
                            "remove the symlink, or give the files it should bring")  # fmt: skip
        try:
            entries = sorted(directory.iterdir())
        except OSError as e:
            raise UserError(f"--with {given}: cannot read {rel} ({e.strerror})") from None
        for entry in entries:
            inner = f"{rel}/{entry.name}"
            if entry.is_dir():
                walk(entry, inner, (*ancestors, key))
            elif entry.is_file():
                f = _guest_file(entry, inner, given)
                total += len(f.data)
                if len(out) >= FILES_MAX_COUNT or total > FILES_MAX_BYTES:
                    raise UserError(f"--with {given}: more than {FILES_MAX_COUNT} files or {FILES_MAX_BYTES >> 20} "
                                    "MiB", "give a smaller directory")  # fmt: skip
                out.append(f)
            # else: a dangling symlink, a socket, a device: nothing to bring

    walk(path, name, ())
    return out


def _guest_file(path: Path, name: str, given: str) -> GuestFile:
    data = _read(path, f"--with {given}")
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    return GuestFile(name, mode | 0o600, data)


def _script(command: str, data: bytes, here: str) -> list[str]:
    line = data[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    words = line.split()
    if not words:
        raise UserError(f"command {command}: its #! line names no interpreter")
    interpreter = words[0]
    if interpreter in GUEST_INTERPRETERS:
        return [here]  # the guest kernel runs the #! line itself
    if interpreter in ("/usr/bin/env", "/bin/env") and len(words) > 1 and words[1] in ENV_INTERPRETERS:
        return [words[1], *words[2:], here]  # the guest has no env: its PATH finds sh and python3
    raise UserError(f"command {command}: its interpreter {interpreter} is not in the guest image",
                    "the guests have /bin/sh (busybox) and /usr/bin/python3: use one of them, or a binary")  # fmt: skip


def _elf(command: str, path: Path, data: bytes, arches: set[str], here: str
         ) -> tuple[str, list[str], list[str], list[GuestFile]]:  # fmt: skip
    """(kind, argv, library names, library files) of an ELF command, checked."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import InterpSegment

    try:
        elf = ELFFile(io.BytesIO(data))
        (machine,) = struct.unpack_from("<H" if data[5] == 1 else ">H", data, 18)  # e_machine, as a number
        etype = elf["e_type"]
        interp = next((s.get_interp_name() for s in elf.iter_segments() if isinstance(s, InterpSegment)), None)
        tags = _dynamic_tags(elf)
        needed = [value for tag, value in tags if tag == "DT_NEEDED"]
        runpath = [value for tag, value in tags if tag in ("DT_RUNPATH", "DT_RPATH")]
    except (ELFError, ValueError, KeyError, IndexError, OSError, struct.error) as e:
        raise UserError(f"command {command}: not a readable ELF file ({str(e)[:120]})") from None
    if etype not in ("ET_EXEC", "ET_DYN"):
        raise UserError(f"command {command}: an ELF file but not an executable ({etype})", "give the linked loader")
    for arch in sorted(arches):
        if ARCHES[arch].machine != machine:
            raise UserError(f"command {command}: built for {machine_words(machine)}, the {arch} guests cannot run it",
                            f"build it for {arch}, or check it on kernels of its architecture")  # fmt: skip
    if interp is None:
        return "static", [here], [], []
    here_arch = host()
    if here_arch is None or here_arch.machine != machine:
        raise UserError(f"command {command}: dynamically linked for another architecture than this host's",
                        "link it statically: compat brings a dynamic loader's libraries from this host")  # fmt: skip
    origin = str(path.resolve().parent)
    dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for rp in runpath for d in rp.split(":") if d]
    libraries = resolve_libraries(command, needed, dirs)
    interp_path = Path(interp)
    if not interp_path.is_file():
        raise UserError(f"command {command}: its ELF interpreter {interp} is not on this host")
    lib_files = [GuestFile(f"{LIB_DIR}/{name}", 0o755, _read(p, f"library {p}")) for name, p in libraries.items()]
    loader_name = interp_path.name
    if loader_name not in libraries:
        lib_files.append(GuestFile(f"{LIB_DIR}/{loader_name}", 0o755, _read(interp_path, f"interpreter {interp}")))
    lib_dir = f"{RUN_DIR}/{LIB_DIR}"
    # The host's ELF interpreter runs it with the host's libraries only: the guest's own libc and
    # dynamic loader (another glibc) are never mixed with the host's.
    return "dynamic", [f"{lib_dir}/{loader_name}", "--library-path", lib_dir, here], sorted(libraries), lib_files


def _dynamic_tags(elf: Any) -> list[tuple[str, str]]:
    """(tag, text) of an ELF file's DT_NEEDED, DT_RUNPATH and DT_RPATH entries, in order."""
    from elftools.elf.dynamic import DynamicSection

    out: list[tuple[str, str]] = []
    attribute = {"DT_NEEDED": "needed", "DT_RUNPATH": "runpath", "DT_RPATH": "rpath"}
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                name = attribute.get(tag.entry.d_tag)
                if name:  # pyelftools sets the tag's text as an attribute named after it
                    out.append((tag.entry.d_tag, str(tag.__dict__.get(name, ""))))
    return out


def ldconfig_cache() -> dict[str, str]:
    """{soname: path} of the host's ldconfig cache for its own architecture ({} without ldconfig)."""
    ldconfig = shutil.which("ldconfig") or ("/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else None)
    if ldconfig is None:
        return {}
    try:
        out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, str] = {}
    own = host()
    want = own.ldconfig if own else "?"
    for line in out.splitlines()[1:]:
        name, _, rest = line.strip().partition(" (")
        flags, _, target = rest.partition(") => ")
        if want in flags and target:
            found.setdefault(name, target)
    return found


def resolve_libraries(command: str, needed: list[str], first_dirs: list[str]) -> dict[str, Path]:
    """{soname: host path} of every shared library the needed names bring, recursively (the
    DT_NEEDED entries of each library too); UserError for one this host does not have."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    cache = ldconfig_cache()
    own = host()
    dirs = ((f"/lib/{own.triplet}", f"/usr/lib/{own.triplet}") if own else ()) + OTHER_LIB_DIRS
    found: dict[str, Path] = {}
    todo = list(needed)
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        candidates = [Path(d) / name for d in first_dirs]
        if name in cache:
            candidates.append(Path(cache[name]))
        candidates += [Path(d) / name for d in dirs]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise UserError(f"command {command}: needs the shared library {name}, which this host does not have",
                            "install it, or link the loader statically")  # fmt: skip
        found[name] = path
        if len(found) > 512:
            raise UserError(f"command {command}: needs more than 512 shared libraries", "link it statically")
        try:
            with path.open("rb") as f:
                todo += [value for tag, value in _dynamic_tags(ELFFile(io.BytesIO(f.read()))) if tag == "DT_NEEDED"]
        except (ELFError, OSError, ValueError) as e:
            raise UserError(f"command {command}: cannot read the shared library {path} ({str(e)[:80]})") from None
    return found
