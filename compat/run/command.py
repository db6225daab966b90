"""`compat run`: the team's own loader, run as root inside each kernel's guest.

The command and the files named with --with are checked on the host before any guest boots (the
command exists, is a regular executable file, an ELF executable of the guests' architecture or a
script whose #! interpreter the guest image has; --with paths exist, directories hold no symlink
loop, everything together is bounded). A dynamically linked ELF brings the shared libraries its
DT_NEEDED entries name (resolved recursively against the host's library path, never the whole
/lib) and its ELF interpreter, which then runs it with --library-path: the guest's own C library
never mixes with the host's. Each guest gets the files in a fresh working directory
(wire RUN_DIR), runs the command under --timeout and answers with what it did
(compat_agent/command/run.py). The command runs only in guests, never on the host.

When the command's binary or a --with file embeds BPF objects (or is one), those objects are also
checked the generic way (compat check's path, on the same kernels) and the two are compared: the
fidelity findings of each kernel.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compat_agent.wire.messages import RUN_DIR

from compat import __version__
from compat.cache import Cache
from compat.errors import CompatError, InfraError, UserError
from compat.guest import guestmsg
from compat.guest.fleet import Fleet, Session
from compat.guest.vm import DEFAULT_MEMORY_MB, GuestError
from compat.kernels.matrix import KernelSpec
from compat.kernels.sources import Kernel

SCHEMA = "compat-run/v1"
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 86400.0
OUTPUT_MAX = 64 << 10  # bytes of stdout and of stderr kept per kernel
FILES_MAX_BYTES = 96 << 20  # the command, its libraries and --with files together: they live in guest memory
FILES_MAX_COUNT = 10_000
LIB_DIR = ".compat-lib"  # the private library directory of a dynamically linked command, under RUN_DIR
# e_machine of each guest architecture (Debian's names, as a kernel spec's arch says them).
MACHINES = {"amd64": 62, "arm64": 183}
MACHINE_NAMES = {62: "x86-64", 183: "arm64 (aarch64)", 3: "i386", 40: "arm", 243: "riscv", 247: "bpf"}
# Interpreters a script may name: what the guest image has (busybox sh, python3).
GUEST_INTERPRETERS = {"/bin/sh", "/usr/bin/sh", "/bin/busybox", "/usr/bin/busybox", "/usr/bin/python3",
                      "/bin/python3"}  # fmt: skip
ENV_INTERPRETERS = {"sh", "python3"}  # #!/usr/bin/env NAME: the guest has no env, so it is run as NAME
# Where the host's shared libraries are looked for after the binary's own RUNPATH/RPATH and ldconfig's cache.
STANDARD_LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")


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

    def request(self, timeout: float, running_ok: bool) -> tuple[dict[str, Any], bytes]:
        """The agent's run request and its payload (the files' bytes, in order)."""
        files = [{"path": f.path, "mode": f.mode, "size": len(f.data)} for f in self.files]
        message = {"type": "run", "argv": self.argv, "files": files, "timeout": timeout,
                   "running_ok": running_ok, "output_max": OUTPUT_MAX}  # fmt: skip
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
        machine = MACHINES_BY_NAME.get(elf["e_machine"], -1)
        etype = elf["e_type"]
        interp = next((s.get_interp_name() for s in elf.iter_segments() if isinstance(s, InterpSegment)), None)
        tags = _dynamic_tags(elf)
        needed = [value for tag, value in tags if tag == "DT_NEEDED"]
        runpath = [value for tag, value in tags if tag in ("DT_RUNPATH", "DT_RPATH")]
    except (ELFError, ValueError, KeyError, IndexError, OSError) as e:
        raise UserError(f"command {command}: not a readable ELF file ({str(e)[:120]})") from None
    if etype not in ("ET_EXEC", "ET_DYN"):
        raise UserError(f"command {command}: an ELF file but not an executable ({etype})", "give the linked loader")
    for arch in sorted(arches):
        if MACHINES.get(arch) != machine:
            shown = MACHINE_NAMES.get(machine, f"machine {machine}")
            raise UserError(f"command {command}: built for {shown}, the {arch} guests cannot run it",
                            f"build it for {arch}, or check it on kernels of its architecture")  # fmt: skip
    if interp is None:
        return "static", [here], [], []
    if os.uname().machine != {62: "x86_64", 183: "aarch64"}.get(machine):
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


MACHINES_BY_NAME = {"EM_X86_64": 62, "EM_AARCH64": 183, "EM_386": 3, "EM_ARM": 40, "EM_RISCV": 243, "EM_BPF": 247}


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
    want = "x86-64" if os.uname().machine == "x86_64" else "AArch64"
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
    found: dict[str, Path] = {}
    todo = list(needed)
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        candidates = [Path(d) / name for d in first_dirs]
        if name in cache:
            candidates.append(Path(cache[name]))
        candidates += [Path(d) / name for d in STANDARD_LIB_DIRS]
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


# -- the run ------------------------------------------------------------------------------------------


@dataclass
class KernelRun:
    """What the command did on one kernel (error: no answer from that kernel, and why)."""

    kernel: str
    label: str
    version: str | None
    release: str | None
    ok: bool | None  # the command succeeded here (None: error, no answer)
    exit_status: int | None = None
    signal: int | None = None
    timed_out: bool = False
    duration: float | None = None  # seconds
    programs: list[str] = field(default_factory=list)  # names of the BPF programs it loaded
    program_details: list[dict[str, Any]] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    kernel_log: list[str] = field(default_factory=list)
    kernel_log_truncated: bool = False
    kernel_warnings: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    fidelity: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The kernel's record of the result file (compat-run/v1)."""
        return asdict(self)


