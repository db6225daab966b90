"""A time limit on each program's verification inside one bpf_object__load.

The verifier checks for a pending signal as it walks a program (Linux 4.20 and later) and
fails the load with EAGAIN; libbpf retries an EAGAIN load a few times, each retry stopped the
same way. One watcher thread (started once, idle between loads) sees which program libbpf is
at (a loaded program has an fd) and, once one has taken longer than the limit, signals the
loading thread until the load returns. So a program the verifier works on for minutes under
emulation costs its limit, and the object's other programs still get their verdicts (the
host's object timeout would end the whole object, and the guest with it).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_SIGNAL = signal.SIGALRM
_REPEAT = 0.02  # seconds between signals once fired: each of libbpf's retries ends that fast
_MAX_POLL = 1.0  # seconds between looks at the progress: a ctypes call per program each time


def _ignore(signum, frame) -> None:
    """The signal only has to interrupt the verifier: nothing to do in Python."""


class _Watcher:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: tuple[float, Callable[[], int], int] | None = None
        self._generation = 0
        self.fired = False
        threading.Thread(target=self._run, name="compat-timelimit", daemon=True).start()

    def arm(self, limit: float, progress: Callable[[], int], thread_id: int) -> None:
        with self._cond:
            self._armed, self.fired = (limit, progress, thread_id), False
            self._generation += 1
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._armed = None
            self._generation += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._armed is None:
                    self._cond.wait()
                (limit, progress, thread_id), generation = self._armed, self._generation
            poll = min(_MAX_POLL, max(limit / 10, _REPEAT))
            seen, since = -1, time.monotonic()
            while True:
                with self._cond:
                    if self._cond.wait_for(lambda g=generation: self._generation != g, timeout=poll):
                        break  # the load returned (or another one began)
                try:
                    done = progress()
                except Exception:  # never let the watcher die: later loads would have no limit
                    done = seen
                now = time.monotonic()
                if done != seen:
                    seen, since = done, now  # the next program began (at the latest now)
                elif now - since > limit:
                    self.fired = True
                    signal.pthread_kill(thread_id, _SIGNAL)
                    poll = _REPEAT


_watcher: _Watcher | None = None


@contextmanager
def program_time_limit(limit: float | None, progress: Callable[[], int]) -> Iterator[_Watcher | None]:
    """Run the body (one bpf_object__load in this, the main, thread) with at most `limit`
    seconds per program; progress() counts the programs loaded so far. Yields the watcher, whose
    `fired` says afterwards whether a program was stopped; None without a limit."""
    global _watcher
    if not limit:
        yield None
        return
    if _watcher is None:
        signal.signal(_SIGNAL, _ignore)  # a handler, not the default (which ends the process)
        _watcher = _Watcher()
    _watcher.arm(limit, progress, threading.get_ident())
    try:
        yield _watcher
    finally:
        _watcher.disarm()
