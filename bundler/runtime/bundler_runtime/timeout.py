"""The scoring timeout: interrupt a run() that takes too long; the worker keeps serving.

Like the reference server, a SIGALRM timer raises ScoringTimeout inside run() at the next
Python bytecode. Requests run in the worker's main thread (the ASGI worker's event loop),
where signal handlers run. A run() stuck in C code past the timeout is caught by
gunicorn's worker timeout instead, which restarts the worker.

The handler stays installed between requests (with the timer off it never fires), so a
request costs two setitimer calls, not four system calls and two handler swaps: this is on
every request's path. A run() that installs its own SIGALRM handler gets ours back on
the next request.
"""

from __future__ import annotations

import signal
import threading

try:  # signal's C core: its getsignal skips the enum conversion that costs ~3 us a request
    from _signal import getsignal as _getsignal
except ImportError:  # pragma: no cover - an interpreter without the private module
    _getsignal = signal.getsignal


class ScoringTimeout(TimeoutError):
    """A TimeoutError, as on the reference server: a run() may catch it to return a fallback."""


def _raise_timeout(signum, frame):
    raise ScoringTimeout()


class TimeLimit:
    """`with limit:` arms the timer for one call; a no-op off the main thread, where
    signals never arrive (tests call the app from other threads)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        if _getsignal(signal.SIGALRM) is not _raise_timeout:
            signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc_info):
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)
        return False