@dataclass
class CommandResult:
    """Everything one `compat run` produced."""

    command: str
    argv: list[str]
    kind: str
    timeout: float
    running_ok: bool
    kernels: list[KernelRun]
    files: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    embedded: list[str] = field(default_factory=list)  # the BPF objects checked the generic way
    generic: dict[str, Any] | None = None  # that check's result file (compat/v1), when there was one
    wall_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The result file (compat-run/v1, compat/results/schema/run-v1.json)."""
        return {"schema": SCHEMA, "compat_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime()), "command": self.command, "argv": self.argv, "kind": self.kind,
                "timeout": self.timeout, "running_ok": self.running_ok, "files": self.files,
                "libraries": self.libraries, "embedded": self.embedded, "wall_seconds": self.wall_seconds,
                "kernels": [k.to_json() for k in self.kernels], "generic": self.generic}  # fmt: skip

    def status(self) -> int:
        """compat run's exit status: 0 when the command succeeded on every kernel, 1 when it failed
        on some, 3 when some kernel gave no answer (and none failed)."""
        if any(k.ok is False for k in self.kernels):
            return 1
        if any(k.ok is None for k in self.kernels):
            return 3
        return 0


@dataclass
class RunOptions:
    """How the command runs: its time limit and whether still running then is success."""

    timeout: float = DEFAULT_TIMEOUT
    running_ok: bool = False
    jobs: int | None = None
    refresh: bool = False
    memory_mb: int = DEFAULT_MEMORY_MB
    fidelity: bool = True  # check the embedded objects the generic way too
    test_faults: bool = False


def run_command(cache: Cache, specs: list[KernelSpec], prepared: Prepared, options: RunOptions) -> CommandResult:
    """Run the command on every kernel (one guest each); a kernel whose guest fails becomes an
    error record, the others are kept. Then the fidelity check of its embedded objects."""
    t0 = time.monotonic()
    message, payload = prepared.request(options.timeout, options.running_ok)
    fleet = Fleet(cache, specs, jobs=options.jobs, refresh=options.refresh, memory_mb=options.memory_mb,
                  test_faults=options.test_faults)  # fmt: skip

    def work(session: Session, kernel: Kernel) -> dict[str, Any]:
        # The guest answers after the command's timeout and the clean-up that follows it.
        reply, _ = session.request(message, payload, timeout=options.timeout + 120)
        if reply.get("type") == "run_result":
            return guestmsg.validate(reply, "run_result", who=kernel.id, console_tail=session.vm.console_tail())
        raise InfraError(f"{kernel.id}: the guest agent could not run the command: {guestmsg.describe_error(reply)}")

    # A guest that dies while the command runs is not retried: the command is the likely cause.
    outcomes = fleet.run(work, retries=0)
    kernels: list[KernelRun] = []
    for o in outcomes:
        version = o.kernel.version if o.kernel else None
        release = (o.hello or {}).get("release") or (o.kernel.release if o.kernel else None)
        if o.error is not None or o.value is None:
            error = str(o.error) if o.error else "no answer"
            if o.console_tail and isinstance(o.error, GuestError):
                error = f"{error}; the guest's console ended with: {o.console_tail.strip()[-600:]}"
            kernels.append(KernelRun(o.spec.id, o.spec.label, version, release, None, error=error))
            continue
        kernels.append(kernel_run(o.spec, version, release, o.value, options.running_ok))
    result = CommandResult(
        command=prepared.command, argv=prepared.argv, kind=prepared.kind, timeout=options.timeout,
        running_ok=options.running_ok, kernels=kernels, files=[f.path for f in prepared.files],
        libraries=prepared.libraries,
    )  # fmt: skip
    if options.fidelity:
        fidelity_check(cache, specs, prepared, options, result)
    result.wall_seconds = round(time.monotonic() - t0, 2)
    return result


def kernel_run(spec: KernelSpec, version: str | None, release: str | None, reply: dict[str, Any],
               running_ok: bool) -> KernelRun:  # fmt: skip
    """A kernel's record from the agent's validated run_result."""
    timed_out = bool(reply["timed_out"])
    error = reply.get("error")
    ok = (reply.get("exit_status") == 0) if not timed_out else running_ok
    if error:
        ok = False
    programs = sorted(reply.get("programs") or [], key=lambda p: p["id"])
    maps = sorted(reply.get("maps") or [], key=lambda m: m["id"])
    return KernelRun(
        kernel=spec.id, label=spec.label, version=version, release=release, ok=ok,
        exit_status=reply.get("exit_status"), signal=reply.get("signal"), timed_out=timed_out,
        duration=round(float(reply["duration_ms"]) / 1000, 3),
        programs=sorted({p["name"] for p in programs}),
        program_details=[_seen(p, ("id", "name", "type", "verified_insns")) for p in programs],
        maps=[_seen(m, ("id", "name", "type", "key_size", "value_size", "max_entries")) for m in maps],
        stdout=reply["stdout"], stderr=reply["stderr"],
        stdout_truncated=(reply.get("stdout_bytes") or 0) > len(reply["stdout"].encode("utf-8", "replace")),
        stderr_truncated=(reply.get("stderr_bytes") or 0) > len(reply["stderr"].encode("utf-8", "replace")),
        kernel_log=list(reply["kernel_log"]),
        kernel_log_truncated=(reply.get("kernel_log_lines") or 0) > len(reply["kernel_log"]),
        kernel_warnings=[dict(w) for w in reply.get("kernel_warnings") or []],
        error=f"the command could not start: {error}" if error else None,
    )  # fmt: skip


def _seen(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A program or map of the reply for the result file (loaded_at_end always a boolean)."""
    return {**{k: record.get(k) for k in keys}, "loaded_at_end": bool(record.get("loaded_at_end"))}


