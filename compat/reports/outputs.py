"""Where the reports go: every --format/--output pair checked before any work, and each report
written atomically, so that a bad path is one line before a VM boots and a failed write never loses
another format's report.

Rules (README, "Reports and outputs"):
  - the n-th --output goes with the n-th --format; a format without an --output, and '-', is stdout;
  - an --output without a --format takes the format its suffix names (SUFFIXES), or is refused;
  - at most one format goes to stdout, and no file is named twice (also through another spelling
    or a link);
  - a file's directory must exist and be writable: compat does not create directories (a typo
    in a path would otherwise make a tree anywhere), and the file, if it exists, must not be a
    directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compat.errors import UserError

STDOUT = "-"

# The format an --output's suffix names when no --format goes with it (longest suffixes first).
SUFFIXES: dict[str, str] = {
    ".sarif.json": "sarif",
    ".sarif": "sarif",
    ".json": "json",
    ".md": "markdown",
    ".xml": "junit",
    ".csv": "csv",
    ".txt": "table",
}


@dataclass(frozen=True)
class Output:
    """One report to write: its format and where (a path, or STDOUT)."""

    format: str
    dest: str

    @property
    def to_stdout(self) -> bool:
        return self.dest == STDOUT


def format_of(path: str) -> str | None:
    """The format an output file's name implies by its suffix, or None."""
    name = path.lower()
    return next((fmt for suffix, fmt in SUFFIXES.items() if name.endswith(suffix)), None)


def plan(
    formats: list[str] | None, outputs: list[str] | None, known: list[str], default: str = "table"
) -> list[Output]:
    """The reports a command will write, checked now: raises UserError (exit 2) for an unknown
    format, an --output whose format cannot be told, stdout or a file named twice, a missing or
    unwritable directory."""
    formats, outputs = list(formats or []), list(outputs or [])
    for dest in outputs[len(formats):]:
        fmt = format_of(dest) if dest != STDOUT else None
        if fmt is None or fmt not in known:
            suffixes = ", ".join(f"{s} {f}" for s, f in SUFFIXES.items() if f in known)
            raise UserError(f"--output {dest}: no --format goes with it and its name does not say one",
                            f"give --format FMT before it, or a file name ending in {suffixes}")  # fmt: skip
        formats.append(fmt)
    for fmt in formats:
        if fmt not in known:
            raise UserError(f"unknown format '{fmt}'", f"use one of {', '.join(known)}")
    if not formats:
        formats = [default]
    planned = [Output(fmt, outputs[i] if i < len(outputs) else STDOUT) for i, fmt in enumerate(formats)]
    on_stdout = [o.format for o in planned if o.to_stdout]
    if len(on_stdout) > 1:
        raise UserError(f"formats {', '.join(on_stdout)} would all go to stdout",
                        "give each but one an --output FILE")  # fmt: skip
    seen: dict[str, str] = {}
    for o in planned:
        if o.to_stdout:
            continue
        _check_writable(o.dest)
        key = os.path.realpath(o.dest)
        if key in seen:
            raise UserError(f"--output {o.dest}: formats {seen[key]} and {o.format} would write the same file",
                            "give each format a file of its own")  # fmt: skip
        seen[key] = o.format
    return planned


def _check_writable(dest: str) -> None:
    path = Path(dest)
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"--output {dest}: directory {parent} does not exist", "create it first, or give another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--output {dest}: directory {parent} is not writable", "give a path in a writable directory")
    if path.is_dir():
        raise UserError(f"--output {dest}: is a directory", "give a file name")


def write_atomic(path: Path, text: str) -> None:
    """Replace path with text at once (a temporary file in its directory renamed over it), never
    creating the directory. Raises OSError; path is then as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        if path.exists():  # keep the permissions of the file replaced; mkstemp's 0600 otherwise
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(planned: list[Output], render) -> bool:
    """Render and write every planned report: render(format) -> text. Each file is written
    atomically and a failed one does not stop the others; returns whether a format went to stdout
    as the table. Raises UserError naming every file that could not be written, after the rest."""
    failed = []
    table_on_stdout = False
    for o in planned:
        text = render(o.format)
        if o.to_stdout:
            table_on_stdout = table_on_stdout or o.format == "table"
            sys.stdout.write(text)
            continue
        try:
            write_atomic(Path(o.dest), text)
        except OSError as e:
            failed.append(f"cannot write {o.dest}: {e.strerror or e}")
    sys.stdout.flush()
    if failed:
        raise UserError("; ".join(failed), "the other reports are written")
    return table_on_stdout
