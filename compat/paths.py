"""Where compat keeps its cache and finds its shipped recipes."""

from __future__ import annotations

import functools
import os
import re
import tempfile
from importlib import resources
from pathlib import Path


def cache_root() -> Path:
    """The cache directory: $COMPAT_CACHE, else $XDG_CACHE_HOME/compat, else ~/.cache/compat."""
    explicit = os.environ.get("COMPAT_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "compat").resolve()


def data_file(name: str) -> Path:
    """A file shipped in compat/data (the default matrix and the image recipes)."""
    return Path(str(resources.files("compat") / "data" / name))


def agent_source_dir() -> Path:
    """The directory of the guest agent package, copied into the guest image."""
    import compat_agent

    return Path(compat_agent.__file__).parent


# -- temporary directories and their owners ------------------------------------------------
# A temporary directory's name says which process owns it: "<pid>.<start>.<boot>", the pid, its
# start time (clock ticks after boot, /proc/PID/stat) and the first 8 hex digits of the boot id.
# A pid alone could be reused by an unrelated process after compat was killed; the three
# together name one process of one boot, so a later run can tell that the owner is gone.
TEMP_PREFIX = "compat-"
OWNER_RE = re.compile(r"(?P<pid>\d+)\.(?P<start>\d+)\.(?P<boot>[0-9a-f]{8})")
# compat-<name>-<owner>-<mkdtemp's 8 random characters>
TEMP_DIR_RE = re.compile(rf"^{TEMP_PREFIX}.*-(?P<owner>{OWNER_RE.pattern})-[a-z0-9_]{{8}}$")
# Unix socket paths are limited to 107 bytes (and a NUL); a VM's sockets live in its temporary
# directory ("qmp.sock", "con.sock", "ch.sock").
SOCKET_PATH_MAX = 107


def _start_ticks(pid: int) -> int | None:
    """When process pid started (clock ticks after boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of stat(5), the 20th after the name
    except (IndexError, ValueError):
        return None


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


def owner_tag(pid: int | None = None) -> str:
    """This process's (or pid's) owner tag for the names of its temporary files."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{_start_ticks(pid) or 0}.{_boot_id()}"


def owner_alive(tag: str) -> bool:
    """Whether the process an owner tag names is still running (same pid, start time and boot)."""
    m = OWNER_RE.fullmatch(tag)
    if not m:
        return False
    if m["boot"] != _boot_id():
        return False  # a previous boot's process: gone, whatever runs under its pid now
    return _start_ticks(int(m["pid"])) == int(m["start"])


def pid_alive_since(pid: int, since: float) -> bool:
    """Whether process pid may own a file last changed at `since` (epoch seconds): it runs, and
    it was started before then (a process started later only reuses a dead owner's pid). For
    temporaries whose names carry only a pid."""
    ticks = _start_ticks(pid)
    if ticks is None:
        return False
    try:
        btime = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return True  # cannot tell: keep it
    started = btime + ticks / os.sysconf("SC_CLK_TCK")
    return started <= since + 2  # btime is whole seconds: a margin, never a false "gone"


def temp_dir(name: str, root: Path | None = None) -> Path:
    """A new private temporary directory for `name` (a VM's sockets, console and QEMU's errors),
    named with this process's owner tag so that a later run can remove it once this process is
    gone (Cache.sweep_temporaries). Under root (the cache's tmp/) when given and short enough for
    the unix sockets it will hold, else under the system's temporary directory."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:20]
    prefix = f"{TEMP_PREFIX}{safe}-{owner_tag()}-"
    if root is not None and len(os.fsencode(root)) + len(prefix) + len("/XXXXXXXX/qmp.sock") <= SOCKET_PATH_MAX:
        try:
            root.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        except OSError:
            pass  # an unwritable cache: the system's temporary directory still works
    return Path(tempfile.mkdtemp(prefix=prefix))