# -- the loader-fidelity diff ---------------------------------------------------------------------


def fidelity_check(cache: Cache, specs: list[KernelSpec], prepared: Prepared, options: RunOptions,
                   result: CommandResult) -> None:  # fmt: skip
    """Check the BPF objects the command's files embed (or are) the generic way on the same
    kernels and put where the two disagree on each kernel's record."""
    from compat.run.checker import Checker, CheckOptions, load_objects

    objects, infos, _ = load_objects([str(p) for p in prepared.sources])  # files without objects: left out
    if not objects:
        return
    result.embedded = [o.name for o in objects]
    ran = [s for s in specs if any(k.kernel == s.id and k.ok is not None for k in result.kernels)]
    if not ran:
        return
    check_options = CheckOptions(jobs=options.jobs, refresh=options.refresh, memory_mb=options.memory_mb,
                                 test_faults=options.test_faults)  # fmt: skip
    checker = Checker(cache, ran, check_options)
    try:
        generic = checker.run(objects, infos)
    except CompatError as e:  # the comparison is extra: the command's own results stand
        for k in result.kernels:
            k.fidelity = [{"kind": "not_compared", "message": f"the generic check failed: {e}"}]
        return
    result.generic = generic.to_json()
    for k in result.kernels:
        if k.ok is not None:
            k.fidelity = compare(k, [r for r in generic.results if r.kernel == k.kernel])


def compare(run: KernelRun, generic: list[Any]) -> list[dict[str, Any]]:
    """Where the generic check (ProgramResults of one kernel) and the team's loader disagree:
    {kind, object, program, generic, loader, message}. Program names are matched on the kernel's
    15 characters (BPF_OBJ_NAME_LEN)."""
    loaded = {name[:15] for name in run.programs}
    failed = f"failed ({_how(run)})"
    out: list[dict[str, Any]] = []
    for r in generic:
        here = r.program[:15] in loaded
        verdict = r.verdict
        reason = r.message or r.reason or r.stage or ""
        where = {"object": r.object, "program": r.program}
        if verdict == "rejected" and run.ok and not here:
            out.append({"kind": "loader_handles", **where, "generic": f"rejected ({reason})",
                        "loader": "succeeded", "message": f"generic load: rejected ({reason}); your loader: "
                        f"succeeded, it did not load program {r.program}"})  # fmt: skip
        elif verdict == "rejected" and here:
            out.append({"kind": "loader_loads_rejected", **where, "generic": f"rejected ({reason})",
                        "loader": "loaded it", "message": f"generic load: rejected ({reason}); your loader "
                        f"loaded program {r.program} (its own options: flags, sizes, program type?)"})  # fmt: skip
        elif verdict == "accepted" and not run.ok:
            out.append({"kind": "loader_failed", **where, "generic": "accepted",
                        "loader": failed, "message": f"generic load: accepted; your loader {failed}"
                        + ("" if here else f", it did not load program {r.program}")})  # fmt: skip
        elif verdict == "accepted" and run.ok and not here:
            out.append({"kind": "not_loaded", **where, "generic": "accepted", "loader": "succeeded",
                        "message": f"generic load: accepted; your loader succeeded without loading program "
                        f"{r.program}"})  # fmt: skip
    return out


def _how(run: KernelRun) -> str:
    if run.error:
        return run.error
    if run.timed_out:
        return "still running at the timeout"
    if run.signal:
        return f"killed by signal {run.signal}"
    return f"exit {run.exit_status}"
