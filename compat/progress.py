"""What compat is doing, as it does it: one progress sink for every stage of a run.

The lower layers (kernel downloads, the image build, boots, snapshot saves, each kernel's
objects) report stages to the sink their Cache carries (``cache.progress``, passed down with the
cache as its ``notify`` is); the command line chooses the sink (compat/cli/__init__.py):

- Progress: nothing (the default: a Python caller of compat.check, or ``-q``);
- LineProgress: one plain line per finished stage with its time, on stderr, for CI logs
  ("compat: fetched kernel 6.12 (6.12.118, 84 MB) in 4.1 s");
- RichProgress: a live display on a terminal (rich): a row per running stage, bytes for
  downloads, objects for checks; each finished stage leaves its line above it.

Nothing goes to stdout: reports may go there. Texts come from compat's own words plus names
(kernel ids, versions); they are escaped for the terminal all the same (compat.text).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .text import visible


class Stage:
    """One running stage: advance it (bytes, objects) and finish it with its line."""

    def __init__(self, sink: Progress, text: str, total: float | None, unit: str):
        self.sink, self.text, self.total, self.unit = sink, text, total, unit
        self.t0 = time.monotonic()
        self.completed = 0.0
        self.final: str | None = None  # what done() said: the line the stage leaves

    def advance(self, amount: float = 1) -> None:
        """Count progress (bytes downloaded, objects checked)."""
        self.completed += amount
        self.sink._advanced(self)

    def set_total(self, total: float | None) -> None:
        """The total, once it is known (a download's size)."""
        self.total = total
        self.sink._advanced(self)

    def done(self, text: str) -> None:
        """The line this stage leaves when it ends (its time is added)."""
        self.final = text

    @contextlib.contextmanager
    def watch(self, directory: Path, every: float = 0.25) -> Iterator[None]:
        """While the block runs, the bytes of the files under directory (a download in progress,
        written by another process) are this stage's progress, on top of what it had counted."""
        base, stop = self.completed, threading.Event()

        def poll() -> None:
            while not stop.wait(every):
                self.completed = base + _size(directory)
                self.sink._advanced(self)

        poller = threading.Thread(target=poll, name="progress-watch", daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()
            self.completed = base + _size(directory)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0


def _size(directory: Path) -> int:
    total = 0
    try:
        for entry in os.scandir(directory):
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size if entry.is_file(follow_symlinks=False) else 0
    except OSError:
        pass
    return total


class Progress:
    """The sink that shows nothing (and the interface of the others)."""

    @contextlib.contextmanager
    def stage(self, text: str, total: float | None = None, unit: str = "") -> Iterator[Stage]:
        """A stage that runs while the block runs ("fetching kernel 6.12"); unit "bytes" shows a
        download. Its line (Stage.done's text, or nothing) is shown when the block ends without
        an exception: a failure is told by the error that ends the run, not here."""
        found = Stage(self, text, total, unit)
        self._started(found)
        try:
            yield found
        except BaseException:
            self._ended(found, None)
            raise
        self._ended(found, f"{found.final} in {found.seconds:.1f} s" if found.final else None)

    def line(self, text: str) -> None:
        """One progress line now (a stage that was timed elsewhere); this sink shows none."""

    def write(self, text: str) -> None:
        """A line compat must say whatever the sink (a log record: a warning, an error), on
        stderr, not torn by a live display."""
        print(f"compat: {visible(text)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop any live display (the run is over)."""

    def _started(self, stage: Stage) -> None:
        pass

    def _advanced(self, stage: Stage) -> None:
        pass

    def _ended(self, stage: Stage, line: str | None) -> None:
        if line:
            self.line(line)


class LineProgress(Progress):
    """One plain line per finished stage (CI logs, TERM=dumb)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        self.write(text)

    def write(self, text: str) -> None:
        with self._lock:
            print(f"compat: {visible(text)}", file=self.stream or sys.stderr, flush=True)


class RichProgress(Progress):
    """A live display on a terminal (rich.progress): a row per running stage."""

    def __init__(self, console: Any = None):
        from rich.console import Console
        from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Live

        self.console = console or Console(stderr=True)
        self.live = Live(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                         TextColumn("{task.fields[amount]}"), TimeElapsedColumn(),
                         console=self.console, transient=True)  # fmt: skip
        self._tasks: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._started_live = False

    @staticmethod
    def _amount(stage: Stage) -> str:
        if stage.unit == "bytes":
            total = f"/{stage.total / 1e6:.0f}" if stage.total else ""
            return f"{stage.completed / 1e6:.1f}{total} MB"
        if stage.total:
            return f"{stage.completed:.0f}/{stage.total:.0f} {stage.unit}".strip()
        return ""

    def _started(self, stage: Stage) -> None:
        with self._lock:
            if not self._started_live:
                self.live.start()
                self._started_live = True
            self._tasks[id(stage)] = self.live.add_task(visible(stage.text), total=stage.total, amount="")

    def _advanced(self, stage: Stage) -> None:
        with self._lock:
            task = self._tasks.get(id(stage))
            if task is not None:
                self.live.update(task, completed=stage.completed, total=stage.total)
                self.live.update(task, amount=self._amount(stage))

    def _ended(self, stage: Stage, line: str | None) -> None:
        with self._lock:
            task = self._tasks.pop(id(stage), None)
            if task is not None:
                self.live.remove_task(task)
        if line:
            self.line(line)

    def line(self, text: str) -> None:
        self.write(text)

    def write(self, text: str) -> None:
        # Printed through the live display's console: above the rows, never torn by them.
        self.console.print(f"compat: {visible(text)}", markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        with self._lock:
            if self._started_live:
                self.live.stop()
                self._started_live = False


def for_stderr(quiet: bool = False, stream: IO[str] | None = None) -> Progress:
    """The sink for a command: nothing with -q; a live display when stderr is a terminal (and
    TERM is not dumb: rich's Console decides, honouring NO_COLOR for colour); lines otherwise."""
    if quiet:
        return Progress()
    target = stream or sys.stderr
    if not (target.isatty() or os.environ.get("FORCE_COLOR")):
        return LineProgress(stream)  # CI logs: rich (its import costs ~30 ms) decides nothing here
    from rich.console import Console

    console = Console(file=target)
    if console.is_terminal and not console.is_dumb_terminal:
        return RichProgress(console)
    return LineProgress(stream)


class LogHandler(logging.Handler):
    """compat's log records (-q/-v choose the level) written through the progress sink."""

    def __init__(self, sink: Progress):
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(record.getMessage())
        except Exception:
            self.handleError(record)


def setup(verbosity: int, stream: IO[str] | None = None) -> Progress:
    """The progress sink and compat's logging for a command: verbosity -1 (-q: errors only, no
    progress), 0 (warnings and progress), 1 (-v: info), 2 (-vv: debug). Returns the sink (the
    caller puts it on its Cache and closes it at the end)."""
    sink = for_stderr(quiet=verbosity < 0, stream=stream)
    logger = logging.getLogger("compat")
    for old in [h for h in logger.handlers if isinstance(h, LogHandler)]:
        logger.removeHandler(old)
    logger.addHandler(LogHandler(sink))
    logger.setLevel({-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    logger.propagate = False  # its records are compat's lines, not the embedding program's
    return sink
